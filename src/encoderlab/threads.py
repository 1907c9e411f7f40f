"""The thread policy: how many CPU threads each encoderlab process gives torch.

torch's default (one intra-op thread per core) is fast only on an idle machine. When other
processes share the cores, its OpenMP threads wait on each other at every operation, and a
process with 2 threads on 2 busy cores ran 12-20x slower than with 1 (issue 23;
``benchmarks/thread_policy.py`` measures it). encoderlab therefore decides the thread count
instead of taking the default:

- independent work (the pretraining runs and evaluated checkpoints of a study, fine-tuning
  workers) runs side by side, ``workers`` processes at a time, one thread each by default;
- ``workers`` defaults to the usable cores (CPU affinity and the cgroup CPU quota, whichever is
  smaller) where the work can be split (``workers: auto`` in a study's ``scheduler``);
- a single process (``pretrain``, ``evaluate`` with one worker) takes the usable cores divided
  by its workers;
- ``--threads N`` (or ``ENCODERLAB_THREADS=N`` in the environment, which the processes a study
  starts inherit) overrides the per-process count; ``--workers N`` the number side by side.

The policy in force is recorded with the results (``describe``): thread counts change float
rounding, so they belong to a number's provenance.
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import asdict, dataclass

from encoderlab.validate import count
from encoderlab.config import ConfigError

ENV = "ENCODERLAB_THREADS"
POLICY = "policy: usable cores / workers"
_NATIVE_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _cgroup_cpus() -> float | None:
    """The cgroup v2 (or v1) CPU quota in cores, None when unlimited or unknown."""
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int(open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read())
        period = int(open("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity, capped by the cgroup quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_cpus()
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota)))
    return max(1, cores)


def env_threads() -> int | None:
    """``ENCODERLAB_THREADS`` from the environment, validated; None when unset."""
    raw = os.environ.get(ENV)
    if raw is None or raw.strip() == "":
        return None
    try:
        return count(int(raw), f"environment variable {ENV}")
    except ValueError:
        raise ConfigError(f"environment variable {ENV}: expected a whole number >= 1, got {raw!r}") from None


@dataclass(frozen=True)
class ThreadPolicy:
    """``workers`` processes side by side, ``threads`` torch threads each, on ``cores`` usable cores;
    ``source`` says where the thread count came from (``--threads``, the environment, or the policy)."""

    workers: int
    threads: int
    cores: int
    source: str

    def describe(self) -> dict:
        return asdict(self)


def resolve(workers: int | str | None = None, threads: int | None = None) -> ThreadPolicy:
    """The policy for ``workers`` processes side by side (``"auto"``: the usable cores; None: 1) and
    ``threads`` per process (None: ``ENCODERLAB_THREADS``, else usable cores // workers, at least 1)."""
    cores = usable_cores()
    if workers in (None, "auto"):
        workers = cores if workers == "auto" else 1
    count(workers, "workers")
    if threads is not None:
        return ThreadPolicy(workers, count(threads, "--threads"), cores, "--threads")
    from_env = env_threads()
    if from_env is not None:
        return ThreadPolicy(workers, from_env, cores, ENV)
    return ThreadPolicy(workers, max(1, cores // workers), cores, POLICY)


def apply(threads: int, export: bool = True) -> None:
    """Sets this process's torch threads to ``threads``; ``export`` also puts it in the environment,
    so the processes it starts (study jobs, fine-tuning workers, torchrun) take the same count."""
    import torch

    count(threads, "threads")
    torch.set_num_threads(threads)
    if not export:
        return
    os.environ[ENV] = str(threads)
    for name in _NATIVE_ENV:
        os.environ[name] = str(threads)


# -- command-line arguments (encoderlab.cli) ---------------------------------------------------------
def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def workers_argument(text: str) -> int | str:
    return "auto" if text == "auto" else positive_int(text)


def add_threads_argument(parser, text: str | None = None) -> None:
    """``--threads N``: torch threads of the process (encoderlab.threads: the policy, recorded)."""
    parser.add_argument("--threads", type=positive_int, metavar="N",
                        help=text or "torch threads (default: ENCODERLAB_THREADS, else the usable cores); "
                                     "see encoderlab.threads")
