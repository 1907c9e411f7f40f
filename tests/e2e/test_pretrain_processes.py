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
import yaml
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


def one_and_two_processes(tmp_path: Path, overrides: list[str]) -> tuple[dict, dict]:
    """tiny-clm-mlm40 (16 steps) in one process and under torchrun in two: the same loss curve and final
    weights (up to float rounding); returns both final weights."""
    run(cli("pretrain", "tiny-clm-mlm40", *overrides, "--output", str(tmp_path / "one"), "--no-progress"))
    run(torchrun(2, "pretrain", "tiny-clm-mlm40", *overrides, "--output", str(tmp_path / "two"), "--no-progress"))
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert sorted(one) == sorted(two) == list(range(1, 17))
    for step in one:
        assert two[step] == pytest.approx(one[step], rel=1e-5), step
    a, b = final_weights(tmp_path / "one", 16), final_weights(tmp_path / "two", 16)
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5)
    return a, b


def killed_then_resumed(tmp_path: Path, overrides: list[str], at_least: str, total: int) -> Path:
    """tiny-clm-mlm40 with ``overrides`` straight, and SIGKILLed once checkpoint ``at_least`` exists then
    resumed: the same final weights, bit for bit. Returns the resumed run's directory."""
    run(cli("pretrain", "tiny-clm-mlm40", *overrides, "--output", str(tmp_path / "straight"), "--no-progress"))
    victim = tmp_path / "killed"
    proc = subprocess.Popen(cli("pretrain", "tiny-clm-mlm40", *overrides, "--output", str(victim), "--no-progress"),
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = victim / "checkpoints" / "latest"
    deadline = time.time() + 120
    while time.time() < deadline and not (latest.is_file() and latest.read_text().strip() >= at_least):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = latest.read_text().strip()
    assert proc.returncode == -signal.SIGKILL and killed_at < f"step-{total:06d}", killed_at
    assert not (victim / "checkpoints" / f"step-{total:06d}").exists()  # it really stopped mid-run
    run(cli("pretrain", str(victim), "--resume", "--no-progress"))
    straight, resumed = final_weights(tmp_path / "straight", total), final_weights(victim, total)
    assert straight.keys() == resumed.keys()
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name
    return victim


def test_sigkill_then_resume_gives_the_weights_of_an_uninterrupted_run(tmp_path):
    overrides = ["phases.0.steps=150", "checkpoint_every=10", "schedule.warmup_steps=10", "schedule.decay_steps=20"]
    killed_then_resumed(tmp_path, overrides, "step-000040", 180)


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_follow_the_single_process_loss_curve(tmp_path, strategy):
    overrides = ["phases.0.steps=8", "phases.1.steps=8", "log_every=1", "checkpoint_every=100",
                 "schedule.warmup_steps=2", "schedule.decay_steps=4", f"parallelism={strategy}"]
    a, b = one_and_two_processes(tmp_path, overrides)
    assert json.loads((tmp_path / "two" / "metrics.jsonl").read_text().splitlines()[0])["world_size"] == 2


def test_launch_command_for_every_node_of_a_slurm_job(monkeypatch):
    import submitit

    from encoderlab.training.launch import command_for_job

    # What SLURM (and submitit's sbatch script) put in each task's environment; submitit parses it.
    for name, value in {"SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "4242", "SLURM_JOB_NUM_NODES": "4",
                        "SLURM_JOB_NODELIST": "gpu[03-05,09]", "SLURM_NODEID": "2", "SLURM_NTASKS": "4",
                        "SLURM_PROCID": "2", "SLURM_LOCALID": "0"}.items():
        monkeypatch.setenv(name, value)
    command = command_for_job(submitit.JobEnvironment(), 8, 29500, ["-m", "encoderlab.cli", "pretrain", "run.yaml"])
    assert command[1:3] == ["-m", "torch.distributed.run"]
    assert command[3:8] == ["--nnodes=4", "--nproc-per-node=8", "--rdzv-backend=c10d", "--rdzv-endpoint=gpu03:29500",
                            "--rdzv-id=4242"]
    assert command[8:] == ["-m", "encoderlab.cli", "pretrain", "run.yaml"]


def test_launcher_trains_across_its_torchrun_processes_inside_a_scheduler_job(tmp_path, monkeypatch):
    """The multi-node path on one node: a submitit job runs the launcher, which runs torchrun with a
    c10d rendezvous at the job's first host; two gloo processes train the run together."""
    import socket

    import submitit
    from submitit.helpers import CommandFunction

    with socket.socket() as probe:  # a free port for the rendezvous
        probe.bind(("", 0))
        port = probe.getsockname()[1]
    overrides = ["phases.0.steps=4", "log_every=1", "schedule.warmup_steps=1", "schedule.decay_steps=2"]
    command = [sys.executable, "-m", "encoderlab.training.launch", "--nproc-per-node=2", f"--port={port}", "--",
               "-m", "encoderlab.cli", "pretrain", "tiny-clm", *overrides, "--output", str(tmp_path / "run"),
               "--no-progress"]
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the job's processes inherit this environment
    executor = submitit.AutoExecutor(folder=tmp_path / "jobs", cluster="local")
    executor.update_parameters(timeout_min=10)
    job = executor.submit(CommandFunction(command, verbose=False))  # inherits the job environment
    output = job.result()
    assert "--rdzv-backend=c10d" in output and f":{port}" in output
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2, 3, 4] and {row["world_size"] for row in rows} == {2}
    assert (tmp_path / "run" / "checkpoints" / "step-000004" / "model.safetensors").is_file()


