"""Fine-tuning runs and sweeps on CPU with a tiny model on the toyworld tasks."""

import math
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from encoderlab.config import ConfigError

from encoderlab.data import iter_documents, parse_source
from encoderlab.evaluation.finetune import (Backbone, FeatureCache, FinetuneConfig, finetune, qa_features,
                                           tc_features)
from encoderlab.evaluation.metrics import normalize_answer
from encoderlab.evaluation.sweep import run_sweep
from encoderlab.evaluation.tasks import TOYWORLD_TASKS, load_task

FAST = FinetuneConfig(max_steps=4, batch_size=8, max_length=128, max_eval_examples=24, max_question_tokens=16,
                      doc_stride=32, tc_full_epoch=False)


def test_features_label_first_sub_tokens_and_find_answers(tiny_checkpoint):
    backbone = Backbone(str(tiny_checkpoint))
    task = load_task("toy-ner")
    rows = task.splits["train"][:20]
    for row, feature in zip(rows, tc_features(backbone, rows, 128, {})):
        labelled = [label for label in feature["labels"] if label != -100]
        assert labelled == row["ner_tags"] and len(feature["first"]) == len(row["tokens"])
        assert feature["ids"][0] == 1 and feature["ids"][-1] == 2  # framed like pretraining documents
    qa = load_task("toy-qa").splits["train"][:40]
    counter = {}
    # toy contexts are one short sentence: a 32-token window with a 4-token stride makes them slide
    features = qa_features(backbone, qa, FinetuneConfig(doc_stride=4, max_question_tokens=16), 32, counter)
    assert counter.get("windowed", 0) > 0
    for row in qa:
        windows = [f for f in features if qa[f["example"]] is row]
        if row["answers"]["text"]:
            hits = [f for f in windows if f["start"] > 0]
            assert hits, row["id"]
            f = hits[0]
            a, b = f["offsets"][f["start"] - f["context_offset"]][0], f["offsets"][f["end"] - f["context_offset"]][1]
            assert normalize_answer(row["context"][a:b]) == normalize_answer(row["answers"]["text"][0])
        else:
            assert all(f["start"] == f["end"] == 0 for f in windows)


def test_retrieval_texts_are_tokenized_in_one_call_as_one_by_one(tiny_checkpoint):
    from encoderlab.evaluation.features import document_text, ir_framed

    backbone = Backbone(str(tiny_checkpoint))
    texts = [document_text(d, FAST) for d in load_task("toy-retrieval").corpus[:200]] + ["", "a"]
    counted = {}
    framed = ir_framed(backbone, texts, 12, counted)
    one_by_one = [backbone.frame(backbone.encode(t)[:10]) for t in texts]
    assert framed == one_by_one and framed[-2] == backbone.frame([])
    assert counted["truncated"] == sum(len(backbone.encode(t)) > 10 for t in texts) > 0
    assert ir_framed(backbone, [], 12, counted) == []


@pytest.mark.parametrize("name", TOYWORLD_TASKS)
def test_every_task_type_trains_and_scores(tiny_checkpoint, name):
    result = finetune(str(tiny_checkpoint), load_task(name), lr=1e-3, seed=0, config=FAST)
    assert result.status == "ok" and result.steps == 4
    assert 0.0 <= result.test <= 100.0 and 0.0 <= result.validation <= 100.0
    assert result.test_items and all(0.0 <= x <= 1.0 for x in result.test_items)


