"""The report's tables as Markdown lines: the main table (test mean ± 95% CI per task and category,
best in bold, a dagger where a model is significantly better than the one it is compared with), the
score of every fine-tuning LR, and the per-seed scores with the stability view."""

from __future__ import annotations

import math

from encoderlab.study.overview import lr_position


def fmt(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.2f}"


def main_table(models: list[str], tasks: list[str], categories: list[str], results: dict, category_rows: dict,
               tests: dict, facts: dict) -> str:
    def cell(mean, low, high, best):
        text = f"{mean:.2f}" if math.isnan(low) else f"{mean:.2f} ± {(high - low) / 2:.2f}"
        return f"**{text}**" if best else text

    header = "| " + " | ".join(["model", *tasks, *[f"{c} mean" for c in categories]]) + " |"
    lines = [header, "|" + "---|" * (1 + len(tasks) + len(categories))]
    best_task = {t: max((results[m][t]["summary"].mean for m in models
                         if t in results[m] and results[m][t]["summary"] is not None), default=None) for t in tasks}
    best_cat = {c: max((category_rows[m][c][0] for m in models if c in category_rows[m]), default=None) for c in categories}
    for model in models:
        cells = [f"{model} (baseline: not pretrained)" if facts.get(model, {}).get("random_init") else model]
        for task in tasks:
            entry = results[model].get(task)
            if entry is None:
                cells.append("")
                continue
            if entry["summary"] is None:
                cells.append(f"diverged ({len(entry['runs'])} runs)")
                continue
            s = entry["summary"]
            marks = "".join("†" for (a, b, t), r in tests.items()
                            if t == task and model in (a, b) and r["p_holm"] < 0.05 and
                            (r["difference"] > 0) == (model == a))
            cells.append(cell(s.mean, s.ci_low, s.ci_high, s.mean == best_task[task]) + marks)
        for category in categories:
            mean, low, high = category_rows[model].get(category, (math.nan,) * 3)
            cells.append("" if math.isnan(mean) else cell(mean, low, high, mean == best_cat[category]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def lr_table(models: list[str], results: dict, lrs: list[float]) -> list[str]:
    lr_lines = ["| model | task | selected LR | " + " | ".join(f"LR {lr:g}" for lr in lrs) + " |",
                "|---|---|---|" + "---|" * len(lrs)]
    for model in models:
        for task, entry in results[model].items():
            if entry["summary"] is None:
                lr_lines.append(f"| {model} | {task} | none: all diverged | " + " | ".join("" for _ in lrs) + " |")
                continue
            means = entry["summary"].lr_means
            row = [f"{means[lr]['test_mean']:.2f}" + (f" ({means[lr]['diverged']} div.)" if means[lr]["diverged"] else "")
                   if lr in means else "" for lr in lrs]
            row = [f"**{v}**" if lr == entry["summary"].lr else v for lr, v in zip(lrs, row)]
            lr_lines.append(f"| {model} | {task} | {entry['summary'].lr:g} ({lr_position(entry, lrs)}) | "
                            + " | ".join(row) + " |")
    return lr_lines


def seed_table(models: list[str], results: dict) -> list[str]:
    seed_lines = ["| model | task | selected LR | per-seed test scores | LR range (best - worst LR mean) | "
                  "std across LR means | mean std across seeds | diverged runs |", "|---|---|---|---|---|---|---|---|"]
    for model in models:
        for task, entry in results[model].items():
            st = entry["stability"]
            if entry["summary"] is None or st is None:
                seed_lines.append(f"| {model} | {task} | none: all diverged |  |  |  |  | {len(entry['runs'])}/"
                                  f"{len(entry['runs'])} |")
                continue
            seed_lines.append(f"| {model} | {task} | {entry['summary'].lr:g} | "
                              + ", ".join(f"{v:.2f}" for v in entry["summary"].per_seed)
                              + f" | {fmt(st['lr_range'])} | {fmt(st['lr_std'])} | {fmt(st['mean_seed_std'])} | "
                              f"{st['diverged_runs']}/{st['runs']} |")
    return seed_lines
