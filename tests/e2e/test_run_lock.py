"""One process per run directory (the lock), requeued jobs that resume, and studies re-run while
their jobs still live: real processes, real submitit local jobs, real signals."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from encoderlab.training.lock import LOCK_FILE, RunLock, RunLockedError, holder_state, lock_status, read_lock

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
LONG = ["phases.0.steps=150", "checkpoint_every=10", "schedule.warmup_steps=10", "schedule.decay_steps=20"]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "encoderlab.cli", *args]


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_record(run_dir: Path, **record) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / LOCK_FILE).write_text(json.dumps({"started": time.time(), **record}) + "\n")


def wait_for(predicate, timeout: float = 120.0, what: str = "") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_holder_liveness_is_told_by_the_holder(tmp_path, monkeypatch):
    here = socket.gethostname()
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert holder_state({"pid": os.getpid(), "host": here})[0] is True
    assert holder_state({"pid": dead_pid(), "host": here})[0] is False
    # our pid, but recorded with another start time: the pid was reused by another process
    alive, why = holder_state({"pid": os.getpid(), "host": here, "pid_start": "1"})
    assert alive is False and "another process" in why
    # another host, no scheduler to ask: cannot be told from here
    assert holder_state({"pid": 1, "host": "elsewhere", "job_id": "77", "scheduler": "slurm"})[0] in (None, False)
    assert holder_state({"pid": 1, "host": "elsewhere"})[0] is None
    # a SLURM job requeued onto another node finds its own earlier incarnation's record
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    alive, why = holder_state({"pid": 1, "host": "elsewhere", "job_id": "4242", "scheduler": "slurm"})
    assert alive is False and "requeued" in why


def test_stale_records_are_taken_over_and_unknown_holders_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    run = tmp_path / "run"
    write_record(run, pid=dead_pid(), host=socket.gethostname())
    assert lock_status(run)[0] == "stale"
    lock = RunLock(run).acquire()
    assert lock.took_over and "is gone" in lock.took_over
    assert read_lock(run)["pid"] == os.getpid() and lock_status(run)[0] == "running"
    lock.release()
    assert read_lock(run) is None and lock_status(run) == ("free", None)  # released: an empty file

    write_record(run, pid=123, host="another-node", job_id="99")
    before = (run / LOCK_FILE).read_text()
    with pytest.raises(RunLockedError, match=r"pid 123 on host another-node, job 99.*delete .*run\.lock"):
        RunLock(run).acquire()
    assert (run / LOCK_FILE).read_text() == before  # refused: the holder's record is left as it was

    (run / LOCK_FILE).write_text('{"pid": 12')  # torn by a crash mid-write: nobody holds it through that
    assert lock_status(run)[0] == "free"
    RunLock(run).acquire().release()


def test_a_run_that_fails_validation_leaves_no_directory(tmp_path):
    from encoderlab.model import CheckpointError
    from encoderlab.training import load_pretrain_config, pretrain

    run = tmp_path / "fresh"
    config = load_pretrain_config("tiny-mlm40", [f"output_dir={run}"])
    with pytest.raises(CheckpointError, match="nothing to resume"):
        pretrain(config, resume=True, progress=False)
    assert not run.exists()


def test_a_live_run_directory_is_refused_and_a_killed_ones_lock_taken_over(tmp_path):
    run = tmp_path / "run"
    endless = ["phases.0.steps=20000", *LONG[1:]]  # still running when the others try

    def start(*args: str, log: str) -> subprocess.Popen:
        return subprocess.Popen(cli("pretrain", *args, "--no-progress"), env=ENV, stderr=subprocess.STDOUT,
                                stdout=open(tmp_path / log, "w"))

    first = start("tiny-clm-mlm40", *endless, "--output", str(run), log="first.log")
    try:
        wait_for(lambda: (run / "checkpoints" / "latest").is_file(), what="the first checkpoint")
        assert read_lock(run)["pid"] == first.pid and lock_status(run)[0] == "running"
        for args in ([str(run), "--resume"], ["tiny-clm-mlm40", *endless, "--output", str(run), "--overwrite"]):
            second = subprocess.run(cli("pretrain", *args, "--no-progress"), env=ENV, capture_output=True, text=True,
                                    timeout=120)  # neither continues nor replaces a run that is alive
            assert second.returncode == 2, second.stdout + second.stderr
            assert f"in use by pid {first.pid} on host {socket.gethostname()}" in second.stderr
            assert len(second.stderr.strip().splitlines()) == 1, second.stderr
            assert first.poll() is None and (run / "checkpoints" / "latest").is_file()
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert lock_status(run)[0] == "stale"  # the record stays; its pid is gone
    resumed = start(str(run), "--resume", log="resumed.log")
    try:
        wait_for(lambda: "took over the stale lock" in (tmp_path / "resumed.log").read_text(), what="the takeover")
        assert f"took over the stale lock of pid {first.pid}" in (tmp_path / "resumed.log").read_text()
        assert read_lock(run)["pid"] == resumed.pid and lock_status(run)[0] == "running"
    finally:
        resumed.send_signal(signal.SIGKILL)
        resumed.wait()


def test_a_preempted_pretraining_job_requeues_and_resumes(tmp_path):
    """submitit's local executor delivers the preemption signal as SLURM would (USR2); the job
    checkpoints itself (requeue), starts again, resumes from the latest checkpoint and ends with
    the weights of an uninterrupted run."""
    import submitit

    from encoderlab.study.jobs import PretrainJob

    straight = tmp_path / "straight"
    subprocess.run(cli("pretrain", "tiny-clm-mlm40", *LONG, "--output", str(straight), "--no-progress"), env=ENV,
                   check=True, capture_output=True, timeout=300)
    run = tmp_path / "run"
    executor = submitit.AutoExecutor(folder=tmp_path / "jobs", cluster="local")
    executor.update_parameters(timeout_min=10)
    job = executor.submit(PretrainJob(cli("pretrain", "tiny-clm-mlm40", *LONG, "--output", str(run), "--no-progress"),
                                      run, grace_s=5))
    latest = run / "checkpoints" / "latest"
    wait_for(lambda: latest.is_file() and latest.read_text().strip() >= "step-000040", what="step 40")
    task = int(re.search(r"\[job\] pid (\d+): start", Path(job.paths.stdout).read_text()).group(1))
    os.kill(task, signal.SIGUSR2)  # what SLURM sends the job's tasks before preemption or the time limit
    assert job.result() == 0
    log = Path(job.paths.stdout).read_text()
    assert log.count("[job] pid ") == 2 and re.search(r"\[job\] pid \d+: resume from step-", log), log[-3000:]
    logs = log + Path(job.paths.stderr).read_text()
    assert "Caught signal SIGUSR2" in logs and "Requeued job" in logs, logs[-3000:]
    a, b = (load_file(str(d / "checkpoints" / "step-000180" / "model.safetensors")) for d in (straight, run))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


STUDY = """
name: lock-study
data: {source: toyworld, toyworld_documents: 600, train_tokenizer_vocab: 300}
runs:
  - {name: CLM, preset: tiny-clm, overrides: [phases.0.steps=400, checkpoint_every=10, schedule.warmup_steps=2,
                                              schedule.decay_steps=4]}