@pytest.mark.parametrize("name,max_length", [("toy-qa", 48), ("toy-retrieval", 12), ("toy-ner", 12)])
def test_a_shared_feature_cache_changes_nothing_but_the_work(tiny_checkpoint, name, max_length):
    # Short windows and inputs, so truncation and windowing counters are exercised too.
    config = FinetuneConfig(max_steps=3, batch_size=8, max_length=max_length, doc_stride=8, max_eval_examples=16,
                            max_question_tokens=8, tc_full_epoch=False)
    task = load_task(name)
    alone = [finetune(str(tiny_checkpoint), task, lr=1e-3, seed=seed, config=config) for seed in (0, 1)]
    cache = FeatureCache()
    shared = [finetune(str(tiny_checkpoint), task, lr=1e-3, seed=seed, config=config, features=cache)
              for seed in (0, 1)]
    for a, b in zip(alone, shared):
        assert (a.test, a.validation, a.test_items, a.counts, a.metrics) == (b.test, b.validation, b.test_items,
                                                                              b.counts, b.metrics)
    assert sum(alone[0].counts.values()) > 0  # truncated inputs or windowed contexts were counted
    # train, validation, test; a retrieval corpus is streamed, never held (MS MARCO has 8.8M passages)
    assert len(cache._entries) == 3


def test_a_retrieval_corpus_is_ranked_once_for_validation_and_test(tiny_checkpoint, monkeypatch):
    """Validation and test queries of one retrieval task share one pass over its corpus (MS MARCO:
    8.8M passages embedded once per run, not twice). Each split scores as if ranked alone, and the
    corpus's truncated documents are counted once."""
    import torch

    from encoderlab.evaluation.features import document_text
    from encoderlab.evaluation.task_types import ir, task_type

    passes = []
    real = ir.rank_corpus
    monkeypatch.setattr(ir, "rank_corpus", lambda corpus, *a, **k: passes.append(len(corpus)) or real(corpus, *a, **k))
    config = FinetuneConfig(max_steps=2, batch_size=8, max_length=12, max_eval_examples=16, tc_full_epoch=False)
    task = load_task("toy-retrieval")
    backbone = Backbone(str(tiny_checkpoint)).eval()

    def score(splits):
        with torch.no_grad():
            return task_type("ir").score(backbone, None, [(task, s) for s in splits], config, 12,
                                         lambda rows: rows[:16], torch.device("cpu"), FeatureCache(), ("key",))

    joint = score(["validation", "test"])
    assert passes == [len(task.corpus)]
    alone = {**score(["validation"]), **score(["test"])}
    assert passes == [len(task.corpus)] * 3
    for split in ("validation", "test"):
        a, b = joint[(id(task), split)], alone[(id(task), split)]
        scalars = {k: v for k, v in b.metrics.items() if not isinstance(v, list)}
        assert {k: a.metrics[k] for k in scalars} == pytest.approx(scalars, abs=1e-9)
        assert a.metrics["held_out_mask"] == b.metrics["held_out_mask"]
        assert a.items == pytest.approx(b.items, abs=1e-9)
        assert len(a.items) == 16
    assert joint[(id(task), "validation")].pass_id == joint[(id(task), "test")].pass_id
    corpus_truncated = sum(len(backbone.encode(document_text(d, config))) > 10 for d in task.corpus)
    assert corpus_truncated > 0  # 12 tokens: most reviews are cut
    both = alone[(id(task), "validation")].counts["truncated"] + alone[(id(task), "test")].counts["truncated"]
    assert joint[(id(task), "test")].counts["truncated"] == both - corpus_truncated
    # splits that share query ids (a task built by hand, not loaded) are not merged: a pass each
    from dataclasses import replace

    shared = replace(task, queries={**task.queries, "test": task.queries["validation"]},
                     qrels={**task.qrels, "test": task.qrels["validation"]})
    with torch.no_grad():
        apart = task_type("ir").score(backbone, None, [(shared, "validation"), (shared, "test"), (shared, "test")], config,
                                       12, lambda rows: rows[:16], torch.device("cpu"), FeatureCache(), ("key",))
    assert passes == [len(task.corpus)] * 5 and len(apart) == 2
    whole_corpus = {k: v for k, v in alone[(id(task), "validation")].metrics.items()
                    if "judged pool" not in k and isinstance(v, (int, float))}
    assert apart[(id(shared), "test")].metrics["held_out_mask"] == alone[(id(task), "validation")].metrics["held_out_mask"]
    assert {k: apart[(id(shared), "test")].metrics[k] for k in whole_corpus} == pytest.approx(whole_corpus, abs=1e-9)
    assert apart[(id(shared), "test")].items == pytest.approx(alone[(id(task), "validation")].items, abs=1e-9)


