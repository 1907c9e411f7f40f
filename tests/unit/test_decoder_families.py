"""Decoder families as config fields of the one architecture: tiny random decoders saved by
transformers import with logit parity in causal mode (fp32), and run bidirectionally with the
same weights."""

import json

import pytest
import torch
import transformers

from encoderlab.model import CheckpointError, ModelConfig, build_encoder, export_hf, import_hf, load_checkpoint
from encoderlab.model.hf import IMPORTABLE_MODEL_TYPES

ATOL = 1e-4
COMMON = dict(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=256, pad_token_id=0, bos_token_id=1, eos_token_id=2)
WINDOW = 6  # shorter than the test rows (19 tokens): the sliding layers really slide


def _configs():
    return {
        "llama": transformers.LlamaConfig(**COMMON),
        "mistral": transformers.MistralConfig(**COMMON, head_dim=16, sliding_window=WINDOW),
        "qwen2": transformers.Qwen2Config(**COMMON, use_sliding_window=True, sliding_window=WINDOW,
                                          max_window_layers=1),
        "qwen3": transformers.Qwen3Config(**COMMON, head_dim=16),
        "gemma2": transformers.Gemma2Config(**COMMON, head_dim=16, sliding_window=WINDOW, query_pre_attn_scalar=12,
                                            attn_logit_softcapping=2.0, final_logit_softcapping=3.0),
        "gemma3_text": transformers.Gemma3TextConfig(
            **COMMON, head_dim=16, sliding_window=WINDOW, query_pre_attn_scalar=12,
            layer_types=["sliding_attention", "full_attention"],
            rope_parameters={"full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1_000_000.0},
                             "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0}}),
        "olmo2": transformers.Olmo2Config(**COMMON),
    }


def _save_random_decoder(config, path, seed=0):
    """A decoder with every weight perturbed (norm weights and biases too), saved by transformers."""
    torch.manual_seed(seed)
    config._attn_implementation = "eager"  # the reference: soft-capping needs the eager path
    hf = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for param in hf.parameters():
            param.add_(torch.randn_like(param) * 0.15)
    hf.save_pretrained(path)
    return hf


def _batch(vocab):
    tokens = torch.randint(3, vocab, (2, 19))
    mask = torch.ones(2, 19, dtype=torch.long)
    mask[1, 13:] = 0  # right padding in the second row
    return tokens, mask


def test_every_family_is_importable():
    assert set(_configs()) | {"eurobert"} == set(IMPORTABLE_MODEL_TYPES)


@pytest.mark.parametrize("family", list(_configs()))
def test_causal_logit_parity_and_bidirectional_mode(tmp_path, family):
    hf = _save_random_decoder(_configs()[family], tmp_path / family)
    model = import_hf(tmp_path / family, tmp_path / "ours").eval()
    tokens, mask = _batch(300)
    real = mask.bool()
    with torch.no_grad():
        theirs = hf(input_ids=tokens, attention_mask=mask).logits
        ours = model(tokens, attention="causal", attention_mask=mask, logits_at="all").logits
        diff = (ours[real] - theirs[real]).abs().max().item()
        assert diff < ATOL, f"{family}: max abs logit difference {diff:.2e}"
        print(f"{family}: max abs diff {diff:.2e}")
        # bidirectional with the same weights: every token sees its right context too
        bidi = model(tokens, attention="bidirectional", attention_mask=mask, logits_at="all").logits
        assert torch.isfinite(bidi).all() and not torch.allclose(bidi[real], ours[real], atol=1e-3)
        # the checkpoint written by the import reloads to the same model
        reloaded = load_checkpoint(tmp_path / "ours").eval()
        again = reloaded(tokens, attention="bidirectional", attention_mask=mask, logits_at="all").logits
    torch.testing.assert_close(again, bidi, atol=0, rtol=0)


def test_family_fields_are_recorded(tmp_path):
    _save_random_decoder(_configs()["gemma2"], tmp_path / "g2")
    model = import_hf(tmp_path / "g2", tmp_path / "ours")
    saved = json.loads((tmp_path / "ours" / "config.json").read_text())["model"]
    assert saved == model.config.to_dict()
    assert (saved["norm_offset"], saved["block_norms"], saved["mlp_activation"]) == (1.0, "sandwich", "gelu_tanh")
    assert saved["layer_types"] == ["sliding", "full"] and saved["sliding_window"] == WINDOW
    assert saved["bidirectional_sliding_window"] == "full"  # the recorded default for an encoder


def test_gemma3_bidirectional_window_matches_transformers(tmp_path):
    """Gemma 3's use_bidirectional_attention (EmbeddingGemma) is the 'window' choice: parity both ways."""
    config = transformers.Gemma3TextConfig(**{**_configs()["gemma3_text"].to_dict(), "sliding_window": 2 * WINDOW,
                                              "use_bidirectional_attention": True})
    assert config.sliding_window == WINDOW + 1  # transformers halves it for bidirectional use
    hf = _save_random_decoder(config, tmp_path / "g3")
    model = import_hf(tmp_path / "g3").eval()
    assert model.config.bidirectional_sliding_window == "window"
    tokens, mask = _batch(300)
    with torch.no_grad():
        theirs = hf(input_ids=tokens, attention_mask=mask).logits
        ours = model(tokens, attention="bidirectional", attention_mask=mask, logits_at="all").logits
        whole = import_hf(tmp_path / "g3").eval()
        whole.config.bidirectional_sliding_window = "full"
        unwindowed = whole(tokens, attention="bidirectional", attention_mask=mask, logits_at="all").logits
    real = mask.bool()
    assert (ours[real] - theirs[real]).abs().max().item() < ATOL
    assert not torch.allclose(unwindowed[real], ours[real], atol=1e-3)  # the choice matters


def test_sliding_window_backends(tmp_path):
    _save_random_decoder(_configs()["mistral"], tmp_path / "m")
    model = import_hf(tmp_path / "m").eval()
    tokens, _ = _batch(300)
    model.config.attn_backend = "flex"
    with pytest.raises(ValueError, match="'flex' does not support sliding_window 6"):
        model(tokens, attention="causal")
    short = tokens[:, :WINDOW]  # rows no longer than the window: nothing slides, flex is fine
    model(short, attention="causal")


def test_softcap_refused_by_flex(tmp_path):
    _save_random_decoder(_configs()["gemma2"], tmp_path / "g")
    model = import_hf(tmp_path / "g").eval()
    model.config.attn_backend = "flex"
    with pytest.raises(ValueError, match="does not support query_pre_attn_scalar, attn_logit_softcap"):
        model(torch.randint(3, 300, (1, 4)), attention="bidirectional")


def test_unsupported_architecture_lists_the_supported_ones(tmp_path):
    gpt2 = transformers.GPT2Config(vocab_size=100, n_embd=32, n_layer=1, n_head=2)
    transformers.GPT2LMHeadModel(gpt2).save_pretrained(tmp_path / "gpt2")
    with pytest.raises(CheckpointError, match=r"'gpt2' is not supported; expected one of .*'qwen3'.*'olmo2'"):
        import_hf(tmp_path / "gpt2", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unannounced_tensors_and_unknown_rope_are_refused(tmp_path):
    _save_random_decoder(_configs()["qwen3"], tmp_path / "q")
    config = json.loads((tmp_path / "q" / "config.json").read_text())
    config["model_type"] = "llama"  # a Qwen3 relabelled: its q/k norms were not announced
    (tmp_path / "q" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="unexpected tensors.*q_norm"):
        import_hf(tmp_path / "q", tmp_path / "out")
    config["model_type"] = "qwen3"
    config["rope_parameters"] = {"rope_type": "warp-drive", "rope_theta": 10000.0}
    (tmp_path / "q" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="rope_type 'warp-drive' is unknown to transformers"):
        import_hf(tmp_path / "q", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_family_models_refuse_llama_eurobert_export(tmp_path):
    _save_random_decoder(_configs()["olmo2"], tmp_path / "o")
    model = import_hf(tmp_path / "o")
    with pytest.raises(ValueError, match="qk_norm, block_norms .*no class that runs it bidirectionally"):
        export_hf(model, tmp_path / "eb", "eurobert")
    assert not (tmp_path / "eb").exists()


def test_paper_presets_are_untouched_by_family_fields():
    config = ModelConfig.from_name("610m")
    assert config.is_paper_architecture and config.sdpa_only_features() == []
    model = build_encoder(ModelConfig.from_name("tiny"), seed=0)
    assert all(not hasattr(layer, "attn_post_norm") and layer.attn.qkv.bias is None for layer in model.layers)
    assert sum(p.numel() for p in model.parameters()) == model.config.num_parameters()


def _tokenizer(path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=200, special_tokens=["<pad>", "<s>", "</s>", "<unk>"])
    tok.train_from_iterator(["the cat sat on the mat", "a dog ran in the park"] * 10, trainer)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
                                                eos_token="</s>", pad_token="<pad>")
    fast.save_pretrained(path)


def test_qwen3_saved_by_transformers_is_evaluated_natively(tmp_path):
    from encoderlab.evaluation.backbone import Backbone

    _save_random_decoder(_configs()["qwen3"], tmp_path / "qwen3")
    _tokenizer(tmp_path / "qwen3")
    backbone = Backbone(str(tmp_path / "qwen3"))
    assert backbone.kind.startswith("imported") and backbone.kind == "imported qwen3" and backbone.native
    ids = torch.tensor([backbone.frame(backbone.encode("the cat sat"))])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        hidden = backbone(ids, mask)
        direct = import_hf(tmp_path / "qwen3").eval()(ids, attention="bidirectional").hidden_states
    torch.testing.assert_close(hidden, direct, atol=0, rtol=0)
