"""`encoderlab cpt` end to end on CPU: tiny random Qwen3 and Gemma 3 (text) decoders saved by
transformers, shards made with their tokenizer, continued MLM pretraining with every shape inferred
(no model overrides)."""

import json

import pytest
import torch
import transformers

from encoderlab.cli import main
from encoderlab.model import load_checkpoint
from encoderlab.training.cpt import cpt_schedule


def _decoder(path, vocab=320, family="qwen3"):
    """A tiny random decoder (Qwen3 or Gemma 3 text) with a toyworld BPE tokenizer that has no mask
    token (the usual decoder case)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from encoderlab.data import iter_documents, parse_source

    documents = list(iter_documents(parse_source("toyworld", toyworld_documents=400)))
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=280, special_tokens=["<pad>", "<s>", "</s>", "<unk>"], show_progress=False)
    tok.train_from_iterator(documents, trainer)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
                                                eos_token="</s>", pad_token="<pad>")
    common = dict(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=16, max_position_embeddings=512, pad_token_id=0, bos_token_id=1,
                  eos_token_id=2)
    if family == "qwen3":
        config = transformers.Qwen3Config(**common)
    else:  # Gemma 3: sliding and full layers with their own RoPE bases, tied head, soft-capping off
        config = transformers.Gemma3TextConfig(**common, sliding_window=16, query_pre_attn_scalar=16,
                                               layer_types=["sliding_attention", "full_attention"])
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(path)
    fast.save_pretrained(path)
    return len(fast)


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_cpt_from_a_tiny_qwen3_end_to_end(tmp_path, capsys):
    tokens = _decoder(tmp_path / "qwen3")
    shards, out = tmp_path / "shards", tmp_path / "run"
    assert main(["data", "prepare", "toyworld", "--toyworld-documents", "400", "--tokenizer", str(tmp_path / "qwen3"),
                 "-o", str(shards), "--no-progress"]) == 0
    assert main(["cpt", str(tmp_path / "qwen3"), "--data", str(shards), "--steps", "40", "--seq-len", "128",
                 "--batch-tokens", "1024", "--output", str(out), "--no-progress"]) == 0
    record = json.loads((out / "cpt.json").read_text())
    assert record["model_type"] == "qwen3" and record["objective"] == "mlm" and record["mask_ratio"] == 0.4
    assert record["mask"] == {"mask_token_id": tokens, "mask_token": "<mask>", "origin": "added",
                              "decoder_vocab_size": 320}  # a free id of the embedding: nothing grown
    assert record["schedule"] == {**cpt_schedule(40), "final_lr": 0.0}
    assert record["schedule"]["lr"] == 5e-4
    losses = [r["loss"] for r in _metrics(out)]
    assert len(losses) >= 4 and sum(losses[-2:]) / 2 < sum(losses[:2]) / 2 - 0.3, losses
    final = load_checkpoint(out / "checkpoints" / "step-000040")
    config = final.config
    assert (config.qk_norm, config.head_dim, config.vocab_size, config.mask_token_id) == ("head", 16, 320, tokens)
    assert (out / "checkpoints" / "step-000040" / "tokenizer.json").is_file()  # the tokenizer came along
    assert "final checkpoint" in capsys.readouterr().out


def test_cpt_refuses_before_writing(tmp_path):
    _decoder(tmp_path / "qwen3")
    assert main(["cpt", str(tmp_path / "qwen3"), "--data", str(tmp_path / "nothing"), "--output",
                 str(tmp_path / "run")]) == 2
    assert not (tmp_path / "run").exists()
    with pytest.raises(SystemExit):
        main(["cpt", str(tmp_path / "qwen3"), "--data", "x", "--objective", "clm"])


def test_cpt_from_a_tiny_gemma3_end_to_end(tmp_path):
    tokens = _decoder(tmp_path / "gemma3", family="gemma3_text")
    shards, out = tmp_path / "shards", tmp_path / "run"
    assert main(["data", "prepare", "toyworld", "--toyworld-documents", "400", "--tokenizer",
                 str(tmp_path / "gemma3"), "-o", str(shards), "--no-progress"]) == 0
    assert main(["cpt", str(tmp_path / "gemma3"), "--data", str(shards), "--steps", "40", "--seq-len", "128",
                 "--batch-tokens", "1024", "--output", str(out), "--no-progress"]) == 0
    record = json.loads((out / "cpt.json").read_text())
    assert record["model_type"] == "gemma3_text" and record["mask"]["mask_token_id"] == tokens
    assert record["bidirectional_sliding_window"] == "full"  # recorded: windows off in bidirectional mode
    losses = [r["loss"] for r in _metrics(out)]
    assert len(losses) >= 4 and sum(losses[-2:]) / 2 < sum(losses[:2]) / 2 - 0.3, losses
    config = load_checkpoint(out / "checkpoints" / "step-000040").config
    assert (config.norm_offset, config.block_norms, config.scale_embeddings, config.qk_norm) == (
        1.0, "sandwich", True, "head")
    assert (config.sliding_window, config.layer_types, config.mask_token_id) == (16, ["sliding", "full"], tokens)