def test_same_seed_same_result_and_divergence_is_recorded(tiny_checkpoint):
    task = load_task("toy-sentiment")
    a = finetune(str(tiny_checkpoint), task, lr=1e-3, seed=3, config=FAST)
    b = finetune(str(tiny_checkpoint), task, lr=1e-3, seed=3, config=FAST)
    assert a.test == b.test and a.test_items == b.test_items
    exploded = finetune(str(tiny_checkpoint), task, lr=1e30, seed=0, config=FAST)
    assert exploded.status == "diverged" and math.isnan(exploded.test)


def test_transformers_encoders_use_the_same_heads(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.train_from_iterator(iter_documents(parse_source("toyworld", toyworld_documents=500)),
                                trainers.WordPieceTrainer(vocab_size=300, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                        sep_token="[SEP]", mask_token="[MASK]")
    tokenizer.save_pretrained(tmp_path / "bert")
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(tmp_path / "bert")
    result = finetune(str(tmp_path / "bert"), load_task("toy-nli"), lr=1e-3, seed=0, config=FAST)
    assert result.status == "ok" and 0 <= result.test <= 100


def test_sweep_table_and_resume_without_duplicates(tiny_checkpoint, tmp_path):
    db = tmp_path / "results.sqlite"
    rows = run_sweep(str(tiny_checkpoint), ["toy-sentiment", "toy-ner"], [1e-3, 3e-4], [0, 1], db, FAST, progress=False)
    tasks = {r["task"]: r for r in rows}
    assert set(tasks) == {"toy-sentiment", "toy-ner", "SC mean", "TC mean"}
    assert tasks["toy-sentiment"]["n"] == 2 and tasks["toy-sentiment"]["lr"] in (1e-3, 3e-4)
    assert tasks["toy-sentiment"]["ci_low"] <= tasks["toy-sentiment"]["mean"] <= tasks["toy-sentiment"]["ci_high"]
    again = run_sweep(str(tiny_checkpoint), ["toy-sentiment", "toy-ner"], [1e-3, 3e-4], [0, 1], db, FAST, progress=False)
    assert again == rows  # nothing re-run, same table
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 8


@pytest.mark.slow
def test_killed_sweep_completes_on_rerun_with_no_duplicate_rows(tiny_checkpoint, tmp_path):
    db = tmp_path / "results.sqlite"
    command = [sys.executable, "-m", "encoderlab.cli", "evaluate", str(tiny_checkpoint), "--lrs", "1e-3,3e-4",
               "--seeds", "0,1", "--max-steps", "4", "--batch-size", "8", "--max-length", "128",
               "--max-eval-examples", "24", "--set", "max_question_tokens=16", "--set", "doc_stride=32",
               "--set", "tc_full_epoch=false", "--results", str(db), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    done = 0
    while time.time() < deadline and done < 3:
        time.sleep(0.2)
        if db.exists():
            try:
                done = sqlite3.connect(db).execute("SELECT COUNT(*) FROM runs").fetchone()[0]
            except sqlite3.OperationalError:
                done = 0
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 3 <= done < 20
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "| IR mean |" in finished.stdout and "| toy-qa | squad_v2 |" in finished.stdout
    connection = sqlite3.connect(db)
    assert connection.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 5 * 2 * 2
    assert connection.execute("SELECT COUNT(DISTINCT dataset || lr || seed) FROM runs").fetchone()[0] == 20


def test_zero_shot_tasks_are_trained_on_their_source_and_tested_on_their_own_data(tiny_checkpoint, tmp_path):
    from encoderlab.data import World, export_tasks

    export_tasks(World(seed=0), tmp_path / "ms")  # toy retrieval in the BEIR layout stands in for MS MARCO ...
    export_tasks(World(seed=1), tmp_path / "nq")  # ... and another world's for NQ (test qrels only are read)
    rows = run_sweep(str(tiny_checkpoint), ["nq"], [1e-3], [0], tmp_path / "r.sqlite", FAST, progress=False,
                     local_dirs={"msmarco": str(tmp_path / "ms" / "toy-retrieval"),
                                 "nq": str(tmp_path / "nq" / "toy-retrieval")})
    assert rows[0]["task"] == "nq" and 0 <= rows[0]["mean"] <= 100
    record = sqlite3.connect(tmp_path / "r.sqlite").execute("SELECT dataset, status FROM runs").fetchall()
    assert record == [("nq", "ok")]


def test_retrieval_chunk_size_is_validated():
    with pytest.raises(ConfigError, match="retrieval_chunk_docs must be a positive integer"):
        FinetuneConfig(retrieval_chunk_docs=0)


@pytest.mark.parametrize("chunk_docs", [7, 64, 1000])
def test_corpus_ranking_in_chunks_matches_the_full_score_matrix(chunk_docs):
    import torch

    from encoderlab.evaluation.retrieval import RETRIEVAL_DEPTH, rank_corpus

    generator = torch.Generator().manual_seed(0)
    corpus = [{"_id": f"d{i}", "title": "", "text": f"doc {i}"} for i in range(250)]
    vectors = torch.nn.functional.normalize(torch.randn(250, 16, generator=generator), dim=-1)
    queries = torch.nn.functional.normalize(torch.randn(5, 16, generator=generator), dim=-1)
    pool = {f"d{i}" for i in range(0, 250, 3)}  # judged documents: a third of the corpus

    def embed(texts):  # the embedding of "doc i" is row i
        return vectors[[int(t.split()[1]) for t in texts]]

    run, pool_run = rank_corpus(corpus, queries, [f"q{j}" for j in range(5)], pool, embed, chunk_docs)
    scores = queries @ vectors.T
    for j in range(5):
        full = [f"d{i}" for i in scores[j].argsort(descending=True)[:RETRIEVAL_DEPTH].tolist()]
        assert list(run[f"q{j}"]) == full
        assert run[f"q{j}"][full[0]] == pytest.approx(scores[j].max().item())
        in_pool = [f"d{i}" for i in scores[j].argsort(descending=True).tolist() if f"d{i}" in pool]
        assert list(pool_run[f"q{j}"]) == in_pool[:RETRIEVAL_DEPTH]  # exact within the pool, all 84 of it


def test_one_training_run_serves_a_task_and_its_zero_shot_test_sets(tiny_checkpoint, tmp_path):
    from encoderlab.data import World, export_tasks

    export_tasks(World(seed=0), tmp_path / "ms")
    export_tasks(World(seed=1), tmp_path / "nq")
    dirs = {"msmarco": str(tmp_path / "ms" / "toy-retrieval"), "nq": str(tmp_path / "nq" / "toy-retrieval")}
    run_sweep(str(tiny_checkpoint), ["msmarco", "nq"], [1e-3], [0], tmp_path / "r.sqlite", FAST, progress=False,
              local_dirs=dirs)
    rows = sqlite3.connect(tmp_path / "r.sqlite").execute(
        "SELECT dataset, validation_score, test_score, train_seconds FROM runs ORDER BY dataset").fetchall()
    assert [r[0] for r in rows] == ["msmarco", "nq"]
    # one training run: the same MS MARCO validation score and the same recorded training time
    assert rows[0][1] == rows[1][1] and rows[0][3] == rows[1][3]
    # and the scores of two separate runs with that seed (deterministic on CPU)
    ms, nq = load_task("msmarco", local_dir=dirs["msmarco"]), load_task("nq", local_dir=dirs["nq"])
    assert rows[0][2] == finetune(str(tiny_checkpoint), ms, 1e-3, 0, FAST).test
    assert rows[1][2] == finetune(str(tiny_checkpoint), ms, 1e-3, 0, FAST, test_task=nq).test
