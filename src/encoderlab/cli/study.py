"""``encoderlab study run|status``, ``encoderlab report`` and ``encoderlab demo``: a study's
pretraining runs, evaluation grid and report (study/), and the paper findings printed at the end."""

from __future__ import annotations

import argparse
import json
import time

from encoderlab.cli.common import show_help
from encoderlab.config import ConfigError
from encoderlab.threads import add_threads_argument, workers_argument


def add_parsers(commands) -> None:
    study = commands.add_parser("study", help="run a study (pretraining + evaluation + report) or show its status")
    study_commands = study.add_subparsers(dest="study_command", metavar="SUBCOMMAND")
    for verb, func, text in (("run", cmd_study_run, "run (or resume) a study"),
                             ("status", cmd_study_status, "what is done, running or missing")):
        sub = study_commands.add_parser(verb, help=text)
        sub.add_argument("spec", help="study YAML file or built-in study name (e.g. toyworld-demo)")
        sub.add_argument("--output", help="study directory (default studies/<name>)")
        sub.add_argument("--no-progress", action="store_true")
        if verb == "run":
            _add_execution_arguments(sub)
            sub.add_argument("--dry-run", action="store_true",
                             help="validate and list every run with its steps, tokens and projected device-hours; "
                                  "run nothing")
            sub.add_argument("--json", action="store_true", help="with --dry-run: print the plan as one JSON object")
            sub.add_argument("--throughput", metavar="FILE",
                             help="with --dry-run: a benchmarks/pretrain_throughput.py output (throughput.json or "
                                  ".jsonl) whose rows replace the shipped H100 figures")
        sub.set_defaults(func=func)
    show_help(study)
    rep_parser = commands.add_parser("report", help="write a study's report (HTML + Markdown) from its results")
    rep_parser.add_argument("spec")
    rep_parser.add_argument("--output", help="study directory (default studies/<name>)")
    rep_parser.set_defaults(func=cmd_report)
    demo = commands.add_parser("demo", help="the toyworld study end to end, offline, on a CPU")
    demo.add_argument("--output", help="study directory (default studies/toyworld-demo)")
    demo.add_argument("--no-progress", action="store_true")
    _add_execution_arguments(demo)
    demo.set_defaults(func=cmd_demo)


def _add_execution_arguments(parser) -> None:
    parser.add_argument("--workers", type=workers_argument, metavar="N",
                        help="local jobs side by side (default: the spec's scheduler.workers; 'auto': the usable "
                             "cores); see encoderlab.threads")
    add_threads_argument(parser, "torch threads per job (default: usable cores / workers, so 1 when the jobs fill "
                                 "the cores)")


def cmd_study_run(args: argparse.Namespace) -> int:
    from encoderlab.study import load_study, run_study  # start-up: loads torch

    spec = load_study(args.spec, args.output)
    if getattr(args, "dry_run", False):
        from encoderlab.study.runner import plan_study  # start-up: loads torch

        plan = plan_study(spec, throughput=getattr(args, "throughput", None))
        if getattr(args, "json", False):
            print(json.dumps(plan, indent=2))
            return 0
        hours = lambda h: "n/a" if h is None else f"{h:,.1f}"  # noqa: E731
        for run in plan["pretraining_runs"]:
            branch = f", branch at step {run['branch_from_step']}" if run.get("branch_from_step") else ""
            print(f"pretrain {run['run']:<34} {run['preset']:<28} {run['steps']:>6} steps{branch}  {run['phases']}  "
                  f"{_tokens(run['tokens'])} tokens  {hours(run['device_hours'])} {plan['device']}-hours  "
                  f"({run['checkpoints']} checkpoint(s) evaluated)")
        print(f"pretraining: {len(plan['pretraining_runs'])} runs, {plan['pretraining_steps']:,} optimizer steps "
              f"(branches counted once), {_tokens(plan['pretraining_tokens'])} real tokens, "
              f"{hours(plan['device_hours'])} {plan['device']}-hours projected ({plan['throughput_source']})")
        print(f"fine-tuning: {plan['checkpoints']} checkpoints x {plan['finetuning_runs_per_checkpoint']} runs "
              f"({len(spec.evaluation.tasks)} tasks x {len(spec.evaluation.lrs)} LRs x {len(spec.evaluation.seeds)} "
              f"seeds) = {plan['finetuning_runs']:,} fine-tuning runs")
        _print_evaluation_cost(plan, hours)
        return 0
    started = time.perf_counter()
    report = run_study(spec, progress=not args.no_progress, workers=args.workers, threads=args.threads)
    print(f"study {spec.name} finished in {time.perf_counter() - started:.0f}s; report: {report}")
    _print_findings(spec.study_dir / "summary.json")
    return 0


