"""``encoderlab evaluate``: fine-tune and evaluate a model over tasks x LRs x seeds under one
protocol, resumable. The flags become one :class:`~encoderlab.evaluation.job.EvaluationJob`;
``--job FILE`` runs a job resolved elsewhere (a study's evaluation job) exactly as it was written."""

from __future__ import annotations

import argparse
import dataclasses

from encoderlab.config import ConfigError
from encoderlab.threads import add_threads_argument, resolve, workers_argument
from encoderlab.validate import POSITIVE_INT, parse_grid, unique
from encoderlab.evaluation.protocol import FinetuneConfig, protocol_card, protocol_id
from encoderlab.evaluation.store import ResultsStore, model_fingerprint

# the options that choose what is evaluated and how: given with --job, they would be silently ignored
_JOB_OPTIONS = ("model", "tasks", "lrs", "seeds", "data", "max_steps", "batch_size", "max_length", "max_eval_examples",
                "attention", "set", "trust_remote_code")


def add_parsers(commands) -> None:
    ev = commands.add_parser("evaluate", help="fine-tune and evaluate a model over tasks x LRs x seeds (resumable)")
    ev.add_argument("model", nargs="?",
                    help="encoderlab checkpoint or local transformers model directory (with tokenizer)")
    ev.add_argument("--job", metavar="FILE", help="run a resolved evaluation job (YAML written by a study) instead "
                                                  "of the options below")
    ev.add_argument("--tasks", help="comma list (default: the toyworld tasks); see encoderlab.evaluation.tasks")
    ev.add_argument("--lrs", help="comma list (default: the paper's 1e-5 ... 5e-4)")
    ev.add_argument("--seeds", help="comma list (default: 0,1,2,3,4)")
    ev.add_argument("--results", help="SQLite results database (default results.sqlite; runs already there are "
                                      "skipped)")
    ev.add_argument("--data", action="append", metavar="TASK=DIR", help="read a task from local files")
    ev.add_argument("--max-steps", type=POSITIVE_INT, help="at most this many steps or one epoch (default 1000; TC: one epoch)")
    ev.add_argument("--batch-size", type=POSITIVE_INT, help="default 32")
    ev.add_argument("--max-length", type=POSITIVE_INT, help="tokens per input (default 2048, capped at the model's positions)")
    ev.add_argument("--max-eval-examples", type=POSITIVE_INT, default=None, help="cap validation/test sizes (smoke runs)")
    ev.add_argument("--attention", choices=("bidirectional", "causal"),
                    help="default bidirectional (the protocol); causal is recorded with every run and shown in reports")
    ev.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="any protocol setting, e.g. adam_beta2=0.999, attention=causal, query_prefix='' "
                         "(see encoderlab.evaluation.protocol.FinetuneConfig)")
    ev.add_argument("--workers", type=workers_argument, default=None,
                    help="fine-tuning runs at a time, each in its own process (default 1; 'auto': the usable cores, "
                         "one thread each); never changes which runs are done or how they are keyed")
    ev.add_argument("--corpus-cache", metavar="DIR",
                    help="where retrieval corpora are kept tokenized, for every run and later sweeps (default: "
                         "corpus-cache beside the results database)")
    ev.add_argument("--trust-remote-code", action="store_true", help="allow custom model code from the model dir")
    ev.add_argument("--no-progress", action="store_true")
    add_threads_argument(ev, "torch threads per fine-tuning process (default: usable cores / workers)")
    ev.set_defaults(func=cmd_evaluate)


def parse_data_dirs(items: list[str] | None, where: str = "--data") -> dict[str, str]:
    """``TASK=DIR`` items as {task: dir}; a task given twice is refused."""
    local_dirs: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"{where} {item!r}: expected TASK=DIRECTORY")
        task, directory = item.split("=", 1)
        if task in local_dirs:
            raise ConfigError(f"{where} {item!r}: task {task!r} is given twice ({local_dirs[task]} and {directory})")
        local_dirs[task] = directory
    return local_dirs


