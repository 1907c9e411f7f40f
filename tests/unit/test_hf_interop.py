"""encoderlab <-> transformers parity, both export targets and both directions (tiny random configs)."""

import json

import pytest
import torch
import transformers
from transformers import AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

from encoderlab.model import CheckpointError, build_encoder, export_hf, import_hf, load_checkpoint, save_checkpoint

ATOL = 1e-4


def _batch(vocab):
    tokens = torch.randint(0, vocab, (2, 19))
    mask = torch.ones(2, 19, dtype=torch.long)
    mask[1, 13:] = 0  # right padding in the second row
    return tokens, mask


@pytest.fixture
def tokenizer_dir(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=200, special_tokens=["<unk>", "<s>", "</s>", "<pad>", "<mask>"])
    tok.train_from_iterator(["the cat sat on the mat", "a dog ran in the park"] * 10, trainer)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>", mask_token="<mask>"
    )
    fast.save_pretrained(tmp_path / "tok")
    return tmp_path / "tok"


@pytest.mark.parametrize(
    "target, mode, auto_cls, hf_name",
    [
        ("eurobert", "bidirectional", AutoModelForMaskedLM, "EuroBertForMaskedLM"),
        ("llama", "causal", AutoModelForCausalLM, "LlamaForCausalLM"),
    ],
)
def test_export_matches_transformers_and_round_trips(tmp_path, tiny_model, tokenizer_dir, target, mode, auto_cls, hf_name):
    ckpt = save_checkpoint(tiny_model, tmp_path / "ckpt", tokenizer_dir=tokenizer_dir)
    out = export_hf(ckpt, tmp_path / target, target)
    files = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= files
    assert not any(name.endswith((".bin", ".py")) for name in files)  # safetensors, no remote code
    hf = auto_cls.from_pretrained(out).eval()
    assert type(hf).__name__ == hf_name
    assert AutoTokenizer.from_pretrained(out).mask_token == "<mask>"
    tokens, mask = _batch(tiny_model.config.vocab_size)
    with torch.no_grad():
        ours = tiny_model(tokens, attention=mode, attention_mask=mask, logits_at="all").logits
        theirs = hf(input_ids=tokens, attention_mask=mask).logits
    real = mask.bool()
    torch.testing.assert_close(ours[real], theirs[real], atol=ATOL, rtol=ATOL)
    # and back: the import reproduces encoderlab's own weights exactly
    back = import_hf(out, tmp_path / f"{target}-back")
    for name, tensor in tiny_model.state_dict().items():
        assert torch.equal(back.state_dict()[name], tensor), name
    assert (tmp_path / f"{target}-back" / "tokenizer.json").is_file()


def test_eurobert_export_loads_as_base_model_for_task_heads(tmp_path, tiny_model):
    out = export_hf(tiny_model, tmp_path / "eb", "eurobert")
    base = AutoModel.from_pretrained(out).eval()
    tokens, mask = _batch(tiny_model.config.vocab_size)
    with torch.no_grad():
        theirs = base(input_ids=tokens, attention_mask=mask).last_hidden_state
    ours = tiny_model(tokens, attention="bidirectional", attention_mask=mask).hidden_states
    torch.testing.assert_close(ours[mask.bool()], theirs[mask.bool()], atol=ATOL, rtol=ATOL)


def test_import_any_llama_decoder_with_gqa_tied_embeddings_and_llama3_rope(tmp_path):
    config = transformers.LlamaConfig(
        vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=8,
        num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True,
        rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
    )
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(config).eval()
    hf.save_pretrained(tmp_path / "llama")
    model = import_hf(tmp_path / "llama", tmp_path / "ours", mask_token_id=299).eval()
    assert model.config.rope_scaling["rope_type"] == "llama3" and model.config.mask_token_id == 299
    assert torch.equal(model.lm_head.weight, model.embed.weight)  # untied copy of the tied head
    tokens, mask = _batch(300)
    with torch.no_grad():
        theirs = hf(input_ids=tokens, attention_mask=mask).logits
        ours = model(tokens, attention="causal", attention_mask=mask, logits_at="all").logits
    torch.testing.assert_close(ours[mask.bool()], theirs[mask.bool()], atol=ATOL, rtol=ATOL)
    reloaded = load_checkpoint(tmp_path / "ours").eval()
    torch.testing.assert_close(reloaded(tokens, attention="bidirectional").hidden_states,
                               model(tokens, attention="bidirectional").hidden_states, atol=0, rtol=0)


def test_import_eurobert_from_transformers(tmp_path):
    config = transformers.EuroBertConfig(
        vocab_size=256, hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=6,
        num_key_value_heads=3, head_dim=8, pad_token_id=0, bos_token_id=1, eos_token_id=2, mask_token_id=3,
    )
    torch.manual_seed(0)
    hf = transformers.EuroBertForMaskedLM(config).eval()
    hf.save_pretrained(tmp_path / "eb")
    model = import_hf(tmp_path / "eb").eval()
    assert model.config.mask_token_id == 3 and model.config.head_dim == 8
    tokens, mask = _batch(256)
    with torch.no_grad():
        theirs = hf(input_ids=tokens, attention_mask=mask).logits
        ours = model(tokens, attention="bidirectional", attention_mask=mask, logits_at="all").logits
    torch.testing.assert_close(ours[mask.bool()], theirs[mask.bool()], atol=ATOL, rtol=ATOL)


def test_import_refuses_other_architectures(tmp_path):
    bert = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=64)
    transformers.BertModel(bert).save_pretrained(tmp_path / "bert")
    with pytest.raises(CheckpointError, match=r"architecture 'bert' is not supported"):
        import_hf(tmp_path / "bert", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_import_refuses_pickles_and_mismatched_shapes(tmp_path, tiny_model):
    out = export_hf(tiny_model, tmp_path / "llama", "llama")
    config = json.loads((out / "config.json").read_text())
    config["intermediate_size"] = 200
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"mlp.gate_up.weight' has shape \(320, 64\), expected \(400, 64\)"):
        import_hf(out, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    (out / "model.safetensors").unlink()
    torch.save({}, out / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"pickle files pytorch_model.bin"):
        import_hf(out)


def test_export_refuses_existing_output(tmp_path, tiny_model):
    (tmp_path / "taken").mkdir()
    with pytest.raises(FileExistsError, match="taken: already exists"):
        export_hf(tiny_model, tmp_path / "taken", "eurobert")
    with pytest.raises(ValueError, match="export target"):
        export_hf(tiny_model, tmp_path / "x", "bert")


def test_exported_model_keeps_gqa_and_head_dim(tmp_path):
    from encoderlab.model import ModelConfig

    model = build_encoder(ModelConfig.from_name("tiny", head_dim=24), seed=0)
    out = export_hf(model, tmp_path / "eb", "eurobert")
    config = json.loads((out / "config.json").read_text())
    assert (config["head_dim"], config["num_key_value_heads"], config["tie_word_embeddings"]) == (24, 2, False)
