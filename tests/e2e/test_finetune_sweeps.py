"""Fine-tuning sweeps end to end: killed and resumed sweeps, zero-shot test sets, the retrieval corpus
ranked once, the shared feature cache."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from encoderlab.evaluation.finetune import Backbone, FeatureCache, FinetuneConfig, finetune
from encoderlab.evaluation.sweep import run_sweep
from encoderlab.evaluation.tasks import load_task
from testkit import FAST


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
    # train, validation, test; a retrieval corpus once more, as framed ids (int32 arrays, memory-mapped when
    # the sweep has a corpus cache on disk), never as one list of Python lists per run
    assert len(cache._entries) == (4 if name == "toy-retrieval" else 3)

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
