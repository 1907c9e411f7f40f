"""Fine-tuning runs of a sweep in parallel worker processes.

A sweep's runs are independent: each (task, LR, seed) starts from the same backbone weights with
its own seed, so they can run side by side, e.g. on a GPU that one small fine-tuning run leaves
mostly idle, or on a CPU whose cores one run does not keep busy. Whether it pays is measured by
``benchmarks/finetune_workers.py``: on this 2-core CPU with the demo encoder it does not (two
1-thread workers: 0.99x the runs per second of one 2-thread run over 12 runs, 0.84x over 4, where
starting the workers weighs more); on a GPU it was not measured. ``workers`` processes (spawned, so CUDA works in them) each take the cores divided among
them and run whole runs; the parent writes every result to the store as it arrives, so an
interrupted sweep resumes from the runs already recorded.

A worker loads the tasks itself (a task's rows are never pickled across) and refuses to run if
what it loaded is not the data the parent fingerprinted: a result is recorded only under the
fingerprint of the data it was produced on.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass

import torch

from encoderlab.evaluation.features import FeatureCache
from encoderlab.evaluation.protocol import FinetuneConfig
from encoderlab.config import ConfigError
from encoderlab.evaluation.finetune import finetune_many
from encoderlab.evaluation.store import data_fingerprint
from encoderlab.evaluation.tasks import load_task
from encoderlab.threads import apply

_STATE: dict = {}  # per worker process: its tasks and feature cache


@dataclass(frozen=True)
class RunGroup:
    """One training run (``source`` task, LR, seed) scored on the test split of each of ``names``."""

    source: str
    lr: float
    seed: int
    names: tuple[str, ...]


def check_workers(workers, where: str = "fine-tuning workers") -> None:
    """A worker count is a whole number >= 1 (ConfigError naming ``where`` otherwise)."""
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ConfigError(f"{where}: expected a whole number >= 1, got {workers!r}")


def threads_per_worker(workers: int) -> int:
    """The intra-op threads of each worker: this process's threads shared out (at least 1)."""
    return max(1, torch.get_num_threads() // workers)


def _init_worker(threads: int, local_dirs: dict[str, str], fingerprints: dict[str, str], corpus_cache=None) -> None:
    apply(threads)
    _STATE.update(local_dirs=local_dirs, fingerprints=fingerprints, tasks={}, features=FeatureCache(corpus_cache))


def _task(name: str):
    tasks = _STATE["tasks"]
    if name not in tasks:
        task = load_task(name, local_dir=_STATE["local_dirs"].get(name))
        found, expected = data_fingerprint(task), _STATE["fingerprints"][name]
        if found != expected:
            raise RuntimeError(f"task {name!r}: a fine-tuning worker (pid {os.getpid()}) loaded data with fingerprint "
                               f"{found[:12]}, not the {expected[:12]} the sweep started with (did its files change?)")
        tasks[name] = task
    return tasks[name]


def _run(model: str, group: RunGroup, config: FinetuneConfig, trust_remote_code: bool):
    return finetune_many(model, _task(group.source), group.lr, group.seed, config, [_task(n) for n in group.names],
                         trust_remote_code=trust_remote_code, features=_STATE["features"])


def run_parallel(model: str, groups: list[RunGroup], config: FinetuneConfig, workers: int, local_dirs: dict[str, str],
                 fingerprints: dict[str, str], trust_remote_code: bool, record, threads: int | None = None,
                 corpus_cache=None) -> None:
    """Runs every group on ``workers`` processes; ``record(group, results)`` is called in this
    process as each finishes. The first failure stops the sweep: runs not started are cancelled,
    the ones in flight finish and are recorded, then the error is raised. ``threads``: torch threads
    of each worker (default: this process's shared out); ``corpus_cache``: the on-disk corpus cache
    the workers share (a corpus is tokenized by one of them, the others wait and read it)."""
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=min(workers, len(groups)), mp_context=context, initializer=_init_worker,
                               initargs=(threads or threads_per_worker(workers), dict(local_dirs), dict(fingerprints),
                                         corpus_cache))
    failure: BaseException | None = None
    try:
        futures: dict[Future, RunGroup] = {pool.submit(_run, model, g, config, trust_remote_code): g for g in groups}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                if future.cancelled():
                    continue
                error = future.exception()
                if error is not None:
                    if failure is None:
                        failure = error
                        for other in pending:
                            other.cancel()
                    continue
                record(futures[future], future.result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if failure is not None:
        raise failure
