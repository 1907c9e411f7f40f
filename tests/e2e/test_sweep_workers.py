"""Fine-tuning runs in parallel worker processes (evaluation/pool.py): the same runs, keys and
scores as one at a time, failures surfaced, results recorded as they arrive."""

import json
import sqlite3
import subprocess
import sys

import pytest
import torch

from encoderlab.config import ConfigError
from encoderlab.evaluation.finetune import FinetuneConfig
from encoderlab.evaluation.pool import RunGroup, run_parallel, threads_per_worker
from encoderlab.evaluation.sweep import run_sweep

FAST = FinetuneConfig(max_steps=4, batch_size=8, max_length=128, max_eval_examples=24, max_question_tokens=16,
                      doc_stride=32, tc_full_epoch=False)
TASKS = ["toy-sentiment", "toy-qa"]
THREADS = torch.get_num_threads()


def _runs(db):
    rows = sqlite3.connect(db).execute(
        "SELECT run_key, dataset, lr, seed, status, validation_score, test_score, provenance FROM runs").fetchall()
    return {r[0]: r[1:] for r in rows}


def test_two_workers_record_the_same_runs_under_the_same_keys_with_the_same_scores(tiny_checkpoint, tmp_path):
    serial, parallel = tmp_path / "serial.sqlite", tmp_path / "parallel.sqlite"
    rows_serial = run_sweep(str(tiny_checkpoint), TASKS, [1e-3], [0, 1], serial, FAST, progress=False)
    rows_parallel = run_sweep(str(tiny_checkpoint), TASKS, [1e-3], [0, 1], parallel, FAST, progress=False, workers=2)
    a, b = _runs(serial), _runs(parallel)
    assert len(a) == 4 and set(a) == set(b)  # every run, once, under the key it has when run alone
    for key in a:
        assert a[key][:4] == b[key][:4]
        # another thread count may round floats differently; a score is a count of items, so a
        # difference would be a whole item (of 24): none is expected, and a real one would show
        assert a[key][4] == pytest.approx(b[key][4], abs=1e-6) and a[key][5] == pytest.approx(b[key][5], abs=1e-6)
        assert json.loads(b[key][6])["execution"] == {"workers": 2, "threads": threads_per_worker(2)}
        assert json.loads(a[key][6])["execution"] == {"workers": 1, "threads": torch.get_num_threads()}
    assert [r["task"] for r in rows_serial] == [r["task"] for r in rows_parallel]
    for x, y in zip(rows_serial, rows_parallel):
        assert x["lr"] == y["lr"] and x["mean"] == pytest.approx(y["mean"], abs=1e-6)
    # a rerun with workers finds everything done and starts no process
    again = run_sweep(str(tiny_checkpoint), TASKS, [1e-3], [0, 1], parallel, FAST, progress=False, workers=2)
    assert [r["mean"] for r in again] == [r["mean"] for r in rows_parallel]
    assert len(_runs(parallel)) == 4


def test_a_failing_run_in_a_worker_stops_the_sweep_with_its_error_and_keeps_what_finished(tiny_checkpoint):
    # the second group names a task no worker can load: its error reaches the caller as itself,
    # and the run that finished was handed to record() first
    from encoderlab.evaluation.store import data_fingerprint
    from encoderlab.evaluation.tasks import load_task

    fingerprints = {"toy-sentiment": data_fingerprint(load_task("toy-sentiment"))}
    good = RunGroup("toy-sentiment", 1e-3, 0, ("toy-sentiment",))
    recorded = []
    with pytest.raises(ConfigError, match="no-such-task"):
        run_parallel(str(tiny_checkpoint), [good, RunGroup("no-such-task", 1e-3, 0, ("no-such-task",))], FAST, 2, {},
                     fingerprints, False, lambda group, results: recorded.append((group, results[0].status)))
    assert recorded == [(good, "ok")]


def test_a_worker_refuses_data_other_than_what_the_sweep_fingerprinted(monkeypatch):
    from encoderlab.evaluation import pool

    for name in ("ENCODERLAB_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.setenv(name, "1")  # a worker exports its threads; undone after the test
    pool._init_worker(1, {}, {"toy-sentiment": "0" * 64})
    try:
        with pytest.raises(RuntimeError, match=r"task 'toy-sentiment': a fine-tuning worker .* loaded data with "
                                               r"fingerprint [0-9a-f]{12}, not the 000000000000"):
            pool._task("toy-sentiment")
    finally:
        pool._STATE.clear()
        torch.set_num_threads(THREADS)


@pytest.mark.parametrize("workers", [0, -1, 1.5, True])
def test_workers_must_be_a_whole_number_of_at_least_one(tiny_checkpoint, tmp_path, workers):
    with pytest.raises(ConfigError, match="workers: expected a whole number >= 1"):
        run_sweep(str(tiny_checkpoint), ["toy-sentiment"], [1e-3], [0], tmp_path / "r.sqlite", FAST, progress=False,
                  workers=workers)
    assert not (tmp_path / "r.sqlite").exists()


def test_the_cli_takes_workers_and_refuses_a_bad_count(tiny_checkpoint, tmp_path):
    db = tmp_path / "r.sqlite"
    base = [sys.executable, "-m", "encoderlab.cli", "evaluate", str(tiny_checkpoint), "--tasks", "toy-sentiment",
            "--lrs", "1e-3", "--seeds", "0,1", "--max-steps", "3", "--batch-size", "8", "--max-length", "128",
            "--max-eval-examples", "16", "--results", str(db), "--no-progress"]
    bad = subprocess.run(base + ["--workers", "0"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "workers: expected a whole number >= 1" in bad.stderr
    good = subprocess.run(base + ["--workers", "2"], capture_output=True, text=True, timeout=300)
    assert good.returncode == 0, good.stderr[-2000:]
    assert "| toy-sentiment | accuracy |" in good.stdout and len(_runs(db)) == 2


def test_a_study_spec_with_a_bad_worker_count_fails_when_loaded(tmp_path):
    from encoderlab.study.spec import load_study

    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\nruns:\n  - {name: A, preset: tiny-mlm40}\n"
                    "evaluation: {tasks: [toy-sentiment], lrs: [1.0e-3], seeds: [0], workers: 0}\n")
    with pytest.raises(ConfigError, match="evaluation.workers: expected a whole number >= 1, got 0"):
        load_study(str(spec))
