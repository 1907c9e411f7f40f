"""A study's scheduler jobs (submitit: SLURM, or local subprocesses): submit, record, wait, requeue.

- Every job is recorded in ``STUDY/jobs/<stage>/submitted.jsonl``, so ``study status`` and a
  later ``study run`` (from a fresh login, after the submitting process is gone) find it.
- A job still alive from an earlier study process is waited for, never submitted again; the run
  directory's lock (:mod:`encoderlab.training.lock`) guards the rest (two processes never train
  one run directory).
- Pretraining jobs are checkpointable: when SLURM preempts a job or its time limit comes, submitit
  calls :meth:`PretrainJob.checkpoint`, which requeues the same job; every start resumes from the
  run's latest checkpoint.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from encoderlab.study.graph import run_parents
from encoderlab.training.lock import ACTIVE_SLURM_STATES, describe, lock_status, pid_alive
from encoderlab.config import ConfigError
from encoderlab.threads import resolve
from encoderlab.training.checkpoint import latest_checkpoint

JOBS_FILE = "submitted.jsonl"


class PretrainJob:
    """A pretraining command as a submitit job function that can be requeued.

    Each call adds ``--resume`` when the run directory holds a checkpoint (so the first start
    trains from scratch and a requeued one continues), runs the command as a child in the job's
    own process group (so whatever stops the job's group stops the training too) and, if the job
    is stopped (submitit's preemption / timeout handler raises in this process), stops the child
    (SIGTERM, which torchrun forwards to its workers; SIGKILL after ``grace_s``) before the job
    requeues."""

    def __init__(self, command: list[str], run_dir: str | Path, grace_s: float = 30.0):
        self.command = [c for c in command if c != "--resume"]
        self.run_dir = str(run_dir)
        self.grace_s = grace_s

    def __call__(self) -> int:
        latest = latest_checkpoint(Path(self.run_dir) / "checkpoints")
        command = [*self.command, *(["--resume"] if latest is not None else [])]
        print(f"[job] pid {os.getpid()}: {'resume from ' + latest.name if latest is not None else 'start'}: "
              f"{' '.join(command)}", flush=True)
        proc = subprocess.Popen(command)
        try:
            code = proc.wait()
        except BaseException:  # preempted / timed out (submitit's signal handler), or interrupted
            _stop(proc, self.grace_s)
            raise
        if code != 0:
            raise RuntimeError(f"pretraining command failed with exit code {code}: {' '.join(command)}")
        return code

    def checkpoint(self, *args, **kwargs):
        """Called by submitit on preemption or timeout: requeue this job unchanged (it resumes)."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(PretrainJob(self.command, self.run_dir, self.grace_s))


def _stop(proc: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM to the command (torchrun forwards it to its workers), SIGKILL after ``grace_s``."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_jobs(spec, stage: str, commands: list[tuple[str, list[str]]], log, run_dirs: dict[str, Path] | None = None) -> None:
    """Runs ``commands`` as submitit jobs (SLURM, or local subprocesses) and waits for them all.

    A pretraining job whose run starts from another run of this study (``init_from`` or
    ``branch_from`` under the study directory) waits for the wave that produces its parent.
    ``run_dirs`` (pretraining): the run directory of each command, for checkpointable jobs."""
    if not commands:
        return
    import submitit
    from submitit.helpers import CommandFunction

    scheduler = spec.scheduler
    executor = submitit.AutoExecutor(folder=spec.study_dir / "jobs" / stage,
                                     cluster="local" if scheduler.kind == "local" else "slurm")
    gpus = scheduler.gpus_per_node if stage == "pretrain" else scheduler.evaluation_gpus
    parameters = {"timeout_min": scheduler.time_minutes, "name": f"{spec.name}-{stage}"}
    if scheduler.kind == "slurm":
        # One task per node: each runs torchrun (or the multi-node launcher) for that node's GPUs.
        parameters.update(slurm_partition=scheduler.partition, gpus_per_node=gpus, tasks_per_node=1,
                          nodes=scheduler.nodes if stage == "pretrain" else 1, cpus_per_task=scheduler.cpus_per_task)
        if scheduler.account:
            parameters["slurm_account"] = scheduler.account
    executor.update_parameters(**{k: v for k, v in parameters.items() if v is not None})
    waves = _waves(spec, commands) if stage == "pretrain" else [commands]
    if scheduler.kind == "local":
        limit = resolve(scheduler.workers).workers
    else:
        limit = len(commands)
    for wave in waves:
        for start in range(0, len(wave), limit):
            batch = wave[start : start + limit]
            jobs = []
            for name, command in batch:
                function = (PretrainJob(command, run_dirs[name]) if run_dirs and name in run_dirs
                            else CommandFunction(command, verbose=False))
                jobs.append((name, executor.submit(function)))
            record_jobs(spec.study_dir / "jobs" / stage, scheduler.kind, jobs)
            for name, job in jobs:
                log(f"[study {spec.name}] {stage} job {job.job_id} ({name}) submitted")
            for name, job in jobs:
                wait_for_job(stage, name, job)


def _executor(spec, stage: str):
    import submitit

    executor = submitit.AutoExecutor(folder=spec.study_dir / "jobs" / stage, cluster="local")
    executor.update_parameters(timeout_min=spec.scheduler.time_minutes, name=f"{spec.name}-{stage}")
    return executor


def run_local_graph(spec, nodes: list[dict], workers: int, log, poll_s: float = 0.2) -> dict[str, float]:
    """Runs local jobs as a graph on ``workers`` slots: a node starts as soon as a slot is free and
    the pretraining runs it waits for (``after``) have finished, so a branch, or the evaluation of a
    finished checkpoint, never waits for unrelated work. ``nodes``: dicts with ``stage``
    (``pretrain`` / ``evaluate``), ``name``, ``command``, ``after`` (names of pretraining nodes) and,
    for pretraining, ``run_dir`` (a checkpointable job). Jobs are recorded as :func:`run_jobs`
    records them. The first failure stops new starts; the jobs in flight finish, then it raises.
    Returns each node's wall seconds, keyed ``stage/name``."""
    from submitit.helpers import CommandFunction

    executors = {stage: _executor(spec, stage) for stage in {n["stage"] for n in nodes}}
    waiting, running, done, seconds = list(nodes), [], set(), {}
    failure = None
    while waiting or running:
        while failure is None and len(running) < workers:
            ready = next((n for n in waiting if set(n.get("after", ())) <= done), None)
            if ready is None:
                break
            waiting.remove(ready)
            function = (PretrainJob(ready["command"], ready["run_dir"]) if ready.get("run_dir")
                        else CommandFunction(ready["command"], verbose=False))
            job = executors[ready["stage"]].submit(function)
            record_jobs(spec.study_dir / "jobs" / ready["stage"], "local", [(ready["name"], job)])
            log(f"[study {spec.name}] {ready['stage']} job {job.job_id} ({ready['name']}) submitted")
            running.append((ready, job, time.perf_counter()))
        if failure is not None and not running:
            break
        if not running:  # nothing can start: a dependency that is not a node and not done
            raise ValueError(f"study {spec.name!r}: jobs wait for runs that never start: "
                             f"{[(n['name'], sorted(n.get('after', ()))) for n in waiting]}")
        time.sleep(poll_s)
        for item in [r for r in running if r[1].done()]:
            node, job, started = item
            running.remove(item)
            seconds[f"{node['stage']}/{node['name']}"] = time.perf_counter() - started
            try:
                wait_for_job(node["stage"], node["name"], job)
            except RuntimeError as err:
                failure = failure or err
                continue
            done.add(node["name"])
            log(f"[study {spec.name}] {node['stage']} {node['name']}: done ({seconds[node['stage'] + '/' + node['name']]:.0f} s); "
                f"{_eta(seconds, nodes, waiting, running, workers)}")
    if failure is not None:
        raise failure
    return seconds


def _eta(seconds: dict, nodes: list, waiting: list, running: list, workers: int) -> str:
    """``k/n jobs done, about M min left``: each job not done costs the mean time of its stage's
    finished jobs, spread over the slots; a stage none of whose jobs has finished yet is named
    instead of guessed."""
    by_stage: dict[str, list[float]] = {}
    for key, value in seconds.items():
        by_stage.setdefault(key.split("/", 1)[0], []).append(value)
    now, left, untimed = time.perf_counter(), 0.0, set()
    for node, started in [(n, None) for n in waiting] + [(n, s) for n, _, s in running]:
        values = by_stage.get(node["stage"])
        if not values:
            untimed.add(node["stage"])
            continue
        cost = sum(values) / len(values)
        left += cost if started is None else max(0.0, cost - (now - started))
    text = f"{len(seconds)}/{len(nodes)} jobs done, about {left / max(1, workers) / 60:.1f} min left"
    return text + (f" (+ {', '.join(sorted(untimed))} jobs, not timed yet)" if untimed else "")


def wait_for_job(stage: str, name: str, job) -> None:
    """Waits for every task of ``job`` (a multi-node job has one task per node); a failed task
    raises with where its logs are."""
    try:
        job.results()  # not job.result(): submitit refuses that for jobs of several tasks
    except Exception as err:  # the job's own error
        raise RuntimeError(f"{stage} job {job.job_id} ({name}) failed ({type(err).__name__}); "
                           f"stderr: {job.paths.stderr}") from None


def record_jobs(folder: Path, cluster: str, jobs: list) -> None:
    """Appends the submitted jobs to the stage's job log, so ``study status`` can find them later
    (also after the process that submitted them is gone)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / JOBS_FILE, "a") as out:
        for name, job in jobs:
            out.write(json.dumps({"name": name, "job_id": str(job.job_id), "cluster": cluster,
                                  "submitted": time.time()}) + "\n")
        out.flush()


def latest_jobs(study_dir: Path, stage: str) -> dict[str, dict]:
    """The last job submitted for each run (pretrain) or checkpoint (evaluate) of a stage."""
    path = study_dir / "jobs" / stage / JOBS_FILE
    latest: dict[str, dict] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line torn by a crash while it was written
                continue
            latest[record["name"]] = record
    return latest


def job_state(study_dir: Path, stage: str, record: dict) -> str:
    """For a local job: ``running``, ``stopped`` (killed: no outcome written) or ``ended (log: ...)``
    (it wrote an outcome, success or error; status asks only about unfinished work, so the log is
    where to look). For a SLURM job: SLURM's own state (``PENDING``, ``RUNNING``, ``FAILED``, ...),
    queried through submitit (``sacct``)."""
    import submitit

    folder = study_dir / "jobs" / stage
    if record["cluster"] == "slurm":
        try:
            job = submitit.SlurmJob(folder, record["job_id"])
            return f"{job.state} (log: {job.paths.stderr})"
        except Exception as err:  # no sacct here, or SLURM unreachable: say so rather than guess
            return f"unknown ({type(err).__name__}: {err})"[:120]
    job = submitit.LocalJob(folder, record["job_id"])
    if job.paths.result_pickle.exists():
        return f"ended (log: {job.paths.stderr})"
    # A local job's id is the PID of its process (a PID reused since then would read as running).
    return "running" if pid_alive(int(record["job_id"])) else "stopped"


def job_live(study_dir: Path, stage: str, record: dict) -> bool:
    """Whether a recorded job still runs or will run (queued, running, requeued)."""
    state = job_state(study_dir, stage, record)
    return state == "running" or state.split(" ", 1)[0] in ACTIVE_SLURM_STATES


def wait_while_running(spec, stage: str, name: str, run_dir: Path | None, log, poll_s: float = 2.0) -> bool:
    """Waits while ``name``'s job from an earlier study process (or any process holding
    ``run_dir``) is alive, so nothing is started twice; True if it waited. A run directory held
    by a process whose liveness cannot be told from here is an error naming the holder."""
    waited = False
    while True:
        state, holder = lock_status(run_dir) if run_dir is not None else ("free", None)
        if state == "unknown":
            raise ConfigError(f"study {spec.name!r}, run {name!r}: {run_dir} is locked by {describe(holder)}, which "
                              f"cannot be checked from here; if it is gone, delete {run_dir / 'run.lock'}")
        job = latest_jobs(spec.study_dir, stage).get(name)
        live_job = job is not None and job_live(spec.study_dir, stage, job)
        if state != "running" and not live_job:
            return waited
        if not waited:
            who = f"job {job['job_id']}" if live_job else describe(holder)
            log(f"[study {spec.name}] {stage} {name}: still running ({who}), from an earlier start; waiting for it")
            waited = True
        time.sleep(poll_s)


def _waves(spec, commands: list[tuple[str, list[str]]]) -> list[list[tuple[str, list[str]]]]:
    names = {run.name for run in spec.runs}
    parents = run_parents(spec)
    remaining, done, waves = list(commands), {n for n in names if n not in dict(commands)}, []
    while remaining:
        wave = [c for c in remaining if parents[c[0]] <= done]
        if not wave:
            raise ValueError(f"study {spec.name!r}: runs depend on each other in a cycle: {[c[0] for c in remaining]}")
        waves.append(wave)
        done |= {c[0] for c in wave}
        remaining = [c for c in remaining if c not in wave]
    return waves
