"""One process per run directory: a lock file that says who holds it, and whether they still live.

``RUN_DIR/run.lock`` is held with ``flock`` for the life of the training process (the kernel
releases it when the process dies, SIGKILL included) and records the holder: pid, the pid's start
time (so a reused pid is not taken for the holder), host, the scheduler's job id and the command.
A released lock is an empty file.

Whether a recorded holder is alive is decided by the holder itself, never by a file's age:
- on this host, by its pid and the pid's start time;
- on another host, by its SLURM job (``squeue``), when it ran under SLURM: a job requeued after a
  preemption or a timeout finds its own earlier incarnation's record and takes it over;
- otherwise it cannot be told from here, and the run is refused with the holder named (a
  filesystem whose ``flock`` is local to each node, such as Lustre's default, cannot prove it).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from encoderlab.io import lock_file

LOCK_FILE = "run.lock"

# SLURM states in which a job still runs or will run (squeue --format %T)
ACTIVE_SLURM_STATES = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "COMPLETING",
                       "RESIZING", "SUSPENDED", "STAGE_OUT", "SIGNALING", "STOPPED", "RESV_DEL_HOLD"}


class RunLockedError(RuntimeError):
    """Another live process holds the run directory."""


def job_id() -> str | None:
    """The scheduler's id of the job this process belongs to (SLURM, or submitit's local executor)."""
    return os.environ.get("SLURM_JOB_ID") or os.environ.get("SUBMITIT_LOCAL_JOB_ID") or None


def _process_start(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot (Linux), or None where unknown."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    try:  # Linux: a zombie (exited, not yet reaped) is not alive
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def slurm_job_state(job: str) -> str | None:
    """SLURM's state of ``job`` (``RUNNING``, ...), ``""`` when SLURM no longer knows it, None when
    there is no SLURM to ask from here."""
    if shutil.which("squeue") is None:
        return None
    try:
        out = subprocess.run(["squeue", "--noheader", "--jobs", job, "--format", "%T"], check=False, capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:  # "Invalid job id specified": finished long ago
        return "" if "Invalid job id" in out.stderr else None
    states = out.stdout.split()
    return states[0] if states else ""


def holder_state(record: dict) -> tuple[bool | None, str]:
    """(alive, why) for a lock record: True (alive), False (gone: the lock is stale) or None (it
    cannot be told from here)."""
    pid, host, job = int(record.get("pid", -1)), record.get("host"), record.get("job_id")
    if host == socket.gethostname():
        if not pid_alive(pid):
            return False, f"pid {pid} is gone"
        started = record.get("pid_start")
        if started is not None and _process_start(pid) not in (None, started):
            return False, f"pid {pid} is now another process"
        return True, f"pid {pid} is alive"
    if job and job == os.environ.get("SLURM_JOB_ID"):
        return False, f"it was an earlier run of this SLURM job {job} (requeued)"
    if job and record.get("scheduler") == "slurm":
        state = slurm_job_state(job)
        if state is not None:
            if state in ACTIVE_SLURM_STATES:
                return True, f"SLURM job {job} is {state}"
            return False, f"SLURM job {job} is {state or 'no longer known to SLURM'}"
    return None, f"pid {pid} runs on host {host}, which cannot be checked from {socket.gethostname()}"


def read_lock(run_dir: str | Path) -> dict | None:
    """The holder recorded in ``run_dir``'s lock, or None if it is free (absent, released, unreadable)."""
    path = Path(run_dir) / LOCK_FILE
    try:
        text = path.read_text()
    except OSError:
        return None
    try:
        record = json.loads(text) if text.strip() else None
    except json.JSONDecodeError:  # torn by a crash mid-write: nobody can be holding it through that record
        return None
    return record if isinstance(record, dict) else None


def describe(record: dict) -> str:
    job = f", job {record['job_id']}" if record.get("job_id") else ""
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.get("started", 0)))
    return f"pid {record.get('pid')} on host {record.get('host')}{job}, since {since}"


