"""What a run wrote in its directory, so that ``--overwrite`` deletes only that.

A run directory may hold files that are not the run's: a user's notes, a results database that an
evaluation wrote beside the run (``cpt --evaluate``'s default ``results.sqlite``), a tokenizer
copied there by hand. ``RUN_DIR/outputs.json`` lists the entries encoderlab wrote (recorded before
each is first written, so a crash mid-write leaves it listed), and replacing a run removes those
entries and nothing else. A run directory written before this manifest existed (no
``outputs.json``) owns the names encoderlab wrote then (:data:`LEGACY_OUTPUTS`).

Deletion happens only with the run's lock held (:mod:`encoderlab.training.lock`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from encoderlab.io import atomic_write_text
from encoderlab.training.lock import LOCK_FILE

MANIFEST = "outputs.json"
# what encoderlab wrote in a run directory before the manifest: pretraining runs and cpt starts
LEGACY_OUTPUTS = ("checkpoints", "metrics.jsonl", "tensorboard", "config.yaml", "init", "cpt.json")


def _read(run_dir: Path) -> list[str] | None:
    path = run_dir / MANIFEST
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        names = record["outputs"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ValueError(f"{path}: not an encoderlab outputs manifest (expected {{'outputs': [names]}}); "
                         "it lists what --overwrite may delete, so it is not guessed: fix or remove it") from None
    if not isinstance(names, list) or not all(isinstance(n, str) and _single_name(n) for n in names):
        raise ValueError(f"{path}: its outputs must be names of entries of {run_dir}, got {names!r}")
    return names


def _single_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name


def claim(run_dir: str | Path, *names: str) -> None:
    """Records ``names`` (entries of ``run_dir``) as written by the run, before they are written."""
    run_dir = Path(run_dir)
    listed = _read(run_dir) or []
    new = [n for n in names if n not in listed]
    if new:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / MANIFEST, json.dumps({"outputs": [*listed, *new]}, indent=2) + "\n")


def owned(run_dir: str | Path) -> list[str]:
    """The entries of ``run_dir`` the run wrote (present now), the manifest last."""
    run_dir = Path(run_dir)
    names = _read(run_dir)
    if names is None:
        names = list(LEGACY_OUTPUTS)
    present = [n for n in names if (run_dir / n).exists() or (run_dir / n).is_symlink()]
    return present + ([MANIFEST] if (run_dir / MANIFEST).is_file() else [])


def foreign(run_dir: str | Path) -> list[str]:
    """The entries of ``run_dir`` that are not the run's (an overwrite keeps them), its lock aside."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    mine = {*owned(run_dir), LOCK_FILE}
    return sorted(p.name for p in run_dir.iterdir() if p.name not in mine)


def removal_note(run_dir: str | Path, removed: list[str]) -> str:
    """What an overwrite removed from ``run_dir`` and what it kept, in one line."""
    kept = foreign(run_dir)
    return (f"overwrite: removed the previous run's {', '.join(removed)} from {run_dir}"
            + (f"; kept {', '.join(kept)} (not written by the run)" if kept else ""))


def remove_owned(run_dir: str | Path) -> list[str]:
    """Deletes what the run wrote in ``run_dir`` (the caller holds its lock); returns the names removed."""
    run_dir = Path(run_dir)
    names = owned(run_dir)
    for name in names:
        target = run_dir / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()
    return names
