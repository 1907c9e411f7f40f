"""What the test tiers (unit, e2e, gpu) share: where the repository and the genuine datasets are, how
a test starts a process it will interrupt, tiny run configs and their outputs, the fine-tuning
settings of the small tests, the tiny study spec, a tiny random decoder, and the helpers of the
data-safety tests (a folder's listing, a one-line error, a size-limited process)."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import torch
import transformers
from safetensors.torch import load_file

from encoderlab.cli import main
from encoderlab.evaluation.finetune import FinetuneConfig
from encoderlab.training import PretrainConfig, apply_overrides, run_preset

ROOT = Path(__file__).resolve().parents[1]  # the repository
SHARED = ROOT.parent / "shared" / "datasets"  # genuine dataset files: in CI, not in a user's clone


def interruptible() -> None:
    """``preexec_fn`` for a child a test sends SIGINT: a process started from a background job of a
    non-interactive shell (a CI runner, ``cmd &``) inherits SIGINT as ignored, and Python then installs
    no KeyboardInterrupt handler; the child must get the default disposition back to be interruptible."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# -- pretraining (unit/test_pretrain.py, e2e/test_pretrain_runs.py) ------------------------------
def tiny(name: str, out: Path, *overrides: str) -> PretrainConfig:
    data = apply_overrides(run_preset(name).to_dict(), [f"output_dir={out}", *overrides])
    return PretrainConfig.from_dict(data)


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return load_file(str(checkpoint / "model.safetensors"))


# -- fine-tuning and evaluate (unit/test_finetune.py, unit/test_evaluation_trust.py, e2e) ----------
FAST = FinetuneConfig(max_steps=4, batch_size=8, max_length=128, max_eval_examples=24, max_question_tokens=16,
                      doc_stride=32, tc_full_epoch=False)


SMALL = dict(batch_size=8, max_length=128, max_eval_examples=24, max_question_tokens=16, doc_stride=32,
             tc_full_epoch=False)


def evaluate_cli(model, db, *extra):
    return main(["evaluate", str(model), "--lrs", "1e-3", "--seeds", "0", "--max-steps", "3", "--batch-size", "8",
                 "--max-length", "128", "--max-eval-examples", "24", "--results", str(db), "--no-progress", *extra])


# -- studies (unit/test_study_spec.py, e2e/test_study.py) ----------------------------------------
SPEC = """
name: tiny-study
description: tiny models, two objectives, two tasks
data: {source: toyworld, toyworld_documents: 1500, train_tokenizer_vocab: 400}
runs:
  - {name: CLM, preset: tiny-clm, overrides: [phases.0.steps=12, schedule.warmup_steps=2, schedule.decay_steps=4]}
  - {name: MLM, preset: tiny-mlm40, overrides: [phases.0.steps=12, schedule.warmup_steps=2, schedule.decay_steps=4],
     evaluate_steps: [8]}
  - {name: CPT, preset: tiny-clm-dec-mlm40,
     init: {run: CLM, step: 12}, overrides: [phases.0.steps=6,
                 schedule.warmup_steps=1, schedule.decay_steps=2]}
evaluation:
  tasks: [toy-sentiment, toy-ner]
  lrs: [1.0e-3, 3.0e-4]
  seeds: [0, 1]
  max_steps: 3
  batch_size: 8
  max_length: 96
  max_eval_examples: 24
  protocol: {max_question_tokens: 16, doc_stride: 32, tc_full_epoch: false}
comparisons: [[MLM, CLM]]
"""


# -- decoders, cpt and data safety (unit/test_cpt.py, unit/test_data_safety.py, e2e) ------------
def tiny_decoder(path, vocab=320, family="qwen3"):
    """A tiny random decoder (Qwen3, Llama or Gemma 3 text) with a toyworld BPE tokenizer that has no mask
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
    common = {"vocab_size": vocab, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "max_position_embeddings": 512,
              "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
    if family == "qwen3":
        config = transformers.Qwen3Config(**common)
    elif family == "llama":  # the paper's architecture: exports to EuroBERT and sentence-transformers
        config = transformers.LlamaConfig(**common)
    else:  # Gemma 3: sliding and full layers with their own RoPE bases, tied head, soft-capping off
        config = transformers.Gemma3TextConfig(**common, sliding_window=16, query_pre_attn_scalar=16,
                                               layer_types=["sliding_attention", "full_attention"])
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(path)
    fast.save_pretrained(path)
    return len(fast)


def prepare_shards(decoder, shards, *more):
    assert main(["data", "prepare", "toyworld", "--toyworld-documents", "400", "--tokenizer", str(decoder), "-o",
                 str(shards), "--no-progress", *more]) == 0


def cpt_main(qwen3, output, *more, steps="4"):
    hf_dir, shards = qwen3
    return main(["cpt", str(hf_dir), "--data", str(shards), "--steps", steps, "--seq-len", "128", "--batch-tokens",
                 "1024", "--output", str(output), "--no-progress", *more])


def listing(folder: Path) -> dict[str, int]:
    """Every file under ``folder`` with its size and modification time (what a refused command must not change)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(capsys, *words):
    err = capsys.readouterr().err
    err = err[err.index("encoderlab: error: "):] if "encoderlab: error: " in err else err  # past a progress bar
    assert err.count("\n") == 1 and err.startswith("encoderlab: error: "), err
    for word in words:
        assert word in err, err
    return err


def limited(code: str, limit: int) -> subprocess.CompletedProcess:
    """``code`` in a process whose files may not grow past ``limit`` bytes (RLIMIT_FSIZE, SIGXFSZ
    ignored: a write past it fails with EFBIG, as one on a full disk fails with ENOSPC)."""
    prelude = ("import resource, signal, sys\nsignal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
               f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\nfrom encoderlab.cli import main\n")
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=300)


# -- retrieval references ---------------------------------------------------------------------------
def trec_order(scores):
    """trec_eval's rank order (score descending, then document id descending), written out here."""
    return [d for d, _ in sorted(scores.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)]


def pytrec_per_query(pytrec_eval, run, qrels):
    """pytrec_eval on the raw run, ties and all: NDCG@10 and Recall@100 as it computes them;
    MRR@10 is its ``recip_rank`` on the run cut to the top 10 of trec_eval's own order."""
    raw = {q: scores for q, scores in run.items() if scores}
    top10 = {q: {d: scores[d] for d in trec_order(scores)[:10]} for q, scores in raw.items()}
    full = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10", "recall_100"}).evaluate(raw)
    cut = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    values = {"ndcg@10": {}, "mrr@10": {}, "recall@100": {}}
    for q in qrels:  # a judged query missing from the results retrieved nothing: 0, as trec_eval -c
        values["ndcg@10"][q] = full.get(q, {}).get("ndcg_cut_10", 0.0)
        values["recall@100"][q] = full.get(q, {}).get("recall_100", 0.0)
        values["mrr@10"][q] = cut.get(q, {}).get("recip_rank", 0.0)
    return values
