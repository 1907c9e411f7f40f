"""torch.compile over the attention backends (compilation takes seconds): compiled FlexAttention blocks
agree with eager SDPA."""

import torch

from encoderlab.model import build_encoder, document_ids_from_lengths

MODES = ["causal", "bidirectional"]


def test_compiled_blocks_with_flex_agree_with_eager_sdpa(tiny_config):
    """Regression: compiled FlexAttention once read the fused-QKV value view wrongly."""
    model = build_encoder(tiny_config.replace(attn_backend="sdpa"), seed=2).eval()
    tokens = torch.randint(0, tiny_config.vocab_size, (2, 64))
    docs = document_ids_from_lengths([[30, 34], [64]], 64)
    with torch.no_grad():
        reference = {mode: model(tokens, attention=mode, document_ids=docs).hidden_states for mode in MODES}
        model.config.attn_backend = "flex"
        for layer in model.layers:
            layer.compile()
        for mode in MODES:
            compiled = model(tokens, attention=mode, document_ids=docs).hidden_states
            torch.testing.assert_close(compiled, reference[mode], atol=1e-4, rtol=1e-4)
