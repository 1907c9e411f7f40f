"""The evaluation sweep: tasks x learning rates x seeds for one model, resumable, with a CI table.

Every run is keyed by model, dataset, the content of its data, LR, seed and the whole protocol
(``store.py``); a run already in the database under that key is not repeated, and one under any
other key is never served for this sweep. The summary reports only this sweep's protocol and data.
"""

from __future__ import annotations

import math
import platform
from pathlib import Path

import torch

import encoderlab
from encoderlab.evaluation.backbone import check_model_dir
from encoderlab.evaluation.finetune import FeatureCache, FinetuneConfig, finetune_many
from encoderlab.evaluation.pool import RunGroup, check_workers, run_parallel, threads_per_worker
from encoderlab.evaluation.protocol import precision_of, protocol_id, protocol_identity
from encoderlab.evaluation.stats import RunScore, category_summary, stability, summarize
from encoderlab.evaluation.store import (ResultsStore, RunRecord, combined_fingerprint, data_fingerprint,
                                         model_fingerprint, run_key)
from encoderlab.evaluation.task_types import check_protocol_fits, main_metric
from encoderlab.evaluation.tasks import get_task, load_task
from encoderlab.io import git_revision
from encoderlab.evaluation.items import held_out_mask, item_scores

PAPER_LRS = (1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4)
PAPER_SEEDS = (0, 1, 2, 3, 4)


def _weights_dir(model: str) -> Path:
    path = Path(model)
    if not path.is_dir():
        raise ValueError(f"{model}: model directory not found (a local encoderlab checkpoint or transformers model)")
    return path


def sweep_protocol(config: FinetuneConfig, device: torch.device | None = None) -> dict:
    """The protocol identity a sweep on this machine records (precision follows the device)."""
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return protocol_identity(config, precision_of(device.type))


def run_sweep(model: str, tasks: list[str], lrs: list[float], seeds: list[int], results: str | Path,
              config: FinetuneConfig, local_dirs: dict[str, str] | None = None, progress: bool = True,
              trust_remote_code: bool = False, workers: int = 1, threads: int | None = None,
              label: str | None = None, corpus_cache: str | Path | None = None) -> list[dict]:
    """Runs every (task, lr, seed) not yet in ``results``; returns the summary rows.

    ``workers`` > 1 runs that many fine-tuning runs at a time in worker processes (``pool.py``);
    how the work is spread never enters a run's key (the same run gives the same score, up to the
    float rounding of another thread count: ``tests/e2e/test_sweep_workers.py``). ``threads``: torch
    threads per worker (default: this process's threads shared out; ``encoderlab.threads``);
    ``label``: the model's name on the progress bar (default: the directory's name);
    ``corpus_cache``: the directory of tokenized retrieval corpora (``corpus_cache.py``; default:
    ``corpus-cache`` beside the results database), shared by the workers and by later sweeps."""
    check_workers(workers)
    if threads is None:
        threads = threads_per_worker(workers) if workers > 1 else torch.get_num_threads()
    elif workers == 1:
        torch.set_num_threads(threads)
    fingerprint = model_fingerprint(_weights_dir(model))
    check_model_dir(model)  # a model the runs would refuse is refused before the results database is touched
    check_protocol_fits(tasks, config)  # impossible settings (QA windows) fail before any work
    identity = sweep_protocol(config)
    protocol = protocol_id(identity)
    # Zero-shot tasks (NQ, MLDR) are tested on the model fine-tuned on their source (MS MARCO):
    # one training run per (source, LR, seed) serves every task that shares the source.
    sources = {name: get_task(name).zero_shot_from or name for name in tasks}
    loaded = {name: load_task(name, local_dir=(local_dirs or {}).get(name)) for name in {*tasks, *sources.values()}}
    fingerprints = {name: data_fingerprint(task) for name, task in loaded.items()}
    data = {name: combined_fingerprint(fingerprints[sources[name]], fingerprints[name]) for name in tasks}
    groups: dict[tuple, list[str]] = {}
    for name in tasks:
        for lr in lrs:
            for seed in seeds:
                groups.setdefault((sources[name], lr, seed), []).append(name)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(tasks) * len(lrs) * len(seeds), desc=f"evaluate {label or Path(model).name}", unit="run",
                   dynamic_ncols=True)
    corpus_cache = Path(corpus_cache) if corpus_cache is not None else Path(results).parent / "corpus-cache"
    features = FeatureCache(corpus_cache)  # one model, so one tokenizer: each task is tokenized once per sweep
    with ResultsStore(results) as store:
        todo = []
        for (source, lr, seed), names in groups.items():
            pending = [n for n in names if not store.has(run_key(fingerprint, n, lr, seed, protocol, data[n]))]
            if bar is not None:
                bar.update(len(names) - len(pending))  # done before (an interrupted sweep resumes here)
            if pending:
                todo.append(RunGroup(source, lr, seed, tuple(pending)))

        def record(group: RunGroup, outcomes) -> None:
            for name, result in zip(group.names, outcomes):
                store.add(RunRecord(
                    model_fingerprint=fingerprint, model_name=str(model), dataset=name, lr=group.lr, seed=group.seed,
                    protocol_version=protocol, data_fingerprint=data[name], protocol=identity, status=result.status,
                    validation_score=result.validation, test_score=result.test,
                    metrics=result.metrics | {"counts": result.counts, "effective": result.effective},
                    test_items=result.test_items, steps=result.steps, train_seconds=result.train_seconds,
                    eval_seconds=result.eval_seconds,
                    provenance={"encoderlab": encoderlab.__version__, "torch": torch.__version__,
                                "python": platform.python_version(), "git": git_revision(),
                                "execution": {"workers": workers, "threads": threads},
                                "data": {"trained_on": group.source, "train_data": fingerprints[group.source],
                                         "test_data": fingerprints[name], "local_dir": (local_dirs or {}).get(name)}},
                ))
                if bar is not None:
                    bar.set_postfix(task=name, lr=f"{group.lr:g}", seed=group.seed, score=f"{result.test:.1f}",
                                    status=result.status)
                    bar.update(1)

        if workers > 1 and len(todo) > 1:
            run_parallel(str(model), todo, config, workers, local_dirs or {}, fingerprints, trust_remote_code, record,
                         threads=threads, corpus_cache=corpus_cache)
        else:
            for group in todo:
                record(group, finetune_many(model, loaded[group.source], group.lr, group.seed, config,
                                            [loaded[n] for n in group.names], trust_remote_code=trust_remote_code,
                                            features=features))
        if bar is not None:
            bar.close()
        return summary_rows(store, fingerprint, tasks, set(lrs), set(seeds), protocol, data)


