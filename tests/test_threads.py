"""The thread policy (encoderlab.threads): resolved once, overridable, applied to every process a
command starts, and recorded with the results."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from encoderlab.config import ConfigError
from encoderlab.threads import ENV, POLICY, resolve, usable_cores


def test_policy_defaults_and_overrides(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    cores = usable_cores()
    auto = resolve("auto")
    assert auto.workers == cores and auto.threads == 1 and auto.source == POLICY
    alone = resolve(None)
    assert alone.workers == 1 and alone.threads == cores
    assert resolve(2, 3).threads == 3 and resolve(2, 3).source == "--threads"
    monkeypatch.setenv(ENV, "1")
    assert resolve(None).threads == 1 and resolve(None).source == ENV
    assert resolve(None, 2).threads == 2  # the command line wins over the environment
    monkeypatch.setenv(ENV, "two")
    with pytest.raises(ConfigError, match=ENV):
        resolve(None)
    with pytest.raises(ConfigError, match="workers"):
        resolve(0)


def test_usable_cores_follow_the_cpu_affinity():
    code = "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); " \
           "from encoderlab.threads import usable_cores, resolve; print(usable_cores(), resolve('auto').workers)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["1", "1"]


def test_commands_apply_and_record_their_threads(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != ENV}
    run = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "encoderlab.cli", "pretrain", "tiny-clm", "phases.0.steps=4", "schedule.warmup_steps=1", "schedule.decay_steps=2",
                    "log_every=2", f"output_dir={run}", "--no-progress", "--threads", "1"],
                   check=True, env=env, capture_output=True)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records and all(r["threads"] == 1 for r in records)
    bad = subprocess.run([sys.executable, "-m", "encoderlab.cli", "pretrain", "tiny-clm", "--threads", "0"],
                         env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "--threads" in bad.stderr and "whole number" in bad.stderr


GRAPH = """
name: graph
data: {source: toyworld, toyworld_documents: 1500, train_tokenizer_vocab: 400}
runs:
  - {name: CLM, preset: tiny-clm, overrides: [phases.0.steps=6, schedule.warmup_steps=1, schedule.decay_steps=2]}
  - {name: MLM, preset: tiny-mlm40, overrides: [phases.0.steps=6, schedule.warmup_steps=1, schedule.decay_steps=2]}
  - name: CLM-MLM
    preset: tiny-clm-mlm40
    branch: {run: CLM, step: 3}
    overrides: [phases.0.steps=3, phases.1.steps=3, schedule.warmup_steps=1, schedule.decay_steps=2]
  - {name: random-init, preset: tiny-mlm40, random_init: true}
evaluation:
  tasks: [toy-sentiment]
  lrs: [1.0e-3]
  seeds: [0, 1]
  max_steps: 2
  batch_size: 8
  max_length: 64
  max_eval_examples: 16
scheduler: {kind: local, workers: auto}
"""


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="needs git for the provenance")
def test_local_study_runs_as_a_job_graph_with_one_thread_per_job(tmp_path, monkeypatch):
    from encoderlab.study import load_study, run_study

    monkeypatch.delenv(ENV, raising=False)  # the policy's own choice, not an inherited one

    (tmp_path / "spec.yaml").write_text(GRAPH)
    spec = load_study(str(tmp_path / "spec.yaml"), output_dir=str(tmp_path / "out"))
    messages = []
    run_study(spec, progress=False, log=messages.append, workers=2)
    started = [m for m in messages if " submitted" in m]
    done = [m for m in messages if ": done (" in m]
    order = messages.index
    # the branch starts only after its parent is trained; a checkpoint's evaluation after its run
    branch = next(m for m in started if "(CLM-MLM)" in m)
    assert order(branch) > order(next(m for m in done if "pretrain CLM:" in m))
    evaluation = next(m for m in started if "(MLM@6)" in m)
    assert order(evaluation) > order(next(m for m in done if "pretrain MLM:" in m))
    assert any("a branch from CLM step 3: trains 3" in m for m in messages)
    assert any("jobs done, about" in m for m in done)  # the ETA
    for name in ("CLM", "MLM", "CLM-MLM"):  # every job ran with the policy's one thread
        records = [json.loads(line) for line in (spec.study_dir / "runs" / name / "metrics.jsonl").read_text().splitlines()]
        assert {r["threads"] for r in records} == {1}
    timings = json.loads((spec.study_dir / "timings.json").read_text())
    assert timings["execution"] == {"scheduler": "local", "workers": 2, "threads": 1, "cores": usable_cores(),
                                    "source": POLICY}
    summary = json.loads((spec.study_dir / "summary.json").read_text())
    assert summary["provenance"]["execution"]["threads"] == 1 and summary["provenance"]["cpu"]
    assert summary["provenance"]["torch"] and "git_revision" in summary["provenance"]
    import sqlite3

    rows = sqlite3.connect(spec.study_dir / "results.sqlite").execute("SELECT provenance FROM runs").fetchall()
    assert rows and all(json.loads(p)["execution"] == {"workers": 1, "threads": 1} for (p,) in rows)


def test_the_eta_counts_each_stage_at_its_own_pace():
    import time

    from encoderlab.study.jobs import _eta

    nodes = [{"stage": "pretrain", "name": "a"}, {"stage": "evaluate", "name": "b"}, {"stage": "evaluate", "name": "c"}]
    early = _eta({"pretrain/a": 60.0}, nodes, [nodes[2]], [(nodes[1], None, time.perf_counter())], 2)
    assert early.startswith("1/3 jobs done") and "evaluate jobs, not timed yet" in early  # named, not guessed
    assert _eta({"pretrain/a": 60.0, "evaluate/b": 120.0}, nodes, [nodes[2]], [], 2) == \
        "2/3 jobs done, about 1.0 min left"  # one 120 s job on two slots