# the objective options past the paper under the same guarantees: frozen weights, then a CLM/MLM mixture
# with a falling masking ratio
OPTIONS = ["phases.0.freeze=[0, embeddings]", "phases.1.freeze=[1]", "phases.1.objective=mixture",
           "phases.1.clm_fraction=0.5", "phases.1.mask_ratio=0.5", "phases.1.mask_ratio_end=0.1",
           "phases.1.mask_ratio_stages=4"]


def test_sigkill_then_resume_is_exact_with_a_mixture_a_ratio_schedule_and_frozen_layers(tmp_path):
    overrides = ["phases.0.steps=40", "phases.1.steps=80", "checkpoint_every=10", "schedule.warmup_steps=10",
                 "schedule.decay_steps=20", *OPTIONS]
    victim = killed_then_resumed(tmp_path, overrides, "step-000060", 120)  # killed inside the mixture phase
    ratios = [r.get("mask_ratio") for r in map(json.loads, (victim / "metrics.jsonl").read_text().splitlines())]
    assert {round(r, 6) for r in ratios if r is not None} <= {0.5, round(0.5 - 0.4 / 3, 6), round(0.5 - 0.8 / 3, 6), 0.1}


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_follow_one_with_a_mixture_a_ratio_schedule_and_frozen_layers(tmp_path, strategy):
    overrides = ["phases.0.steps=8", "phases.1.steps=8", "log_every=1", "checkpoint_every=100",
                 "schedule.warmup_steps=2", "schedule.decay_steps=4", f"parallelism={strategy}", "checkpoint_steps=[8]",
                 "micro_batch_size=1", *OPTIONS]  # one sample per micro-batch: a mixture part runs empty, at weight 0
    a, b = one_and_two_processes(tmp_path, overrides)
    rows = [json.loads(line) for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()][8:]
    first = [json.loads(line) for line in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()][8:]
    assert [r["targets_clm"] for r in rows] == [r["targets_clm"] for r in first]  # the same samples chose CLM
    assert all(r["targets_clm"] > 0 and r["targets_mlm"] > 0 for r in rows)
    # across the processes: layer 0 and the embeddings are the initial weights after the CLM phase (frozen
    # there), layer 1 does not move in the MLM phase (frozen there)
    from encoderlab.model import build_encoder
    from encoderlab.training import PretrainConfig

    config = PretrainConfig.from_dict(yaml.safe_load((tmp_path / "two" / "config.yaml").read_text()))
    initial = build_encoder(config.model, seed=config.seed).state_dict()
    middle = final_weights(tmp_path / "two", 8)
    checked = 0
    for name in b:
        if name.startswith(("layers.0.", "embed.")):
            assert torch.equal(middle[name], initial[name]) and not torch.equal(b[name], initial[name]), name
            checked += 1
        if name.startswith("layers.1."):
            assert torch.equal(b[name], middle[name]) and not torch.equal(middle[name], initial[name]), name
            checked += 1
    assert checked >= 10
