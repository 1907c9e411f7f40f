"""Every score is the protocol's score: runs keyed by data and settings, protocols never pooled,
the paper's optimizer, decoders evaluated bidirectionally or not at all, sane QA windows."""

import sqlite3

import pytest
import torch

from encoderlab.config import ConfigError
from encoderlab.evaluation.backbone import Backbone
from encoderlab.evaluation.features import document_text, qa_features, query_text
from encoderlab.evaluation.finetune import FinetuneConfig, build_optimizer, finetune, training_steps
from encoderlab.evaluation.protocol import protocol_card, protocol_identity
from encoderlab.evaluation.store import model_fingerprint
from encoderlab.evaluation.sweep import run_sweep
from encoderlab.evaluation.tasks import load_task
from testkit import SMALL, evaluate_cli


def test_model_fingerprint_covers_tokenizer_and_architecture_config(tiny_checkpoint, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_checkpoint, copy)
    assert model_fingerprint(copy) == model_fingerprint(tiny_checkpoint)
    tokenizer = copy / "tokenizer.json"
    tokenizer.write_text(tokenizer.read_text().replace('"<unk>"', '"<unk2>"', 1) + " ")
    assert model_fingerprint(copy) != model_fingerprint(tiny_checkpoint)
    shutil.rmtree(copy)
    shutil.copytree(tiny_checkpoint, copy)
    config = (copy / "config.json").read_text()
    (copy / "config.json").write_text(config.replace('"rope_theta": 10000.0', '"rope_theta": 500000.0'))
    assert '"rope_theta": 10000.0' in config and model_fingerprint(copy) != model_fingerprint(tiny_checkpoint)


# -- 4. the paper's protocol by default, every setting visible ----------------------------------------
def test_defaults_are_the_papers_protocol():
    config = FinetuneConfig()
    assert (config.adam_beta1, config.adam_beta2, config.adam_eps, config.weight_decay) == (0.9, 0.95, 1e-5, 0.1)
    assert (config.batch_size, config.max_steps, config.warmup_ratio, config.grad_clip) == (32, 1000, 0.1, 1.0)
    assert config.max_length == 2048 and config.attention == "bidirectional" and config.tc_full_epoch
    assert (config.query_prefix, config.document_prefix, config.temperature) == ("Query: ", "Document: ", 0.05)
    assert query_text("what is x", config) == "Query: what is x"
    assert document_text({"title": "X", "text": "x is y"}, config) == "Document: X. x is y"
    assert document_text({"title": "", "text": "x is y"}, config) == "Document: x is y"
    card = "\n".join(protocol_card(protocol_identity(config, "fp32"), [1e-5, 2e-5], [0, 1]))
    for text in ("AdamW betas (0.9, 0.95), eps 1e-05, weight decay 0.1", "2048 tokens", "'Query: '", "1e-05, 2e-05",
                 "bidirectional", "fp32"):
        assert text in card
    assert training_steps("tc", 14041, config) == 439 and training_steps("tc", 59924, config) == 1873  # one epoch
    assert training_steps("sc", 63981, config) == 1000 and training_steps("sc", 300, config) == 10


def test_optimizer_and_schedule_are_the_hf_trainers():
    from transformers import get_linear_schedule_with_warmup

    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))
    optimizer, scheduler, warmup = build_optimizer([model], 1e-3, FinetuneConfig(), steps=25)
    assert warmup == 3  # ceil(0.1 x 25), as TrainingArguments.get_warmup_steps
    decayed, plain = optimizer.param_groups
    assert {p.ndim for p in decayed["params"]} == {2} and decayed["weight_decay"] == 0.1
    assert {p.ndim for p in plain["params"]} == {1} and plain["weight_decay"] == 0.0  # biases and norms
    assert decayed["betas"] == (0.9, 0.95) and decayed["eps"] == 1e-5
    reference = torch.optim.AdamW(torch.nn.Linear(1, 1).parameters(), lr=1e-3)
    reference_schedule = get_linear_schedule_with_warmup(reference, 3, 25)
    for _ in range(25):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(reference.param_groups[0]["lr"], abs=0)
        optimizer.step(), scheduler.step(), reference.step(), reference_schedule.step()


def test_default_max_length_is_the_models_positions(tiny_checkpoint):
    result = finetune(str(tiny_checkpoint), load_task("toy-sentiment"), 1e-3, 0,
                      FinetuneConfig(max_steps=2, batch_size=8, max_eval_examples=8))
    assert result.effective["max_length"] == 512  # tiny: 512 positions; the protocol asks up to 2048
    assert result.effective["warmup_steps"] == 1 and result.effective["steps"] == 2


