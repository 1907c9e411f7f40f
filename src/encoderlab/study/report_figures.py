"""The report's figures, as base64 PNGs: category means (the paper's Fig. 2), score vs fine-tuning LR
(Fig. 5), and the study-specific figures (Figs. 3, 4, 6-9) when the study has the runs for them."""

from __future__ import annotations

import base64
import io
import math

import numpy as np

from encoderlab.evaluation.stats import t_interval
from encoderlab.study.findings import category_mean_by_seed


def figure(draw) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = draw(plt)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _line_figure(series: dict[str, list[tuple[float, float, float]]], xlabel: str) -> str:
    """One line per label through its (x, mean test score, 95% CI half-width) points, sorted by x."""

    def draw(plt):
        fig, ax = plt.subplots(figsize=(4.5, 3))
        for label, points in series.items():
            points = sorted(points)
            ax.errorbar([p[0] for p in points], [p[1] for p in points],
                        yerr=[0.0 if math.isnan(p[2]) else p[2] for p in points], marker="o", capsize=3, label=label)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("mean test score (x100), 95% CI")
        ax.legend(fontsize=8)
        return fig

    return figure(draw)


def study_figures(results: dict, category_rows: dict, facts: dict) -> dict:
    """The paper's study-specific figures, each drawn when the study has the runs it needs."""

    def overall(label):
        """(mean over categories, half-width of its 95% t-interval over seeds) of a model."""
        per_seed = category_mean_by_seed({task: entry["summary"].by_seed() for task, entry in results.get(label, {}).items()
                                          if entry["summary"] is not None})
        if not per_seed:
            return math.nan, math.nan
        mean, low, high = t_interval(list(per_seed.values()))
        return mean, (high - low) / 2 if math.isfinite(low) else 0.0

    figures = {}
    final = {label: f for label, f in facts.items() if f["final"] and label in results and not f.get("random_init")}
    by_size = {}
    for label, f in final.items():
        if f["single_phase"] and f["mask_ratio"] is not None:
            by_size.setdefault(f["size"], []).append((100 * f["mask_ratio"], *overall(label)))
    if len({x for points in by_size.values() for x, *_ in points}) > 1:
        figures["Score vs masking ratio (Fig. 3)"] = _line_figure(by_size, "masking ratio (%)")
    by_run = {}
    for label, f in facts.items():
        if label in results:
            by_run.setdefault(f["run"], []).append((f["step"], *overall(label)))
    by_run = {run: points for run, points in by_run.items() if len(points) > 1}
    if by_run:
        figures["Score vs pretraining steps (Fig. 4)"] = _line_figure(by_run, "pretraining steps")
    budgets = {}
    for label, f in final.items():
        if f["cpt_parent"] is None and (f["clm_share"] in (0.0, 1.0) or not f["single_phase"]):
            budgets.setdefault(f"{f['total_steps']} steps", []).append((100 * f["clm_share"], *overall(label)))
    if any(len({x for x, *_ in points}) > 2 for points in budgets.values()):
        figures["Two-stage splits per budget (Fig. 6)"] = _line_figure(budgets, "CLM share of the budget (%)")
    after_clm = {}
    for label, f in final.items():
        if not f["single_phase"] and f["mask_ratio"] is not None and f["cpt_parent"] is None:
            key = f"{f['size']}, {100 * f['clm_share']:.0f}% CLM first"
            after_clm.setdefault(key, []).append((100 * f["mask_ratio"], *overall(label)))
    after_clm = {k: v for k, v in after_clm.items() if len({x for x, *_ in v}) > 1}
    if after_clm:
        figures["Masking ratio after CLM (Fig. 7)"] = _line_figure(after_clm, "masking ratio of the MLM phase (%)")
    continued = {}
    for label, f in final.items():
        if f["cpt_parent"]:
            series = continued.setdefault(f"from {f['cpt_parent']}", [])
            if not series and f["cpt_parent"] in final:  # the starting point itself
                series.append((facts[f["cpt_parent"]]["total_steps"], *overall(f["cpt_parent"])))
            series.append((f["parent_steps"] + f["total_steps"], *overall(label)))
    if continued:
        figures["Continued MLM pretraining (Figs. 8-9)"] = _line_figure(continued, "total pretraining steps")
    return figures


def report_figures(models: list[str], tasks: list[str], categories: list[str], results: dict,
                   category_rows: dict, facts: dict) -> dict[str, str]:
    """Every figure of the report, by title (none when nothing was evaluated)."""
    figures = {}
    if models and categories:
        def bars(plt):
            fig, ax = plt.subplots(figsize=(1.6 + 1.6 * len(categories), 3.2))
            width = 0.8 / len(models)
            for i, model in enumerate(models):
                means = [category_rows[model].get(c, (math.nan,) * 3) for c in categories]
                heights = [m[0] for m in means]
                errors = [0 if math.isnan(m[1]) else (m[2] - m[1]) / 2 for m in means]
                ax.bar(np.arange(len(categories)) + i * width, heights, width, yerr=errors, capsize=3, label=model)
            ax.set_xticks(np.arange(len(categories)) + width * (len(models) - 1) / 2, categories)
            ax.set_ylabel("test score (x100), 95% CI")
            ax.set_title("Objectives compared (category means)")
            ax.legend(fontsize=8)
            return fig

        def lr_curves(plt):
            from matplotlib.ticker import NullLocator

            fig, axes = plt.subplots(1, len(tasks), figsize=(3 * len(tasks), 2.8), squeeze=False)
            for ax, task in zip(axes[0], tasks):
                grid = set()
                for model in models:
                    if task in results[model] and results[model][task]["summary"] is not None:
                        means = results[model][task]["summary"].lr_means
                        lrs = sorted(means)
                        grid.update(lrs)
                        errors = [0.0 if math.isnan(means[lr]["test_std"]) else means[lr]["test_std"] for lr in lrs]
                        line = ax.errorbar(lrs, [means[lr]["test_mean"] for lr in lrs], yerr=errors, marker="o",
                                           capsize=3, label=model)
                        chosen = results[model][task]["summary"].lr  # the LR selected on validation: ringed
                        ax.plot([chosen], [means[chosen]["test_mean"]], marker="o", markersize=11, fillstyle="none",
                                color=line[0].get_color())
                ax.set_xscale("log")
                if grid:  # ticks at the grid's LRs only: log-axis minor labels crowd a narrow grid
                    ax.xaxis.set_minor_locator(NullLocator())
                    ax.set_xticks(sorted(grid), [f"{lr:g}" for lr in sorted(grid)], fontsize=7, rotation=30)
                ax.set_title(task, fontsize=9)
                ax.set_xlabel("fine-tuning LR")
            axes[0][0].set_ylabel("test score ± std over seeds\n(ring: the selected LR)")
            axes[0][-1].legend(fontsize=7)
            return fig

        figures = {"Objective comparison (Fig. 2)": figure(bars), "Score vs fine-tuning LR (Fig. 5)": figure(lr_curves)}
        figures.update(study_figures(results, category_rows, facts))

    return figures
