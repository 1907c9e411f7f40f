"""The thread policy (encoderlab.threads): resolved once, overridable, applied to every process a
command starts, and recorded with the results."""

import json
import os
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


def test_the_eta_counts_each_stage_at_its_own_pace():
    import time

    from encoderlab.study.jobs import _eta

    nodes = [{"stage": "pretrain", "name": "a"}, {"stage": "evaluate", "name": "b"}, {"stage": "evaluate", "name": "c"}]
    early = _eta({"pretrain/a": 60.0}, nodes, [nodes[2]], [(nodes[1], None, time.perf_counter())], 2)
    assert early.startswith("1/3 jobs done") and "evaluate jobs, not timed yet" in early  # named, not guessed
    assert _eta({"pretrain/a": 60.0, "evaluate/b": 120.0}, nodes, [nodes[2]], [], 2) == \
        "2/3 jobs done, about 1.0 min left"  # one 120 s job on two slots
