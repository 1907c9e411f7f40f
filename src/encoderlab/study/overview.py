"""The parts of a study report that say what a number means: the comparisons of the main table
(one inference procedure, ``evaluation.inference``), the held-out item scores, each model's
pretraining regime, the report's opening summary, and the machine provenance."""

from __future__ import annotations

import math
import platform
import subprocess
from pathlib import Path

from encoderlab.evaluation.inference import task_difference
from encoderlab.evaluation.items import SUBSETS, subset_index
from encoderlab.evaluation.stats import holm, t_interval
from encoderlab.io import git_revision


def selected_runs(entry: dict) -> list:
    """The runs (one per seed) at an entry's selected LR that carry test items."""
    if entry["summary"] is None:
        return []
    return [r for r in entry["runs"] if r.lr == entry["summary"].lr and math.isfinite(r.test) and r.items is not None]


def significance(comparisons: list, tasks: list[str], results: dict) -> dict:
    """Each (A, B, task) of the study's comparisons, tested by the one inference procedure (seeds
    and items), with Holm's adjustment over them: ``{(a, b, task): test | {"p_holm"}}``."""
    tests = []
    for a, b in comparisons:
        for task in tasks:
            if task not in results.get(a, {}) or task not in results.get(b, {}):
                continue
            ra, rb = selected_runs(results[a][task]), selected_runs(results[b][task])
            if not ra or not rb or len({len(r.items) for r in (*ra, *rb)}) != 1:
                continue
            tests.append((a, b, task, task_difference([r.items for r in ra], [r.items for r in rb]).test()))
    finite = [i for i, t in enumerate(tests) if math.isfinite(t[3]["p_value"])]
    adjusted = dict(zip(finite, holm([tests[i][3]["p_value"] for i in finite]) if finite else []))
    return {(a, b, task): {**result, "p_holm": adjusted.get(i, math.nan)}
            for i, (a, b, task, result) in enumerate(tests)}


def significance_lines(tests: dict) -> list[str]:
    lines = ["| model A | model B | task | A - B | 95% CI | p | p (Holm) |", "|---|---|---|---|---|---|---|"]
    for (a, b, task), r in tests.items():
        ci = "" if not math.isfinite(r["ci_low"]) else f"[{r['ci_low']:.2f}, {r['ci_high']:.2f}]"
        p = "" if not math.isfinite(r["p_value"]) else f"{r['p_value']:.4f}"
        ph = "" if not math.isfinite(r["p_holm"]) else f"{r['p_holm']:.4f}"
        lines.append(f"| {a} | {b} | {task} | {r['difference']:+.2f} | {ci} | {p} | {ph} |")
    return lines


def held_out_scores(results: dict) -> dict:
    """Per model and task whose items are marked (toyworld): the test score on the held-out items
    (key words the fine-tuning data never contains) and on the rest, at the selected LR, mean over
    seeds with its 95% Student-t interval over seeds (as the main table), and the item counts."""
    out: dict = {}
    for model, tasks in results.items():
        for task, entry in tasks.items():
            runs = selected_runs(entry)
            masks = [r.held_out for r in runs]
            if not runs or any(m is None for m in masks):
                continue
            row = {}
            for subset in SUBSETS:
                index = subset_index(masks[0], subset)
                mean, low, high = t_interval([r.items.score(index) for r in runs])
                row[subset] = {"mean": mean, "ci_low": low, "ci_high": high, "items": int(len(index))}
            out.setdefault(model, {})[task] = row
    return out


def held_out_lines(scores: dict, tasks: list[str]) -> list[str]:
    tasks = [t for t in tasks if any(t in row for row in scores.values())]
    lines = ["| model | " + " | ".join(f"{t}: held-out | {t}: seen" for t in tasks) + " |",
             "|---|" + "---|---|" * len(tasks)]
    for model, row in scores.items():
        cells = []
        for task in tasks:
            for subset in SUBSETS:
                s = row.get(task, {}).get(subset)
                cells.append("" if s is None else _cell(s["mean"], s["ci_low"], s["ci_high"]))
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return lines


def _cell(mean: float, low: float, high: float) -> str:
    if not math.isfinite(mean):
        return ""
    return f"{mean:.2f}" if not math.isfinite(low) else f"{mean:.2f} ± {(high - low) / 2:.2f}"


def regime_of(fact: dict) -> dict:
    """A model's pretraining regime: tokens, parameters (body + embedding) and tokens per parameter."""
    tokens, params = fact.get("pretraining_tokens", 0), fact.get("parameters")
    return {"tokens": tokens, "parameters": params, "tokens_per_parameter": tokens / params if params else None}


def regime_lines(facts: dict, paper: dict) -> list[str]:
    lines = ["| model | pretraining steps | pretraining tokens | parameters (body + embedding) | tokens per parameter |",
             "|---|---|---|---|---|"]
    for label, fact in facts.items():
        regime = regime_of(fact)
        ratio = "" if regime["tokens_per_parameter"] is None else f"{regime['tokens_per_parameter']:.3g}"
        steps = "none (baseline)" if fact.get("random_init") else f"{fact['parent_steps'] + fact['step']:,}"
        lines.append(f"| {label} | {steps} | {regime['tokens']:,} | {regime['parameters']:,} | {ratio} |")
    lines.append(f"| paper ({paper['model']}) | 42,000 | {paper['tokens']:,} | {paper['parameters']:,} | "
                 f"{paper['tokens_per_parameter']:.0f} |")
    return lines


def summary_lines(findings: list[dict]) -> list[str]:
    """The verdicts, one line each, for the report's opening summary and the terminal."""
    out = []
    for f in findings:
        numbers = "" if f.get("a_mean") is None or not math.isfinite(f["a_mean"]) else \
            f": {f['a_mean']:.2f} vs {f['b_mean']:.2f}"
        p = f.get("p_holm")
        p_text = "n/a" if p is None or not math.isfinite(p) else f"{p:.3g}"
        out.append(f"**{f['verdict']}** {f['regime_text']}: {f['claim']} ({f['a']} vs {f['b']}{numbers}, "
                   f"{f['items']}, p (Holm) {p_text})")
    return out


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return sorted(f for f in flags if f.startswith(("avx", "amx", "fma")))
    except OSError:
        pass
    return []


def machine_provenance() -> dict:
    """What produced the numbers: CPU model and vector extensions (they change float rounding), the
    accelerator, the torch build, the git revision of encoderlab."""
    out = {"cpu": cpu_model(), "cpu_vector_extensions": _cpu_flags(), "machine": platform.machine(),
           "host": platform.node(), "python": platform.python_version(), "git_revision": git_revision()}
    try:
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=5, cwd=Path(__file__).resolve().parent)
        out["git_dirty"] = bool(dirty.stdout.strip()) if dirty.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        out["git_dirty"] = None
    try:
        import torch

        out["torch"] = torch.__version__
        out["torch_build"] = {"cuda": torch.version.cuda, "debug": torch.version.debug,
                              "cpu_capability": torch.backends.cpu.get_cpu_capability()}
        out["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    except Exception:  # provenance must not fail the report
        pass
    return out


def lr_position(entry: dict, lrs: list[float]) -> str:
    """Where the selected LR lies in the grid: ``low edge``, ``high edge`` or ``inside``."""
    lr = entry["summary"].lr if entry["summary"] is not None else None
    grid = sorted(lrs)
    if lr is None or len(grid) < 2:
        return ""
    return "low edge" if lr == grid[0] else ("high edge" if lr == grid[-1] else "inside")