# -- 5. decoders: bidirectional through the native model, or causal only on request ------------------------
def test_llama_export_is_evaluated_bidirectionally_like_its_source(tiny_checkpoint, tmp_path):
    from encoderlab.model.export import export_hf

    exported = export_hf(tiny_checkpoint, tmp_path / "llama", target="llama", tokenizer_dir=tiny_checkpoint)
    config = FinetuneConfig(max_steps=3, **SMALL)
    native = finetune(str(tiny_checkpoint), load_task("toy-sentiment"), 1e-3, 0, config)
    through_hf = finetune(str(exported), load_task("toy-sentiment"), 1e-3, 0, config)
    assert through_hf.effective["backbone"] == "imported llama" and through_hf.effective["attention"] == "bidirectional"
    assert through_hf.test == native.test and through_hf.test_items == native.test_items
    causal = finetune(str(tiny_checkpoint), load_task("toy-sentiment"), 1e-3, 0,
                      FinetuneConfig(max_steps=3, attention="causal", **SMALL))
    assert causal.effective["attention"] == "causal" and causal.test_items != native.test_items


def test_other_decoders_need_an_explicit_causal_protocol(tiny_checkpoint, tmp_path):
    from transformers import GPT2Config, GPT2Model

    gpt2 = tmp_path / "gpt2"
    GPT2Model(GPT2Config(vocab_size=400, n_embd=32, n_layer=1, n_head=2, n_positions=256)).save_pretrained(gpt2)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tiny_checkpoint / name).is_file():
            (gpt2 / name).write_bytes((tiny_checkpoint / name).read_bytes())
    with pytest.raises(ConfigError, match="decoder-only.*--attention causal"):
        Backbone(str(gpt2))
    assert Backbone(str(gpt2), attention="causal").kind == "transformers gpt2"
    db = tmp_path / "r.sqlite"
    assert evaluate_cli(gpt2, db, "--tasks", "toy-sentiment") == 2  # refused: exit code 2, nothing run
    assert evaluate_cli(gpt2, db, "--tasks", "toy-sentiment", "--attention", "causal") == 0
    assert '"attention": "causal"' in sqlite3.connect(db).execute("SELECT protocol FROM runs").fetchone()[0]


# -- 8. QA windows stay sane -----------------------------------------------------------------------
def test_qa_window_settings_are_validated_and_windows_bounded(tiny_checkpoint):
    with pytest.raises(ConfigError, match="leaves 61 context tokens per QA window.*doc_stride 128 QA needs at least 171"):
        finetune(str(tiny_checkpoint), load_task("toy-qa"), 1e-3, 0, FinetuneConfig(max_length=128, max_steps=2))
    with pytest.raises(ConfigError, match="QA window"):
        run_sweep(str(tiny_checkpoint), ["toy-qa"], [1e-3], [0], ":memory:", FinetuneConfig(max_length=128),
                  progress=False)
    backbone = Backbone(str(tiny_checkpoint))
    row = load_task("toy-qa").splits["train"][0]
    long = {**row, "context": " ".join([row["context"]] * 40)}
    context_tokens = len(backbone.encode(long["context"]))
    config = FinetuneConfig(max_length=128, max_question_tokens=16, doc_stride=32)
    windows = qa_features(backbone, [long], config, 128, {})
    room = 128 - 16 - 3  # a window's context, at most: consecutive windows advance by room - doc_stride
    assert context_tokens > 1000 and len(windows) <= context_tokens // (room - 32) + 2
    assert len(windows) <= 4 * context_tokens // room + 2  # each context token in at most four windows


# -- 7 (fine-tuning side). retrieval scores in fp32 even under autocast --------------------------------
def test_retrieval_scores_are_fp32_under_autocast():
    from encoderlab.evaluation.retrieval import rank_corpus

    generator = torch.Generator().manual_seed(0)
    vectors = torch.nn.functional.normalize(torch.randn(50, 16, generator=generator), dim=-1)
    queries = torch.nn.functional.normalize(torch.randn(3, 16, generator=generator), dim=-1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        run, _ = rank_corpus([f"d{i}" for i in range(50)], queries, ["a", "b", "c"], set(),
                             lambda start, stop: vectors[start:stop], 16)
    exact = queries @ vectors.T
    for j, qid in enumerate("abc"):
        top = sorted(run[qid].items(), key=lambda kv: -kv[1])[0]
        assert top[1] == exact[j].max().item()  # bit-equal to the fp32 product
