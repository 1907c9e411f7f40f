"""The study report: what the study's results say, gathered once from its results database and
plan, then tabled (``report_tables.py``), drawn (``report_figures.py``) and rendered as Markdown and
a self-contained HTML page (``report_render.py``); the paper's findings are tested in
``findings.py``, and every report also writes ``summary.json`` (``summary.py``).

Tables in the paper's form (per task and per category: test mean with its 95% CI over seeds at
the LR selected on validation; best in bold; significance marks from the inference procedure over
seeds and items, Holm-corrected), figures, the findings, and provenance (spec, versions, hardware,
wall time per stage).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import encoderlab
from encoderlab.evaluation.protocol import protocol_card, protocol_identity, settings_of
from encoderlab.evaluation.stats import category_summary, stability, summarize
from encoderlab.evaluation.store import ResultsStore, model_fingerprint
from encoderlab.evaluation.sweep import run_scores
from encoderlab.evaluation.tasks import get_task
from encoderlab.io import atomic_write_text
from encoderlab.study.findings import evaluate_findings, findings_lines, paper_regime
from encoderlab.study.overview import (held_out_lines, held_out_scores, machine_provenance,
                                       regime_lines, regime_of, significance, significance_lines, summary_lines)
from encoderlab.study.plan import StudyPlan
from encoderlab.study.report_figures import report_figures
from encoderlab.study.report_render import ReportParts, render_html, render_markdown
from encoderlab.study.report_tables import lr_table, main_table, seed_table
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
            # a phase with an option past the paper (a ratio schedule, frozen weights) is not the paper's kind
            # of phase: marked, so the paper's findings never take such a model for their MLM or CLM model
            "objectives": [p.objective if p.mask_ratio_end is None and not p.freeze else f"{p.objective}+options"
                           for p in config.phases], "random_init": False,
            # steps x batch tokens, the parent's too for continued pretraining (a branch's steps count from 0)
            "pretraining_tokens": ref.step * config.global_batch_tokens
            + (configs[parent].total_steps * configs[parent].global_batch_tokens if parent else 0),
            "parameters": params,
        }
    return facts


def write_report(plan: StudyPlan, timings: dict | None = None) -> Path:
    """Writes ``report.md``, ``report.html`` and ``summary.json`` of the study from its results
    database; returns the HTML report's path."""
    spec = plan.spec
    results, seen = _collect(plan)
    models = list(results)
    tasks = [t for t in spec.evaluation.tasks if any(t in results[m] for m in models)]
    categories = sorted({get_task(t).category for t in tasks}, key=_category_order)
    tests = significance(spec.comparisons, spec.evaluation.tasks, results)
    category_rows = _category_rows(spec, results)
    facts = _run_facts(plan) if models else {}
    findings = evaluate_findings(results, facts, tasks)
    identity = protocol_identity(spec.evaluation.finetune_config(), " / ".join(sorted(seen["precisions"])) or "none yet")
    card = protocol_card(identity, spec.evaluation.lrs, spec.evaluation.seeds)
    if seen["other_protocol_runs"]:
        card.append(f"| excluded | {seen['other_protocol_runs']} run(s) in the database made under another protocol |")
    held = held_out_scores(results)
    paper = paper_regime()
    provenance = _provenance(spec, identity, timings or {})
    parts = ReportParts(
        name=spec.name, description=spec.description, seeds=len(spec.evaluation.seeds),
        table=main_table(models, tasks, categories, results, category_rows, tests, facts),
        verdicts=summary_lines(findings),
        regime=regime_lines({m: facts[m] for m in models if m in facts}, paper) if facts else [],
        held=held_out_lines(held, tasks) if held else [],
        lr_lines=lr_table(models, results, spec.evaluation.lrs), seed_lines=seed_table(models, results),
        sig_lines=significance_lines(tests) if tests else [],
        finding_lines=findings_lines(findings) if findings else [],
        figures=report_figures(models, tasks, categories, results, category_rows, facts),
        card=card, provenance=provenance)
    atomic_write_text(spec.study_dir / "report.md", render_markdown(parts))
    out_html = spec.study_dir / "report.html"
    atomic_write_text(out_html, render_html(parts))
    write_summary(spec, results, category_rows, findings, identity,
                  extra={"held_out": held, "provenance": provenance, "paper_regime": paper,
                         "regime": {m: regime_of(facts[m]) for m in models if m in facts}})
    return out_html


def _category_order(category: str) -> tuple:
    """The paper's order (SC, TC, QA, IR), then any other task type's category by name."""
    known = ["SC", "TC", "QA", "IR"]
    return (known.index(category), "") if category in known else (len(known), category)


def _provenance(spec: StudySpec, identity: dict, timings: dict) -> dict:
    return {
        "study": spec.name, "encoderlab": encoderlab.__version__, **machine_provenance(),
        "execution": timings.get("execution"),
        "evaluation": {"tasks": spec.evaluation.tasks, "lrs": spec.evaluation.lrs, "seeds": spec.evaluation.seeds,
                       "protocol": identity},
        "runs": [{"name": r.name, "preset": r.preset, "overrides": r.overrides,
                  **{key: asdict(start) for key, start in r.starts().items()}} for r in spec.runs],
        "wall_seconds": timings,
        "device_hours": _device_hours(spec, timings),
    }


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


