"""``encoderlab pretrain`` (a run from a preset, a YAML file or a run directory; resumable) and
``encoderlab smoke`` (a few steps of a small model on a learnable synthetic stream, both attention
modes: a check that the model and the machine train)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from encoderlab.config import ConfigError
from encoderlab.threads import add_threads_argument
from encoderlab.validate import NONNEGATIVE_INT, POSITIVE_INT, POSITIVE_NUMBER
from encoderlab.cli.model import model_config


def add_parsers(commands) -> None:
    pre = commands.add_parser("pretrain", help="pretrain a model (CLM, MLM, CLM->MLM, CPT) from a preset or YAML")
    pre.add_argument("config", nargs="?", help="run preset (see --list), YAML file, or with --resume a run directory")
    pre.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. schedule.lr=1e-3")
    pre.add_argument("--list", action="store_true", help="list the run presets")
    pre.add_argument("--resume", action="store_true",
                     help="continue from the run's latest checkpoint (a run directory: that run, wherever it lies)")
    pre.add_argument("--overwrite", action="store_true",
                     help="replace an existing run in the output directory (its checkpoints, metrics and config)")
    pre.add_argument("--output", help="run directory (default runs/<name>)")
    pre.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_threads_argument(pre)
    pre.set_defaults(func=cmd_pretrain)

    smoke = commands.add_parser("smoke", help="a short training run of a small model on random packed tokens")
    smoke.add_argument("--preset", default="mini")
    smoke.add_argument("--set", action="append", metavar="KEY=VALUE")
    smoke.add_argument("--steps", type=POSITIVE_INT, default=40)
    smoke.add_argument("--batch-size", type=POSITIVE_INT, default=8)
    smoke.add_argument("--seq-len", type=POSITIVE_INT, default=128)
    smoke.add_argument("--lr", type=POSITIVE_NUMBER, default=2e-3)
    smoke.add_argument("--seed", type=NONNEGATIVE_INT, default=0)
    add_threads_argument(smoke)
    smoke.set_defaults(func=cmd_smoke)


def cmd_pretrain(args: argparse.Namespace) -> int:
    from encoderlab.training import RUN_PRESETS, load_pretrain_config, pretrain, run_preset  # start-up: loads torch

    if args.list:
        print(f"{'preset':<32} {'model':<6} {'steps':>7}  phases")
        for name in RUN_PRESETS:
            config = run_preset(name)
            phases = " -> ".join(f"{p.label} {p.steps}" for p in config.phases)
            origin = f"  (from {config.init_from or config.branch_from})" if config.init_from or config.branch_from else ""
            print(f"{name:<32} {config.model.name:<6} {config.total_steps:>7}  {phases}{origin}")
        return 0
    if not args.config:
        raise ConfigError("pretrain: give a run preset or a YAML file (see `encoderlab pretrain --list`)")
    if args.resume and args.overwrite:
        raise ConfigError("pretrain: --resume and --overwrite are exclusive (continue a run, or replace it)")
    spec, overrides = args.config, list(args.overrides)
    output = args.output
    path = Path(spec)
    if path.is_dir() and (path / "config.yaml").is_file():
        # A run directory is the run itself, wherever it now lies (copied, moved, another cwd): its
        # resolved config, with this directory as the output (not the output_dir recorded in it).
        if not args.resume:
            raise ConfigError(f"{path}: is a run directory; continue it with `encoderlab pretrain {path} --resume`, "
                              "or start a run from a preset or YAML file")
        if output and Path(output).resolve() != path.resolve():
            raise ConfigError(f"pretrain: --resume {path} continues the run in {path}; --output {output} names "
                              "another directory (copy the run there and resume that copy instead)")
        spec, output = str(path / "config.yaml"), str(path)
    elif path.is_dir() and args.resume and spec not in RUN_PRESETS:
        raise ConfigError(f"{path}: not a run directory (no config.yaml); --resume takes a run directory "
                          "(runs/<name>), a run preset or a YAML file")
    config = load_pretrain_config(spec, overrides)
    if output:
        from encoderlab.training import PretrainConfig  # start-up: loads torch

        config = PretrainConfig.from_dict({**config.to_dict(), "output_dir": output}, where=f"--output {output}")
    final = pretrain(config, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun only the first process reports
        print(f"final checkpoint: {final}")
    return 0


def cmd_smoke(args: argparse.Namespace) -> int:
    """A short run of a small model on the synthetic learnable stream through the one trainer
    (``encoderlab.training``): half the steps CLM (causal attention), half MLM-40 (bidirectional),
    in a temporary run directory; it fails unless the loss falls in both."""
    import json
    import tempfile

    from encoderlab.training import PretrainConfig, pretrain  # start-up: loads torch

    model = model_config(args.preset, args.set)
    if args.steps < 2:
        raise ConfigError(f"smoke --steps {args.steps}: expected at least 2 (one CLM step and one MLM step)")
    clm_steps = args.steps // 2
    phases = [{"objective": "clm", "steps": clm_steps}, {"objective": "mlm", "mask_ratio": 0.4,
                                                         "steps": args.steps - clm_steps}]
    with tempfile.TemporaryDirectory(prefix="encoderlab-smoke-") as folder:
        config = PretrainConfig.from_dict({
            "name": f"smoke-{model.name}", "output_dir": folder, "seed": args.seed,
            "model": {**model.to_dict(), "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, "mask_token_id": 3},
            "phases": phases, "global_batch_tokens": args.batch_size * args.seq_len,
            "micro_batch_size": args.batch_size, "data": {"source": "synthetic", "seq_len": args.seq_len},
            "schedule": {"lr": args.lr, "warmup_steps": 1, "decay_steps": 1}, "checkpoint_every": args.steps,
            "log_every": 1,
        }, where="smoke")
        print(f"smoke run: preset {model.name}, {clm_steps} CLM steps (causal attention) then "
              f"{args.steps - clm_steps} MLM-40 steps (bidirectional) of {args.batch_size}x{args.seq_len} packed "
              "synthetic tokens")
        started = time.perf_counter()
        pretrain(config, progress=False)
        elapsed = time.perf_counter() - started
        records = [json.loads(line) for line in (Path(folder) / "metrics.jsonl").read_text().splitlines()]
    failed = []
    for mode, phase in zip(("causal", "bidirectional"), config.phases):
        losses = [r["loss"] for r in records if r["phase"] == phase.label]
        print(f"{mode}: loss {losses[0]:.3f} -> {losses[-1]:.3f} over {len(losses)} steps")
        if not losses[-1] < losses[0]:
            failed.append(mode)
    tokens = args.steps * args.batch_size * args.seq_len
    print(f"{tokens} tokens in {elapsed:.1f}s ({tokens / elapsed:,.0f} tokens/s on this machine)")
    if failed:
        print(f"smoke run FAILED: loss did not decrease for {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