def run_scores(records: list[RunRecord]) -> list[RunScore]:
    return [RunScore(r.lr, r.seed, r.validation_score if r.status == "ok" else math.nan,
                     r.test_score if r.status == "ok" else math.nan, r.test_items,
                     item_scores(r) if r.status == "ok" else None, held_out_mask(r)) for r in records]


def summary_rows(store: ResultsStore, fingerprint: str, tasks: list[str], lrs: set[float], seeds: set[int],
                 protocol: str, data: dict[str, str]) -> list[dict]:
    """One row per task (runs of this protocol and data only) and one per category."""
    rows, by_category = [], {}
    for name in tasks:
        records = [r for r in store.records(fingerprint, name)
                   if r.lr in lrs and r.seed in seeds and r.group == (protocol, data[name])]
        if not records:
            continue
        scores = run_scores(records)
        spec = get_task(name)
        row = {"task": name, "category": spec.category, "metric": main_metric(spec, records[0].protocol),
               "runs": len(records),
               "diverged": sum(r.status == "diverged" for r in records), "data": data[name]}
        try:
            summary = summarize(scores)
        except ValueError:  # every LR diverged: shown as such, never dropped
            rows.append(row | {"lr": None, "mean": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": 0,
                               "per_seed": [], "stability": None})
            continue
        rows.append(row | {"lr": summary.lr, "mean": summary.mean, "ci_low": summary.ci_low,
                           "ci_high": summary.ci_high, "n": summary.n, "per_seed": summary.per_seed,
                           "stability": stability(scores)})
        by_category.setdefault(spec.category, {})[name] = summary.by_seed()
    for category, per_dataset in by_category.items():
        mean, low, high = category_summary(per_dataset)
        rows.append({"task": f"{category} mean", "category": category, "metric": "mean", "lr": None, "mean": mean,
                     "ci_low": low, "ci_high": high, "n": len(set.intersection(*(set(v) for v in per_dataset.values()))),
                     "per_seed": None, "diverged": None, "runs": None, "data": None, "stability": None})
    return rows


def other_groups(store: ResultsStore, fingerprint: str, tasks: list[str], protocol: str, data: dict[str, str]) -> int:
    """How many runs of this model and these tasks are in the store under another protocol or data."""
    return sum(r.group != (protocol, data[name]) for name in tasks for r in store.records(fingerprint, name))


def _number(value: float, digits: int = 2) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def format_table(rows: list[dict]) -> str:
    lines = ["| task | metric | selected LR | test mean | 95% CI | per-seed test scores | seeds | diverged runs |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ci = "" if math.isnan(r["ci_low"]) else f"[{r['ci_low']:.2f}, {r['ci_high']:.2f}]"
        lr = "" if r["lr"] is None else f"{r['lr']:g}"
        if r["lr"] is None and r["per_seed"] is not None:
            lr = "none: every LR diverged"
        diverged = "" if r["diverged"] is None else f"{r['diverged']}/{r['runs']}"
        per_seed = "" if not r["per_seed"] else ", ".join(f"{v:.2f}" for v in r["per_seed"])
        lines.append(f"| {r['task']} | {r['metric']} | {lr} | {_number(r['mean'])} | {ci} | {per_seed} | {r['n']} "
                     f"| {diverged} |")
    return "\n".join(lines)


def format_stability(rows: list[dict]) -> str:
    """The stability view (the paper's Fig. 5): spread of test means across the LR grid and of
    test scores across seeds, per task."""
    lines = ["| task | LR range (best - worst LR mean) | std across LR means | mean std across seeds | diverged runs |",
             "|---|---|---|---|---|"]
    for r in rows:
        s = r.get("stability")
        if s is None:
            continue
        lines.append(f"| {r['task']} | {_number(s['lr_range'])} | {_number(s['lr_std'])} | {_number(s['mean_seed_std'])} "
                     f"| {s['diverged_runs']}/{s['runs']} |")
    return "\n".join(lines)