def _tokens(count: float) -> str:
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if count >= scale:
            return f"{count / scale:,.1f}{unit}"
    return f"{count:,.0f}"


def _print_evaluation_cost(plan: dict, hours) -> None:
    """The evaluation's price per checkpoint and task, the study's total, and what the estimate assumes."""
    evaluation, device = plan["evaluation"], plan["device"]
    shown = []  # the per-task lines once per distinct checkpoint cost (runs of one preset share it)
    for run in evaluation["runs"]:
        cost = run["per_checkpoint"]
        print(f"evaluate {run['run']:<34} per checkpoint: {cost['finetuning_runs']} runs ({cost['trainings']} "
              f"trainings), {_tokens(cost['training_tokens'])} training + {_tokens(cost['evaluation_tokens'])} "
              f"evaluation tokens, {cost['corpus_passes']} corpus passes, {hours(cost['device_hours'])} {device}-hours "
              f"x {run['checkpoints']} checkpoint(s)")
        if cost in shown:
            continue
        shown.append(cost)
        for task, row in cost["per_task"].items():
            print(f"    {task:<16} {row['runs']:>4} runs  {_tokens(row['training_tokens']):>7} train  "
                  f"{_tokens(row['evaluation_tokens']):>7} eval  {row['corpus_passes']:>3} corpus passes  "
                  f"{hours(row['device_hours'])} {device}-hours")
    print(f"evaluation: {evaluation['finetuning_runs']:,} fine-tuning runs ({evaluation['trainings']:,} trainings), "
          f"{evaluation['corpus_passes']:,} corpus passes, {_tokens(evaluation['evaluation_tokens'])} evaluation "
          f"tokens, {hours(evaluation['device_hours'])} {device}-hours projected")
    print(f"study: {hours(plan['device_hours'])} pretraining + {hours(plan['evaluation_device_hours'])} evaluation = "
          f"{hours(plan['total_device_hours'])} {device}-hours ({evaluation['cost_model']}; task sizes in --json)")


def _print_findings(summary_path) -> None:
    """The scores table and the verdicts of the report, in the terminal (the report has the details)."""
    import math

    from encoderlab.study.overview import summary_lines  # start-up: loads torch

    document = json.loads(summary_path.read_text())
    models, tasks = document.get("models") or {}, []
    for rows in models.values():
        tasks += [t for t in rows if t not in tasks]
    if models:
        width = max(len(m) for m in models) + 2
        print("test scores (x100) at the selected LR, mean over seeds ± 95% CI half-width "
              "[held-out items, where marked]:")
        print(" " * width + "".join(f"{t:>26}" for t in tasks))
        for model, rows in models.items():
            cells = []
            for task in tasks:
                row = rows.get(task) or {}
                if row.get("mean") is None:
                    cells.append(f"{'diverged' if row.get('all_diverged') else '':>26}")
                    continue
                half = (row["ci_high"] - row["ci_low"]) / 2 if row.get("ci_low") is not None else math.nan
                held = ((document.get("held_out") or {}).get(model) or {}).get(task, {}).get("held_out", {})
                text = f"{row['mean']:.1f} ± {half:.1f}" + (f" [{held['mean']:.1f}]" if held.get("mean") is not None
                                                             else "")
                cells.append(f"{text:>26}")
            print(f"{model:<{width}}" + "".join(cells))
    findings = document.get("findings") or []
    if findings:
        print("paper findings (one test over fine-tuning seeds and test items; verdicts from Holm-adjusted p):")
    for line in summary_lines(findings):
        print("  " + line.replace("**", ""))


def cmd_study_status(args: argparse.Namespace) -> int:
    from encoderlab.study import load_study, study_status  # start-up: loads torch

    for row in study_status(load_study(args.spec, args.output)):
        print("  ".join(f"{k}={v}" for k, v in row.items()))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from encoderlab.study import load_study  # start-up: loads torch
    from encoderlab.study.plan import StudyPlan, study_shards  # start-up: loads torch
    from encoderlab.study.report import write_report  # start-up: loads torch

    spec = load_study(args.spec, args.output)
    if not (spec.study_dir / "results.sqlite").is_file():
        raise ConfigError(f"{spec.study_dir}: study {spec.name!r} has no results yet (run `encoderlab study run "
                          f"{args.spec}` first); nothing written")
    print(f"report: {write_report(StudyPlan.resolve(spec, study_shards(spec)))}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    args.spec = "toyworld-demo"
    return cmd_study_run(args)
