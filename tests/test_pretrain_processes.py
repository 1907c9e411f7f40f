"""Pretraining as real processes: SIGKILL and resume, and 2-process DDP / FSDP2 on CPU (gloo)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "encoderlab.cli", *args]


def torchrun(nproc: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "encoderlab.cli", *args]


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def run(command: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def final_weights(run_dir: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "checkpoints" / f"step-{step:06d}" / "model.safetensors"))


def losses(run_dir: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {row["step"]: row["loss"] for row in rows}


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_weights_of_an_uninterrupted_run(tmp_path):
    overrides = ["phases.0.steps=150", "checkpoint_every=10", "schedule.warmup_steps=10", "schedule.decay_steps=20"]
    run(cli("pretrain", "tiny-clm-mlm40", *overrides, "--output", str(tmp_path / "straight"), "--no-progress"))

    victim = tmp_path / "killed"
    proc = subprocess.Popen(cli("pretrain", "tiny-clm-mlm40", *overrides, "--output", str(victim), "--no-progress"),
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = victim / "checkpoints" / "latest"
    deadline = time.time() + 120
    while time.time() < deadline and not (latest.is_file() and latest.read_text().strip() >= "step-000040"):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = latest.read_text().strip()
    assert proc.returncode == -signal.SIGKILL and killed_at < "step-000180", killed_at
    assert not (victim / "checkpoints" / "step-000180").exists()  # it really stopped mid-run

    run(cli("pretrain", str(victim), "--resume", "--no-progress"))
    straight, resumed = final_weights(tmp_path / "straight", 180), final_weights(victim, 180)
    assert straight.keys() == resumed.keys()
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_follow_the_single_process_loss_curve(tmp_path, strategy):
    overrides = ["phases.0.steps=8", "phases.1.steps=8", "log_every=1", "checkpoint_every=100",
                 "schedule.warmup_steps=2", "schedule.decay_steps=4", f"parallelism={strategy}"]
    run(cli("pretrain", "tiny-clm-mlm40", *overrides, "--output", str(tmp_path / "one"), "--no-progress"))
    run(torchrun(2, "pretrain", "tiny-clm-mlm40", *overrides, "--output", str(tmp_path / "two"), "--no-progress"))
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert sorted(one) == sorted(two) == list(range(1, 17))
    for step in one:
        assert two[step] == pytest.approx(one[step], rel=1e-5), step
    a, b = final_weights(tmp_path / "one", 16), final_weights(tmp_path / "two", 16)
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5)
    assert json.loads((tmp_path / "two" / "metrics.jsonl").read_text().splitlines()[0])["world_size"] == 2