def lock_status(run_dir: str | Path) -> tuple[str, dict | None]:
    """``free``, ``running``, ``stale`` or ``unknown`` for ``run_dir``, with the recorded holder."""
    record = read_lock(run_dir)
    if record is None:
        return "free", None
    alive, _ = holder_state(record)
    return {True: "running", False: "stale", None: "unknown"}[alive], record


# The run directories this process holds (resolved path -> how many RunLocks share it): a command
# that locks a run before it prepares it (``cpt``) and then trains it (``pretrain``, which locks too)
# holds one lock; the inner acquisition nests in the outer one.
_HELD: dict[str, int] = {}


def _key(run_dir: Path) -> str:
    return str(run_dir.resolve())


class RunLock:
    """Holds ``RUN_DIR/run.lock`` from :meth:`acquire` to :meth:`release` (or process exit).

    Re-entrant within a process: a second RunLock of a directory this process already holds nests
    in the first (its release frees nothing)."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._fd: int | None = None
        self._nested = False
        self._created: list[Path] = []  # the folders acquire() made, deepest first (runs/X, then runs/)
        self._found: set[str] = set()
        self.took_over: str | None = None  # the stale holder replaced, for the run's notes

    @property
    def held(self) -> bool:
        return self._fd is not None or self._nested

    def acquire(self) -> RunLock:
        if self.held:
            return self
        if self.run_dir.exists() and _HELD.get(_key(self.run_dir)):
            _HELD[_key(self.run_dir)] += 1
            self._nested = True
            return self
        if not self.run_dir.exists():
            missing = [self.run_dir, *(p for p in self.run_dir.parents if not p.exists())]
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._created = missing
        self._found = {p.name for p in self.run_dir.iterdir()}  # what was there before this lock
        try:
            fd = lock_file(self.path)
        except BlockingIOError:
            record = read_lock(self.run_dir)
            who = describe(record) if record else "another process (it has not written its record yet)"
            raise RunLockedError(f"{self.run_dir}: in use by {who}; wait for it to finish or stop it "
                                 "(one process per run directory)") from None
        try:
            text = os.pread(fd, 1 << 16, 0).decode(errors="replace")
            record = json.loads(text) if text.strip() else None
        except (OSError, json.JSONDecodeError):
            record = None
        if isinstance(record, dict) and record.get("pid") != os.getpid():
            alive, why = holder_state(record)
            if alive is not False:
                os.close(fd)
                hint = (f"; if that process is gone, delete {self.path}" if alive is None else
                        "; wait for it to finish or stop it")
                raise RunLockedError(f"{self.run_dir}: in use by {describe(record)} ({why}){hint} "
                                     "(one process per run directory)")
            self.took_over = f"took over the stale lock of {describe(record)} ({why})"
        mine = {"pid": os.getpid(), "pid_start": _process_start(os.getpid()), "host": socket.gethostname(),
                "job_id": job_id(), "scheduler": "slurm" if os.environ.get("SLURM_JOB_ID") else
                ("submitit-local" if os.environ.get("SUBMITIT_LOCAL_JOB_ID") else None),
                "started": time.time(), "command": sys.argv}
        data = (json.dumps(mine) + "\n").encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fsync(fd)
        self._fd = fd
        _HELD[_key(self.run_dir)] = 1
        return self

    def release(self, *, remove_if_unused: bool = False) -> None:
        """Frees the lock (an empty file). ``remove_if_unused``: a run that wrote nothing (it
        failed validation) leaves no lock file nor the folders it created (a `runs/` parent included)."""
        if self._nested:
            self._nested = False
            _HELD[_key(self.run_dir)] -= 1
            return
        if self._fd is None:
            return
        _HELD.pop(_key(self.run_dir), None)
        fd, self._fd = self._fd, None
        try:
            now = {p.name for p in self.run_dir.iterdir()}
            if remove_if_unused and LOCK_FILE not in self._found and now - {LOCK_FILE} <= self._found:
                os.unlink(self.path)  # a waiter that opened this inode sees it unlinked and retries
                os.close(fd)
                for folder in self._created:  # stops at the first that is no longer empty
                    try:
                        folder.rmdir()
                    except OSError:
                        break
                return
            os.ftruncate(fd, 0)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            os.close(fd)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