evaluation:
  tasks: [toy-sentiment]
  lrs: [1.0e-3]
  seeds: [0]
  max_steps: 2
  batch_size: 8
  max_length: 64
  max_eval_examples: 16
scheduler: {kind: local, workers: 2}
"""


def test_a_study_rerun_while_its_job_lives_waits_for_that_job(tmp_path):
    """The study process is killed and started again while its pretraining job still runs: the
    second start submits no second job for that run directory; it waits, then goes on."""
    from encoderlab.study import load_study
    from encoderlab.study.jobs import latest_jobs

    (tmp_path / "spec.yaml").write_text(STUDY)
    out = tmp_path / "out"
    command = cli("study", "run", str(tmp_path / "spec.yaml"), "--output", str(out), "--no-progress")
    driver = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = out / "runs" / "CLM"
    try:
        wait_for(lambda: (run / "checkpoints" / "latest").is_file(), timeout=180, what="the job's first checkpoint")
    finally:
        driver.send_signal(signal.SIGKILL)  # the driver only: its local job lives on
        driver.wait()
    spec = load_study(str(tmp_path / "spec.yaml"), output_dir=str(out))
    job = latest_jobs(spec.study_dir, "pretrain")["CLM"]
    assert lock_status(run)[0] == "running" and read_lock(run)["job_id"] == job["job_id"]
    again = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"pretrain CLM: still running (job {job['job_id']})" in again.stdout
    assert "pretrain job" not in again.stdout  # nothing submitted a second time
    lines = (spec.study_dir / "jobs" / "pretrain" / "submitted.jsonl").read_text().splitlines()
    assert [json.loads(line)["name"] for line in lines] == ["CLM"]
    assert (run / "checkpoints" / "step-000400" / "model.safetensors").is_file() and (out / "report.md").is_file()
