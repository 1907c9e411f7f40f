"""``studies/<name>/summary.json``: the study's results for programs, written with every report.

Schema (NaN is written as null)::

    {"study": NAME, "generated": ISO-8601 time, "encoderlab": VERSION,
     "models": {MODEL: {TASK: {"mean", "ci_low", "ci_high", "lr", "metric", "category", "n",
                               "seeds": [{"seed": S, "score": X}, ...], "diverged_runs", "runs",
                               "data": DATA FINGERPRINT}}},
     "categories": {MODEL: {CATEGORY: {"mean", "ci_low", "ci_high"}}},
     "findings": [{"id", "claim", "verdict", "p", "p_holm", "a", "b", "category", "measure", "tasks",
                   "a_mean", "b_mean", "difference", "ci_low", "ci_high", "margin", "n", "seeds", ...}],
     "protocol": {every fine-tuning setting}, "lrs": [...], "seeds": [...],
     "held_out": {MODEL: {TASK: {"held_out": {"mean", "ci_low", "ci_high", "items"}, "seen": {...}}}},
     "regime": {MODEL: {"tokens", "parameters", "tokens_per_parameter"}},
     "paper_regime": {"model", "tokens", "parameters", "tokens_per_parameter"},
     "provenance": {"cpu", "cpu_vector_extensions", "torch", "torch_build", "git_revision", "execution", ...}}

Every finding carries ``verdict`` (from ``p_holm``), ``items`` (held-out or all), ``regime`` and
``regime_text`` (e.g. "at 1.13 tokens/parameter (paper: 163)").

A model whose runs of a task come from two (protocol, data) groups has one MODEL key per group, as
in the report's tables: no entry pools runs of different groups.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path

import encoderlab
from encoderlab.evaluation.task_types import main_metric
from encoderlab.evaluation.tasks import get_task
from encoderlab.io import atomic_write_text


def _clean(value):
    """JSON without NaN or infinity (null instead), tuples as lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def summary_document(spec, results: dict, category_rows: dict, findings: list[dict], protocol: dict,
                     extra: dict | None = None) -> dict:
    models = {}
    for model, tasks in results.items():
        out = models.setdefault(model, {})
        for task, entry in tasks.items():
            s, st = entry["summary"], entry["stability"]
            row = {"metric": main_metric(get_task(task), protocol), "category": get_task(task).category, "runs": len(entry["runs"]),
                   "diverged_runs": sum(not math.isfinite(r.validation) for r in entry["runs"]),
                   "data": entry.get("group", (None, None))[1]}
            if s is None:
                row |= {"mean": None, "ci_low": None, "ci_high": None, "lr": None, "n": 0, "seeds": [],
                        "all_diverged": True}
            else:
                row |= {"mean": s.mean, "ci_low": s.ci_low, "ci_high": s.ci_high, "lr": s.lr, "n": s.n,
                        "seeds": [{"seed": seed, "score": score} for seed, score in s.by_seed().items()],
                        "lr_range": st["lr_range"] if st else None}
            out[task] = row
    categories = {model: {c: {"mean": m, "ci_low": lo, "ci_high": hi} for c, (m, lo, hi) in rows.items()}
                  for model, rows in category_rows.items()}
    return _clean({
        "study": spec.name, "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "encoderlab": encoderlab.__version__, "models": models, "categories": categories,
        "findings": findings, "protocol": protocol, "lrs": list(spec.evaluation.lrs),
        "seeds": list(spec.evaluation.seeds), **(extra or {}),
    })


def write_summary(spec, results: dict, category_rows: dict, findings: list[dict], protocol: dict,
                  extra: dict | None = None) -> Path:
    """Writes ``summary.json`` in the study directory atomically (temporary file, then rename)."""
    path = Path(spec.study_dir) / "summary.json"
    document = summary_document(spec, results, category_rows, findings, protocol, extra)
    atomic_write_text(path, json.dumps(document, indent=2, allow_nan=False) + "\n")
    return path
