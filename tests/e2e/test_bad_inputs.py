"""Ordinary mistakes, run as a user would: a real `encoderlab` subprocess in a temp folder. Each one
must exit with code 2 and one line `encoderlab: error: <input>: ...` naming the input, print no
traceback, and leave the folder exactly as it was."""

import hashlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


def refused(folder: Path, *args: str, names: str) -> str:
    before = snapshot(folder)
    done = subprocess.run([sys.executable, "-m", "encoderlab.cli", *args], cwd=folder, env=ENV, capture_output=True,
                          text=True, timeout=300)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert lines and lines[-1].startswith("encoderlab: error: ") and names in lines[-1], lines[-1:]
    assert snapshot(folder) == before  # nothing written, nothing changed
    return lines[-1]


@pytest.fixture(scope="module")
def model(tiny_checkpoint):
    return str(tiny_checkpoint)


def _evaluate(model, *extra):
    return ("evaluate", model, "--lrs", "1e-3", "--seeds", "0", "--max-steps", "2", "--batch-size", "8",
            "--max-length", "128", "--max-eval-examples", "8", "--no-progress", *extra)


@pytest.mark.parametrize("name, statements, expected", [
    ("app.sqlite", ["CREATE TABLE users (name TEXT)", "INSERT INTO users VALUES ('ada')"],
     "not an encoderlab results database"),  # another application's file
    ("r.sqlite", ["CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
                  "INSERT INTO meta VALUES ('schema_version', '9')", "CREATE TABLE runs (run_key TEXT PRIMARY KEY)"],
     "schema version 9"),  # a newer encoderlab's
])
def test_results_database_not_ours_is_left_untouched(model, tmp_path, name, statements, expected):
    path = tmp_path / name
    connection = sqlite3.connect(path)
    for statement in statements:
        connection.execute(statement)
    connection.commit()
    connection.close()
    message = refused(tmp_path, *_evaluate(model, "--tasks", "toy-sentiment", "--results", str(path)), names=str(path))
    assert expected in message and not (tmp_path / f"{name}-wal").exists()


@pytest.mark.parametrize("extra, names", [
    (("--tasks", "toy-sentiment", "--data", "toy-sentiment=somewhere"), "toy-sentiment"),  # would be ignored
    (("--tasks", "toy-sentiment", "--batch-size", "0"), "argument --batch-size: expected a positive integer, got 0"),
    (("--tasks", "toy-sentiment", "--set", "adam_beta3=0.9"), "adam_beta3"),
    (("--tasks", "toy-sentiment", "--set", "attention=sideways"), "sideways"),
    (("--tasks", "toy-qa", "--max-length", "64"), "QA window"),  # checked before any run
    (("--tasks", "toy-sentiment", "--lrs", "1e-3,fast"), "--lrs"),
    (("--tasks", "sst3"), "sst3"),
])
def test_bad_evaluation_settings(model, tmp_path, extra, names):
    args = list(_evaluate(model, "--results", str(tmp_path / "r.sqlite")))
    if "--max-length" in extra:  # the later flag wins in argparse, but keep the case explicit
        index = args.index("--max-length")
        del args[index : index + 2]
    refused(tmp_path, *args, *extra, names=names)


def test_bad_task_files(model, tmp_path):
    data = tmp_path / "sst2"
    data.mkdir()
    (data / "train.jsonl").write_text('{"sentence": "good", "label": 1}\n[1, 2]\n')
    (data / "validation.jsonl").write_text('{"sentence": "bad", "label": 0}\n')
    refused(tmp_path, *_evaluate(model, "--tasks", "sst2", "--data", f"sst2={data}",
                                 "--results", str(tmp_path / "r.sqlite")), names="train.jsonl")
    (data / "train.jsonl").write_text('{"sentence": "good", "label": 1.7}\n')
    refused(tmp_path, *_evaluate(model, "--tasks", "sst2", "--data", f"sst2={data}",
                                 "--results", str(tmp_path / "r.sqlite")), names="1.7")


def test_model_that_is_not_there_or_not_safetensors(tmp_path):
    refused(tmp_path, *_evaluate(str(tmp_path / "nope"), "--tasks", "toy-sentiment"), names="nope")
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04K\x01.")
    (pickled / "config.json").write_text('{"model_type": "bert"}')
    refused(tmp_path, *_evaluate(str(pickled), "--tasks", "toy-sentiment"), names="pickled")


def test_report_of_a_study_that_never_ran_writes_nothing(tmp_path):
    refused(tmp_path, "report", "toyworld-demo", "--output", str(tmp_path / "never"), names="no results yet")
    assert not (tmp_path / "never").exists()


def test_dry_run_checks_what_the_real_run_would_reject(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("""name: s
runs: [{name: CLM, preset: tiny-clm}]
evaluation: {tasks: [sst2], lrs: [1e-4], seeds: [0], data: {sst2: /no/such/folder}}
""")
    refused(tmp_path, "study", "run", str(spec), "--dry-run", names="/no/such/folder")
    spec.write_text("""name: s
runs: [{name: CLM, preset: tiny-clm}]
evaluation: {tasks: [toy-qa], lrs: [1e-4], seeds: [0], max_length: 64}
""")
    refused(tmp_path, "study", "run", str(spec), "--dry-run", names="QA window")


def test_a_loss_that_explodes_is_divergence_not_a_score():
    from encoderlab.evaluation.finetune import loss_exploded

    assert loss_exploded([0.69, 0.70, 11568.5, 95.4, 49.5]) is not None  # finite, but blown up
    assert loss_exploded([0.64, 0.70, 0.73, 0.70, 0.72]) is None  # an LR too small: a (bad) score, not divergence
    assert loss_exploded([0.69, 0.5, 0.3]) is None and loss_exploded([0.7]) is None
