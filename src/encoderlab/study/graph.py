"""The runs of a study as a graph: which run starts from which (``init_from`` / ``branch_from``
overrides naming ``{study_dir}/runs/<run>/...``), checked once for every way a study is started
(``study run``, ``--dry-run``, the job graph): no run starts from itself, from a run the study does
not have, or from a run listed after it (so the list order is an order the runs can be trained in,
and no cycle can exist)."""

from __future__ import annotations

from pathlib import Path

from encoderlab.config import ConfigError

START_KEYS = ("init_from", "branch_from")


def start_paths(spec, run) -> dict[str, str]:
    """The run's ``init_from`` / ``branch_from`` overrides, ``{study_dir}`` resolved; a key given
    twice is an error (the last would silently win)."""
    found: dict[str, str] = {}
    for item in run.overrides:
        key, _, value = item.partition("=")
        key = key.strip()
        if key in START_KEYS:
            if key in found:
                raise ConfigError(f"study {spec.name!r}, run {run.name!r}: overrides set {key} twice "
                                  f"({found[key]!r} and {value!r}); keep one")
            found[key] = value.strip().replace("{study_dir}", str(spec.study_dir))
    return found


def study_parent(spec, path: str) -> str | None:
    """The run ``<name>`` when ``path`` lies under ``{study_dir}/runs/<name>/``, else None."""
    runs = (Path(spec.study_dir) / "runs").resolve()
    try:
        parts = Path(path).resolve().relative_to(runs).parts
    except ValueError:
        return None
    return parts[0] if parts else None


def run_parents(spec) -> dict[str, set[str]]:
    """For each run, the runs of the study it starts from."""
    return {run.name: {p for p in (study_parent(spec, v) for v in start_paths(spec, run).values()) if p}
            for run in spec.runs}


def check_run_graph(spec) -> None:
    """Refuses a run that starts from itself, from a run the study does not have, or from a run
    listed after it, naming both."""
    order = {run.name: i for i, run in enumerate(spec.runs)}
    for run in spec.runs:
        for key, path in start_paths(spec, run).items():
            parent = study_parent(spec, path)
            if parent is None:
                continue
            where = f"study {spec.name!r}, run {run.name!r}: {key} {path}"
            if parent == run.name:
                raise ConfigError(f"{where} lies in the run's own directory; a run cannot start from itself")
            if parent not in order:
                raise ConfigError(f"{where} names run {parent!r}, which the study does not have (runs: "
                                  f"{', '.join(order)})")
            if order[parent] > order[run.name]:
                raise ConfigError(f"{where} starts from run {parent!r}, listed after it; list {parent!r} first "
                                  "(runs are trained in the order listed, a parent before its children)")
