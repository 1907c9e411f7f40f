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
    from encoderlab.training import RUN_PRESETS, load_pretrain_config, pretrain, run_preset

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
        from encoderlab.training import PretrainConfig

        config = PretrainConfig.from_dict({**config.to_dict(), "output_dir": output}, where=f"--output {output}")
    final = pretrain(config, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun only the first process reports
        print(f"final checkpoint: {final}")
    return 0


def cmd_smoke(args: argparse.Namespace) -> int:
    """A short training run of a small model on random packed tokens, in both attention modes."""
    import torch

    from encoderlab.cli.model import model_config
    from encoderlab.model import build_encoder, document_ids_from_lengths

    config = model_config(args.preset, args.set)
    torch.manual_seed(args.seed)
    model = build_encoder(config, seed=args.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), eps=1e-5, weight_decay=0.1)
    seq_len, batch = args.seq_len, args.batch_size
    # A learnable synthetic stream: each document walks x -> (5x + 3) mod 64 from a random start.
    alphabet = min(64, config.vocab_size - 1)
    generator = torch.Generator().manual_seed(args.seed)
    print(f"smoke run: preset {config.name} ({model.num_parameters() / 1e6:.2f}M parameters), "
          f"{args.steps} steps of {batch}x{seq_len} packed tokens, alternating causal and bidirectional attention")
    start = time.perf_counter()
    losses = {"causal": [], "bidirectional": []}
    for step in range(args.steps):
        half = seq_len // 2
        lengths = [[half, seq_len - half] for _ in range(batch)]
        walk = torch.empty(batch, seq_len, dtype=torch.long)
        walk[:, 0] = torch.randint(0, alphabet, (batch,), generator=generator)
        walk[:, half] = torch.randint(0, alphabet, (batch,), generator=generator)
        for t in range(1, seq_len):
            if t != half:
                walk[:, t] = (5 * walk[:, t - 1] + 3) % alphabet
        tokens = walk
        document_ids = document_ids_from_lengths(lengths, seq_len)
        mode = "causal" if step % 2 == 0 else "bidirectional"
        if mode == "causal":
            out = model(tokens, attention=mode, document_ids=document_ids, logits_at="all")
            loss = torch.nn.functional.cross_entropy(out.logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten())
        else:
            selected = torch.rand(tokens.shape, generator=generator) < 0.3
            corrupted = tokens.masked_fill(selected, config.vocab_size - 1)
            out = model(corrupted, attention=mode, document_ids=document_ids, logits_at=selected)
            loss = torch.nn.functional.cross_entropy(out.logits, tokens[selected])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses[mode].append(loss.item())
        if step % max(1, args.steps // 10) == 0 or step == args.steps - 1:
            print(f"  step {step:4d}  {mode:<13}  loss {loss.item():.3f}")
    elapsed = time.perf_counter() - start
    tokens_seen = args.steps * batch * seq_len
    for mode, values in losses.items():
        print(f"{mode}: loss {values[0]:.3f} -> {values[-1]:.3f}")
    print(f"{tokens_seen} tokens in {elapsed:.1f}s ({tokens_seen / elapsed:,.0f} tokens/s on this machine)")
    failed = [mode for mode, values in losses.items() if not values[-1] < values[0]]
    if failed:
        print(f"smoke run FAILED: loss did not decrease for {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
