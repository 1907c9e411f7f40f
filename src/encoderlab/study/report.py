"""The study report: Markdown and a self-contained HTML page (figures embedded as PNG).

Tables in the paper's form (per task and per category: test mean with its 95% CI over seeds at
the LR selected on validation; best in bold; significance marks from paired permutation tests
with Holm's correction), figures (objective comparison bars with CIs, score vs fine-tuning LR per
model), the paper's findings tested on the study's runs (``findings.py``), and provenance (spec, versions,
hardware, wall time per stage). Every report also writes ``summary.json`` (``summary.py``).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np

import encoderlab
from encoderlab.evaluation.protocol import protocol_card, protocol_identity, settings_of
from encoderlab.evaluation.stats import category_summary, stability, summarize, t_interval
from encoderlab.evaluation.store import ResultsStore, model_fingerprint
from encoderlab.evaluation.sweep import run_scores
from encoderlab.evaluation.tasks import get_task
from encoderlab.io import atomic_write_text
from encoderlab.study.findings import INTRO as FINDINGS_INTRO
from encoderlab.study.findings import category_mean_by_seed, evaluate_findings, findings_lines, paper_regime
from encoderlab.study.overview import (held_out_lines, held_out_scores, lr_position, machine_provenance,
                                       regime_lines, regime_of, significance, significance_lines, summary_lines)
from encoderlab.study.plan import StudyPlan
from encoderlab.study.spec import StudySpec
from encoderlab.study.summary import write_summary


def _collect(plan: StudyPlan) -> tuple[dict, dict]:
    """Results per model label and task, from runs of the spec's protocol only, one (protocol, data)
    group per label: a model whose runs of a task came from several groups (other data, other
    precision) gets one label per group, never one pooled mean. Returns (results, card facts)."""
    spec = plan.spec
    wanted = settings_of(protocol_identity(spec.evaluation.finetune_config(), ""))
    results = {}  # model label -> task -> {summary, runs}
    seen = {"precisions": set(), "groups": 0, "other_protocol_runs": 0}
    database = spec.study_dir / "results.sqlite"
    if not database.is_file():  # a study that never evaluated anything: an empty report, no new file
        return results, seen
    with ResultsStore(database, create=False) as store:
        for ref in plan.checkpoints:
            if not (ref.path / "model.safetensors").is_file():
                continue
            label = ref.label
            fingerprint = model_fingerprint(ref.path)
            for task in spec.evaluation.tasks:
                groups: dict[tuple, list] = {}
                for r in store.records(fingerprint, task):
                    if r.lr not in spec.evaluation.lrs or r.seed not in spec.evaluation.seeds:
                        continue
                    if settings_of(r.protocol) != wanted:
                        seen["other_protocol_runs"] += 1
                        continue
                    groups.setdefault(r.group, []).append(r)
                for (protocol, data), records in sorted(groups.items()):
                    precision = records[0].protocol.get("precision", "")
                    seen["precisions"].add(precision)
                    seen["groups"] += 1
                    name = label if len(groups) == 1 else f"{label} [data {data[:8]}, {precision}]"
                    scores = run_scores(records)
                    try:
                        summary = summarize(scores)
                    except ValueError:  # every LR diverged: shown as such, never dropped
                        summary = None
                    results.setdefault(name, {})[task] = {"summary": summary, "runs": scores,
                                                          "stability": stability(scores) if summary else None,
                                                          "model": label, "group": (protocol, data)}
    return results, seen


def _fmt(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.2f}"


def _figure(draw) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = draw(plt)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _category_rows(spec: StudySpec, results: dict) -> dict:
    out = {}
    for model, tasks in results.items():
        by_category = {}
        for task, entry in tasks.items():
            if entry["summary"] is None:
                continue
            by_category.setdefault(get_task(task).category, {})[task] = entry["summary"].by_seed()
        out[model] = {c: category_summary(v) for c, v in by_category.items()}
    return out


def _run_facts(plan: StudyPlan) -> dict:
    """What each evaluated model is: size, objectives, masking ratio, CLM share, steps, CPT parent."""
    configs = plan.configs
    facts = {}
    for ref in plan.checkpoints:
        config = configs[ref.run]
        label = ref.label
        params = config.model.num_parameters(include_head=False)
        if plan.run(ref.run).random_init:  # no pretraining: no objective
            facts[label] = {"run": ref.run, "step": 0, "final": True, "size": config.model.name, "mask_ratio": None,
                            "single_phase": False, "clm_share": 0.0, "total_steps": 0, "cpt_parent": None,
                            "parent_steps": 0, "objectives": [], "random_init": True, "pretraining_tokens": 0,
                            "parameters": params}
            continue
        mlm = [p for p in config.phases if p.objective == "mlm"]
        clm_steps = sum(p.steps for p in config.phases if p.objective == "clm")
        parent = plan.init_parent(ref.run)  # the run whose weights this one continues (typed lineage)
        facts[label] = {
            "run": ref.run, "step": ref.step, "final": ref.final, "size": config.model.name,
            "mask_ratio": mlm[-1].mask_ratio if mlm else None, "single_phase": len(config.phases) == 1,
            "clm_share": clm_steps / config.total_steps, "total_steps": config.total_steps, "cpt_parent": parent,
            "parent_steps": configs[parent].total_steps if parent else 0,
            "objectives": [p.objective for p in config.phases], "random_init": False,
            # steps x batch tokens, the parent's too for continued pretraining (a branch's steps count from 0)
            "pretraining_tokens": ref.step * config.global_batch_tokens
            + (configs[parent].total_steps * configs[parent].global_batch_tokens if parent else 0),
            "parameters": params,
        }
    return facts


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

    return _figure(draw)


def _study_figures(spec: StudySpec, results: dict, category_rows: dict, facts: dict) -> dict:
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


def write_report(plan: StudyPlan, timings: dict | None = None) -> Path:
    spec = plan.spec
    results, seen = _collect(plan)
    models = list(results)
    tasks = [t for t in spec.evaluation.tasks if any(t in results[m] for m in models)]
    categories = sorted({get_task(t).category for t in tasks}, key=["SC", "TC", "QA", "IR"].index)
    tests = significance(spec.comparisons, spec.evaluation.tasks, results)
    category_rows = _category_rows(spec, results)
    facts = _run_facts(plan) if models else {}
    findings = evaluate_findings(results, facts, tasks)

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
    table = "\n".join(lines)
    lr_lines = ["| model | task | selected LR | " + " | ".join(f"LR {lr:g}" for lr in spec.evaluation.lrs) + " |",
                "|---|---|---|" + "---|" * len(spec.evaluation.lrs)]
    for model in models:
        for task, entry in results[model].items():
            if entry["summary"] is None:
                lr_lines.append(f"| {model} | {task} | none: all diverged | " + " | ".join("" for _ in spec.evaluation.lrs) + " |")
                continue
            means = entry["summary"].lr_means
            row = [f"{means[lr]['test_mean']:.2f}" + (f" ({means[lr]['diverged']} div.)" if means[lr]["diverged"] else "")
                   if lr in means else "" for lr in spec.evaluation.lrs]
            row = [f"**{v}**" if lr == entry["summary"].lr else v for lr, v in zip(spec.evaluation.lrs, row)]
            lr_lines.append(f"| {model} | {task} | {entry['summary'].lr:g} ({lr_position(entry, spec.evaluation.lrs)}) | "
                            + " | ".join(row) + " |")
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
                              + f" | {_fmt(st['lr_range'])} | {_fmt(st['lr_std'])} | {_fmt(st['mean_seed_std'])} | "
                              f"{st['diverged_runs']}/{st['runs']} |")
    identity = protocol_identity(spec.evaluation.finetune_config(), " / ".join(sorted(seen["precisions"])) or "none yet")
    card = protocol_card(identity, spec.evaluation.lrs, spec.evaluation.seeds)
    if seen["other_protocol_runs"]:
        card.append(f"| excluded | {seen['other_protocol_runs']} run(s) in the database made under another protocol |")
    sig_lines = significance_lines(tests)
    held = held_out_scores(results)
    held_lines = held_out_lines(held, tasks) if held else []
    paper = paper_regime()
    regime = regime_lines({m: facts[m] for m in models if m in facts}, paper) if facts else []
    verdicts = summary_lines(findings)

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

        figures = {"Objective comparison (Fig. 2)": _figure(bars), "Score vs fine-tuning LR (Fig. 5)": _figure(lr_curves)}
        figures.update(_study_figures(spec, results, category_rows, facts))

    provenance = {
        "study": spec.name, "encoderlab": encoderlab.__version__, **machine_provenance(),
        "execution": (timings or {}).get("execution"),
        "evaluation": {"tasks": spec.evaluation.tasks, "lrs": spec.evaluation.lrs, "seeds": spec.evaluation.seeds,
                       "protocol": identity},
        "runs": [{"name": r.name, "preset": r.preset, "overrides": r.overrides,
                  **{key: asdict(start) for key, start in r.starts().items()}} for r in spec.runs],
        "wall_seconds": timings or {},
        "device_hours": _device_hours(spec, timings or {}),
    }
    intro = (f"Test scores (x100) at the fine-tuning LR selected on validation, mean over "
             f"{len(spec.evaluation.seeds)} seeds ± half-width of the 95% Student-t interval over seeds. Best per "
             "column in bold; † marks a model significantly better than the one it is compared with (the report's "
             "one inference procedure, over fine-tuning seeds and test items, Holm-corrected p < 0.05; see "
             "'Paired comparisons').")
    held_intro = ("Scores on the test items whose key words (review adjectives, names) never occur in the task's "
                  "fine-tuning data, which only pretraining can teach, and on the other items; mean over seeds at "
                  "the selected LR ± half-width of the 95% Student-t interval over seeds.")
    sections = [f"# {spec.name}", spec.description, "## Summary", intro, table,
                "Verdicts (details in 'Paper findings'):\n\n" + "\n".join(f"- {v}" for v in verdicts)
                if verdicts else "(no paper finding testable)"]
    if regime:
        sections += ["## Pretraining regime", "\n".join(regime)]
    if held_lines:
        sections += ["## Held-out items", held_intro, "\n".join(held_lines)]
    markdown = "\n\n".join([
        *sections, "## Score per fine-tuning LR (test mean over seeds; selected LR in bold)",
        "\n".join(lr_lines), "## Per-seed scores and stability across the LR grid (Fig. 5)", "\n".join(seed_lines),
        "## Paired comparisons", "\n".join(sig_lines) if tests else "(none)",
        "## Paper findings", FINDINGS_INTRO, "\n".join(findings_lines(findings)) if findings else "(none testable)",
        *[f"## {title}\n\n![{title}](data:image/png;base64,{png})" for title, png in figures.items()],
        "## Protocol", "\n".join(card), "## Provenance", "```json\n" + json.dumps(provenance, indent=2) + "\n```",
    ]) + "\n"
    out_md = spec.study_dir / "report.md"
    out_html = spec.study_dir / "report.html"
    atomic_write_text(out_md, markdown)
    atomic_write_text(out_html, _html(spec, intro, table, lr_lines, sig_lines if tests else [], figures, provenance,
                                     seed_lines, card, findings_lines(findings) if findings else [],
                                     {"verdicts": verdicts, "regime": regime, "held": held_lines,
                                      "held_intro": held_intro}))
    write_summary(spec, results, category_rows, findings, identity,
                  extra={"held_out": held, "provenance": provenance, "paper_regime": paper,
                         "regime": {m: regime_of(facts[m]) for m in models if m in facts}})
    return out_html


def _device_hours(spec: StudySpec, timings: dict) -> dict:
    """Wall time x devices per stage: GPUs of each job on a cluster, one process (CPU or GPU) locally."""
    scheduler = spec.scheduler
    local = scheduler.kind == "local"
    devices = {"pretrain_s": 1 if local else max(1, scheduler.gpus_per_node),
               "evaluate_s": 1 if local else max(1, scheduler.evaluation_gpus)}
    out = {"data": round(timings.get("data_s", 0.0) / 3600, 4)}
    for stage, per_device in devices.items():
        seconds = sum(timings.get(stage, {}).values())
        out[stage[:-2]] = round(seconds * per_device / 3600, 4)
    out["unit"] = "GPU-hours" if not local and scheduler.gpus_per_node else "process-hours (CPU or one GPU)"
    return out


_NUMERIC = re.compile(r"[-+]?[\d.,]+(e[-+]?\d+)?( ± [\d.]+)?( \([a-z ]+\))?[†]*|<0\.0001|\[[-\d., ]+\]")


def _md_table_to_html(lines: list[str]) -> str:
    rows = [line.strip("|").split(" | ") for line in lines if not set(line) <= set("|-")]
    out = ["<table>"]
    for index, row in enumerate(rows):
        tag = "th" if index == 0 else "td"
        cells = []
        for value in row:
            value = value.strip()
            bold = value.startswith("**")
            text = html.escape(value.replace("**", ""))
            numeric = tag == "td" and _NUMERIC.fullmatch(value.replace("**", "").strip()) is not None
            opening = f'<{tag} class="num">' if numeric else f"<{tag}>"
            cells.append(f"{opening}{'<b>' + text + '</b>' if bold else text}</{tag}>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join(out + ["</table>"])


def _html(spec, intro, table, lr_lines, sig_lines, figures, provenance, seed_lines, card, finding_lines,
          overview: dict) -> str:
    verdicts = "".join(f"<li>{html.escape(v.replace('**', ''))}</li>" for v in overview["verdicts"])
    regime = f"<h2>Pretraining regime</h2>{_md_table_to_html(overview['regime'])}" if overview["regime"] else ""
    held = (f"<h2>Held-out items</h2><p>{html.escape(overview['held_intro'])}</p><div id=\"held-out\">"
            f"{_md_table_to_html(overview['held'])}</div>") if overview["held"] else ""
    images = "\n".join(f'<h2>{html.escape(t)}</h2><img alt="{html.escape(t)}" src="data:image/png;base64,{png}">'
                       for t, png in figures.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(spec.name)} - encoderlab report</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse;margin:1em 0}}th,td{{border:1px solid #bbb;padding:4px 8px;text-align:left}}
td.num{{text-align:right;white-space:nowrap}}img{{max-width:100%}}pre{{background:#f4f4f4;padding:1em;overflow:auto}}</style>
</head><body>
<h1 id="title">{html.escape(spec.name)}</h1>
<p>{html.escape(spec.description)}</p>
<h2>Summary</h2>
<p>{html.escape(intro)}</p>
<div id="results">{_md_table_to_html(table.splitlines())}</div>
<ul id="verdicts">{verdicts}</ul>
{regime}
{held}
<h2>Score per fine-tuning LR (selected LR in bold)</h2>{_md_table_to_html(lr_lines)}
<h2>Per-seed scores and stability across the LR grid (Fig. 5)</h2><div id="stability">{_md_table_to_html(seed_lines)}</div>
<h2>Paired comparisons</h2>{_md_table_to_html(sig_lines) if sig_lines else "<p>(none)</p>"}
<h2>Paper findings</h2><p>{html.escape(FINDINGS_INTRO.replace("**", ""))}</p>
<div id="findings">{_md_table_to_html(finding_lines) if finding_lines else "<p>(none testable)</p>"}</div>
{images}
<h2>Protocol</h2><div id="protocol">{_md_table_to_html(card)}</div>
<h2>Provenance</h2><pre>{html.escape(json.dumps(provenance, indent=2))}</pre>
</body></html>
"""
