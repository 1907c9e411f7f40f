"""The evaluation sweep: tasks x learning rates x seeds for one model, resumable, with a CI table."""

from __future__ import annotations

import math
import platform
from dataclasses import asdict
from pathlib import Path

import torch

import encoderlab
from encoderlab.evaluation.finetune import PROTOCOL_VERSION, FeatureCache, FinetuneConfig, finetune_many
from encoderlab.evaluation.stats import RunScore, category_summary, summarize
from encoderlab.evaluation.store import ResultsStore, RunRecord, model_fingerprint, run_key
from encoderlab.evaluation.tasks import get_task, load_task

PAPER_LRS = (1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4)
PAPER_SEEDS = (0, 1, 2, 3, 4)


def _weights_dir(model: str) -> Path:
    path = Path(model)
    if not path.is_dir():
        raise ValueError(f"{model}: model directory not found (a local encoderlab checkpoint or transformers model)")
    return path


def run_sweep(model: str, tasks: list[str], lrs: list[float], seeds: list[int], results: str | Path,
              config: FinetuneConfig, local_dirs: dict[str, str] | None = None, progress: bool = True,
              trust_remote_code: bool = False) -> list[dict]:
    """Runs every (task, lr, seed) not yet in ``results``; returns the summary rows."""
    fingerprint = model_fingerprint(_weights_dir(model))
    for name in tasks:
        get_task(name)  # unknown names fail before any work
    # Zero-shot tasks (NQ, MLDR) are tested on the model fine-tuned on their source (MS MARCO):
    # one training run per (source, LR, seed) serves every task that shares the source.
    sources = {name: get_task(name).zero_shot_from or name for name in tasks}
    groups: dict[tuple, list[str]] = {}
    for name in tasks:
        for lr in lrs:
            for seed in seeds:
                groups.setdefault((sources[name], lr, seed), []).append(name)
    protocol = f"{PROTOCOL_VERSION}:{config.max_steps}:{config.batch_size}:{config.max_length}:{config.max_eval_examples}"
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(tasks) * len(lrs) * len(seeds), desc=f"evaluate {Path(model).name}", unit="run",
                   dynamic_ncols=True)
    loaded = {}
    features = FeatureCache()  # one model, so one tokenizer: each task is tokenized once per sweep
    with ResultsStore(results) as store:
        for (source, lr, seed), names in groups.items():
            pending = [n for n in names if not store.has(run_key(fingerprint, n, lr, seed, protocol))]
            if bar is not None:
                bar.update(len(names) - len(pending))  # done before (an interrupted sweep resumes here)
            if not pending:
                continue
            for needed in {source, *pending}:
                if needed not in loaded:
                    loaded[needed] = load_task(needed, local_dir=(local_dirs or {}).get(needed))
            outcomes = finetune_many(model, loaded[source], lr, seed, config, [loaded[n] for n in pending],
                                     trust_remote_code=trust_remote_code, features=features)
            for name, result in zip(pending, outcomes):
                store.add(RunRecord(
                    model_fingerprint=fingerprint, model_name=str(model), dataset=name, lr=lr, seed=seed,
                    protocol_version=protocol, status=result.status, validation_score=result.validation,
                    test_score=result.test, metrics=result.metrics | {"counts": result.counts},
                    test_items=result.test_items, steps=result.steps, train_seconds=result.train_seconds,
                    eval_seconds=result.eval_seconds,
                    provenance={"config": asdict(config), "encoderlab": encoderlab.__version__,
                                "torch": torch.__version__, "python": platform.python_version(), "git": _git()},
                ))
                if bar is not None:
                    bar.set_postfix(task=name, lr=f"{lr:g}", seed=seed, score=f"{result.test:.1f}",
                                    status=result.status)
                    bar.update(1)
        if bar is not None:
            bar.close()
        return summary_rows(store, fingerprint, tasks, set(lrs), set(seeds))


def _git() -> str | None:
    from encoderlab.training.checkpoint import git_revision

    return git_revision()


def summary_rows(store: ResultsStore, fingerprint: str, tasks: list[str], lrs: set[float], seeds: set[int]) -> list[dict]:
    rows, by_category = [], {}
    for name in tasks:
        records = [r for r in store.records(fingerprint, name) if r.lr in lrs and r.seed in seeds]
        if not records:
            continue
        scores = [RunScore(r.lr, r.seed, r.validation_score if r.status == "ok" else math.nan,
                           r.test_score if r.status == "ok" else math.nan, r.test_items) for r in records]
        summary = summarize(scores)
        spec = get_task(name)
        rows.append({"task": name, "category": spec.category, "metric": spec.metric, "lr": summary.lr,
                     "mean": summary.mean, "ci_low": summary.ci_low, "ci_high": summary.ci_high, "n": summary.n,
                     "per_seed": summary.per_seed,
                     "diverged": sum(m["diverged"] for m in summary.lr_means.values())})
        by_category.setdefault(spec.category, {})[name] = summary.per_seed
    for category, per_dataset in by_category.items():
        mean, low, high = category_summary(per_dataset)
        rows.append({"task": f"{category} mean", "category": category, "metric": "mean", "lr": None, "mean": mean,
                     "ci_low": low, "ci_high": high, "n": min(len(v) for v in per_dataset.values()),
                     "per_seed": None, "diverged": None})
    return rows


def format_table(rows: list[dict]) -> str:
    lines = ["| task | metric | selected LR | test mean | 95% CI | seeds | diverged runs |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        ci = "" if math.isnan(r["ci_low"]) else f"[{r['ci_low']:.2f}, {r['ci_high']:.2f}]"
        lr = "" if r["lr"] is None else f"{r['lr']:g}"
        diverged = "" if r["diverged"] is None else str(r["diverged"])
        lines.append(f"| {r['task']} | {r['metric']} | {lr} | {r['mean']:.2f} | {ci} | {r['n']} | {diverged} |")
    return "\n".join(lines)