def job_from_args(args: argparse.Namespace):
    """The evaluation job of ``encoderlab evaluate``'s options, every one checked."""
    from encoderlab.evaluation.job import EvaluationJob  # start-up: loads torch
    from encoderlab.evaluation.sweep import PAPER_LRS, PAPER_SEEDS  # start-up: loads torch
    from encoderlab.evaluation.tasks import TOYWORLD_TASKS  # start-up: loads torch

    if not args.model:
        raise ConfigError("evaluate: give a model directory, or --job FILE")
    tasks = [t.strip() for t in args.tasks.split(",")] if args.tasks is not None else list(TOYWORLD_TASKS)
    if not all(tasks):
        raise ConfigError(f"evaluate --tasks {args.tasks!r}: expected a comma list of task names")
    unique(tasks, "evaluate --tasks")
    lrs, seeds = parse_grid(args.lrs, args.seeds, PAPER_LRS, PAPER_SEEDS, "evaluate")
    finetune = FinetuneConfig.build({"max_steps": args.max_steps, "batch_size": args.batch_size,
                                     "max_length": args.max_length, "max_eval_examples": args.max_eval_examples,
                                     "attention": args.attention}, args.set)
    policy = resolve(args.workers if args.workers is not None else 1, args.threads)
    return EvaluationJob(checkpoint=args.model, tasks=tasks, lrs=lrs, seeds=seeds,
                         results=args.results or "results.sqlite", finetune=finetune,
                         data=parse_data_dirs(args.data), workers=policy.workers, threads=policy.threads,
                         trust_remote_code=args.trust_remote_code, corpus_cache=args.corpus_cache)


def _job_from_file(args: argparse.Namespace):
    from encoderlab.evaluation.job import EvaluationJob  # start-up: loads torch

    given = [f"--{name.replace('_', '-')}" if name != "model" else "MODEL" for name in _JOB_OPTIONS
             if getattr(args, name) not in (None, False)]
    if args.results is not None:
        given.append("--results")
    if given:
        raise ConfigError(f"evaluate --job {args.job}: the job file says what to evaluate; {', '.join(given)} "
                          "would be ignored (drop them, or leave out --job)")
    job = EvaluationJob.load(args.job)
    changes = {}
    if args.workers is not None or args.threads is not None:  # how the work is spread: never a result
        policy = resolve(args.workers if args.workers is not None else job.workers,
                         args.threads if args.threads is not None else job.threads)
        changes = {"workers": policy.workers, "threads": policy.threads}
    return dataclasses.replace(job, **changes)


def cmd_evaluate(args: argparse.Namespace) -> int:
    job = _job_from_file(args) if args.job else job_from_args(args)
    rows = job.run(progress=not args.no_progress)
    print_sweep(job, rows)
    return 0


def print_sweep(job, rows: list[dict]) -> None:
    """The sweep's summary: the table with CIs, stability, the protocol card, data fingerprints, and
    how many runs of the same model in the database were made otherwise (not part of the summary)."""
    # start-up: loads torch
    from encoderlab.evaluation.sweep import format_stability, format_table, other_groups, sweep_protocol

    identity = sweep_protocol(job.finetune)
    print(format_table(rows))
    print("\nStability across the LR grid and seeds (test scores):\n" + format_stability(rows))
    print("\nProtocol:\n" + "\n".join(protocol_card(identity, job.lrs, job.seeds)))
    data = {r["task"]: r["data"] for r in rows if r.get("data")}
    if data:
        print("\ndata fingerprints: " + ", ".join(f"{k} {v}" for k, v in data.items()))
    with ResultsStore(job.results) as store:
        others = other_groups(store, model_fingerprint(job.checkpoint), list(data), protocol_id(identity), data)
    if others:
        print(f"note: {others} other run(s) of this model and these tasks in {job.results} were made under another "
              "protocol or other data; they are not part of this summary")
    print(f"results: {job.results}")
