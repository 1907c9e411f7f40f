"""The runs of a study as a graph: which run starts from which (a run's typed ``branch`` / ``init``,
:class:`~encoderlab.study.spec.StartSpec`), checked once for every way a study is started
(``study run``, ``--dry-run``, the job graph): no run starts from itself, from a run the study does
not have, or from a run listed after it (so the list order is an order the runs can be trained in,
and no cycle can exist)."""

from __future__ import annotations

from pathlib import Path

from encoderlab.config import ConfigError
from encoderlab.training.checkpoint import checkpoint_name


def checkpoint_dir(study_dir: Path, run: str, step: int) -> Path:
    """Where run ``run`` of a study keeps its checkpoint of step ``step``."""
    return Path(study_dir) / "runs" / run / "checkpoints" / checkpoint_name(step)


def start_path(spec, start) -> str:
    """The checkpoint directory a :class:`StartSpec` names (for the run's ``branch_from`` / ``init_from``)."""
    if start.run is not None:
        return str(checkpoint_dir(spec.study_dir, start.run, start.step))
    return start.checkpoint


def run_parents(spec) -> dict[str, set[str]]:
    """For each run, the runs of the study it starts from."""
    return {run.name: run.parents() for run in spec.runs}


def check_run_graph(spec) -> None:
    """Refuses a run that starts from a run the study does not have, or from a run listed after it,
    naming both (a run naming itself is refused by its spec)."""
    order = {run.name: i for i, run in enumerate(spec.runs)}
    for run in spec.runs:
        for key, start in run.starts().items():
            if start.run is None:
                continue
            where = f"study {spec.name!r}, run {run.name!r}: {key} from run {start.run!r} step {start.step}"
            if start.run not in order:
                raise ConfigError(f"{where}: the study has no such run (runs: {', '.join(order)})")
            if order[start.run] > order[run.name]:
                raise ConfigError(f"{where}: {start.run!r} is listed after it; list {start.run!r} first "
                                  "(runs are trained in the order listed, a parent before its children)")
