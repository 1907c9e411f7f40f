"""Causal/bidirectional modes, packed documents, padding, and agreement of the attention backends."""

import pytest
import torch

from encoderlab.model import PAD_DOCUMENT, build_encoder, document_ids_from_lengths, positions_from_documents
from encoderlab.model.attention import build_layout

MODES = ["causal", "bidirectional"]


def test_positions_restart_at_each_document():
    ids = torch.tensor([[0, 0, 0, 1, 1, 2, -1, -1], [-1, -1, 0, 0, 0, 0, 0, 0]])
    assert positions_from_documents(ids).tolist() == [[0, 1, 2, 0, 1, 0, 0, 1], [0, 1, 0, 1, 2, 3, 4, 5]]


def test_document_ids_from_lengths_pads_and_checks():
    ids = document_ids_from_lengths([[2, 3], [4]], 6)
    assert ids.tolist() == [[0, 0, 1, 1, 1, -1], [0, 0, 0, 0, -1, -1]]
    with pytest.raises(ValueError, match="exceed seq_len"):
        document_ids_from_lengths([[4, 4]], 6)


@pytest.mark.parametrize("mode", MODES)
def test_packed_equals_separately_run_documents(tiny_model, mode):
    lengths = [[9, 15, 8], [20, 12]]
    tokens = torch.randint(0, tiny_model.config.vocab_size, (2, 32))
    packed = tiny_model(tokens, attention=mode, document_ids=document_ids_from_lengths(lengths, 32), logits_at="all")
    for row, row_lengths in enumerate(lengths):
        start = 0
        for n in row_lengths:
            alone = tiny_model(tokens[row : row + 1, start : start + n], attention=mode, logits_at="all")
            torch.testing.assert_close(packed.logits[row, start : start + n], alone.logits[0], atol=1e-5, rtol=1e-5)
            start += n


@pytest.mark.parametrize("mode", MODES)
def test_documents_do_not_leak_into_each_other(tiny_model, mode):
    tokens = torch.randint(0, tiny_model.config.vocab_size, (1, 24))
    docs = document_ids_from_lengths([[12, 12]], 24)
    changed = tokens.clone()
    changed[0, 14:] = (changed[0, 14:] + 7) % tiny_model.config.vocab_size  # edit the second document only
    a = tiny_model(tokens, attention=mode, document_ids=docs).hidden_states
    b = tiny_model(changed, attention=mode, document_ids=docs).hidden_states
    torch.testing.assert_close(a[0, :12], b[0, :12], atol=1e-6, rtol=0)
    assert not torch.allclose(a[0, 14:], b[0, 14:])


def test_causal_ignores_the_future_and_bidirectional_does_not(tiny_model):
    tokens = torch.randint(0, tiny_model.config.vocab_size, (1, 16))
    changed = tokens.clone()
    changed[0, 10] = (changed[0, 10] + 1) % tiny_model.config.vocab_size
    causal = [tiny_model(t, attention="causal").hidden_states for t in (tokens, changed)]
    torch.testing.assert_close(causal[0][0, :10], causal[1][0, :10], atol=1e-6, rtol=0)
    bidir = [tiny_model(t, attention="bidirectional").hidden_states for t in (tokens, changed)]
    assert not torch.allclose(bidir[0][0, :10], bidir[1][0, :10])


@pytest.mark.parametrize("mode", MODES)
def test_authors_mode_lets_packed_documents_attend_to_each_other(tiny_model, mode):
    tokens = torch.randint(0, tiny_model.config.vocab_size, (2, 20))
    docs = document_ids_from_lengths([[8, 12], [5, 15]], 20)
    shared = tiny_model(tokens, attention=mode, document_ids=docs, isolate_documents=False).hidden_states
    plain = tiny_model(tokens, attention=mode).hidden_states  # one sequence per row, positions run on
    torch.testing.assert_close(shared, plain, atol=1e-6, rtol=0)
    isolated = tiny_model(tokens, attention=mode, document_ids=docs).hidden_states
    assert not torch.allclose(isolated[:, 12:], shared[:, 12:])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("side", ["right", "left"])
def test_padding_does_not_change_real_tokens(tiny_model, mode, side):
    tokens = torch.randint(1, tiny_model.config.vocab_size, (1, 11))
    alone = tiny_model(tokens, attention=mode).hidden_states[0]
    padded = torch.zeros(2, 16, dtype=torch.long)
    mask = torch.zeros(2, 16, dtype=torch.long)
    span = slice(0, 11) if side == "right" else slice(5, 16)
    padded[0, span] = tokens[0]
    mask[0, span] = 1
    padded[1] = torch.randint(1, tiny_model.config.vocab_size, (16,))
    mask[1] = 1
    out = tiny_model(padded, attention=mode, attention_mask=mask).hidden_states
    torch.testing.assert_close(out[0, span], alone, atol=1e-5, rtol=1e-5)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("mode", MODES)
def test_flex_backend_agrees_with_sdpa(tiny_config, mode):
    """The GPU fast path (FlexAttention block masks) against the portable SDPA path, on CPU."""
    sdpa = build_encoder(tiny_config.replace(attn_backend="sdpa"), seed=1).eval()
    flex = build_encoder(tiny_config.replace(attn_backend="flex"), seed=1).eval()
    tokens = torch.randint(0, tiny_config.vocab_size, (2, 40))
    docs = document_ids_from_lengths([[10, 17, 13], [25, 9]], 40)  # second row ends with padding
    mask = (docs != PAD_DOCUMENT).long()
    with torch.no_grad():  # eager FlexAttention on CPU supports the forward pass only
        a = sdpa(tokens, attention=mode, document_ids=docs, attention_mask=mask, logits_at="all").logits
        b = flex(tokens, attention=mode, document_ids=docs, attention_mask=mask, logits_at="all").logits
    real = mask.bool()
    torch.testing.assert_close(a[real], b[real], atol=2e-5, rtol=2e-5)


def test_layout_validates_inputs():
    ids = torch.zeros(2, 8, dtype=torch.long)
    with pytest.raises(ValueError, match="attention mode"):
        build_layout(ids, mode="prefix")
    with pytest.raises(ValueError, match=r"document_ids: expected shape \(2, 8\)"):
        build_layout(ids, mode="causal", document_ids=torch.zeros(2, 7, dtype=torch.long))
    with pytest.raises(ValueError, match="attention backend"):
        build_layout(ids, mode="causal", backend="flash3")
    with pytest.raises(ValueError, match="'varlen' needs a CUDA device"):
        build_layout(ids, mode="causal", document_ids=ids, backend="varlen")
    plain = build_layout(ids, mode="bidirectional")
    assert plain.dense_mask is None and plain.block_mask is None  # lets SDPA pick its flash kernel
