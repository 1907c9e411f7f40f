"""The ``encoderlab`` command line."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

from encoderlab import __version__
from encoderlab.config import ConfigError
from encoderlab.threads import add_threads_argument, workers_argument
from encoderlab.validate import NONNEGATIVE_INT, POSITIVE_INT, POSITIVE_NUMBER, parse_grid, unique


def cmd_export(args: argparse.Namespace) -> int:
    from encoderlab.model import export_hf

    out = export_hf(args.checkpoint, args.output, args.target, tokenizer_dir=args.tokenizer, overwrite=args.overwrite)
    print(f"exported {args.checkpoint} as {args.target} to {out}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from encoderlab.model import import_hf

    model = import_hf(args.hf_dir, args.output, mask_token_id=args.mask_token_id, overwrite=args.overwrite)
    print(f"imported {args.hf_dir} ({model.num_parameters() / 1e6:.1f}M parameters) to {args.output}")
    return 0


def cmd_smoke(args: argparse.Namespace) -> int:
    """A short training run of a small model on random packed tokens, in both attention modes."""
    import torch

    from encoderlab.cli_model import model_config
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


def finetune_config_from_args(args: argparse.Namespace):
    """The fine-tuning protocol: the paper's defaults, the flags, then ``--set KEY=VALUE`` for any setting."""
    import yaml

    from encoderlab.config import from_dict
    from encoderlab.evaluation.finetune import FinetuneConfig

    values = {"max_steps": args.max_steps, "batch_size": args.batch_size, "max_length": args.max_length,
              "max_eval_examples": args.max_eval_examples, "attention": args.attention}
    values = {k: v for k, v in values.items() if v is not None}
    strings = {f.name for f in dataclasses.fields(FinetuneConfig) if f.type in (str, "str")}
    given: set[str] = set()
    for item in args.set or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE (e.g. --set adam_beta2=0.999)")
        key, raw = item.split("=", 1)
        key = key.strip()
        if key in given or key in values:
            raise ConfigError(f"--set {item!r}: {key} is set twice on this command line (by a flag or another "
                              "--set); keep one")
        given.add(key)
        textual = key in strings and not raw.strip().startswith(("'", '"'))
        values[key] = raw if textual or not raw.strip() else yaml.safe_load(raw)  # prefixes keep ': ' and spaces
    return from_dict(FinetuneConfig, values, where="fine-tuning protocol")


def _sweep_execution(args: argparse.Namespace) -> dict:
    """``workers`` and threads per worker of an evaluate sweep (encoderlab.threads; cpt --evaluate
    passes neither)."""
    from encoderlab.threads import resolve

    policy = resolve(getattr(args, "workers", 1), getattr(args, "threads", None))
    return {"workers": policy.workers, "threads": policy.threads}


def cmd_evaluate(args: argparse.Namespace) -> int:
    from encoderlab.evaluation.protocol import protocol_card, protocol_id
    from encoderlab.evaluation.store import ResultsStore, model_fingerprint
    from encoderlab.evaluation.sweep import (PAPER_LRS, PAPER_SEEDS, format_stability, format_table, other_groups,
                                             run_sweep, sweep_protocol)
    from encoderlab.evaluation.tasks import TOYWORLD_TASKS

    tasks = [t.strip() for t in args.tasks.split(",")] if args.tasks is not None else list(TOYWORLD_TASKS)
    if not all(tasks):
        raise ConfigError(f"evaluate --tasks {args.tasks!r}: expected a comma list of task names")
    unique(tasks, "evaluate --tasks")
    lrs, seeds = parse_grid(args.lrs, args.seeds, PAPER_LRS, PAPER_SEEDS, "evaluate")
    local_dirs = {}
    for item in args.data or []:
        if "=" not in item:
            raise ConfigError(f"--data {item!r}: expected TASK=DIRECTORY")
        task, directory = item.split("=", 1)
        if task in local_dirs:
            raise ConfigError(f"--data {item!r}: task {task!r} is given twice ({local_dirs[task]} and {directory})")
        local_dirs[task] = directory
    config = finetune_config_from_args(args)
    rows = run_sweep(args.model, tasks, lrs, seeds, args.results, config, local_dirs=local_dirs,
                     progress=not args.no_progress, trust_remote_code=args.trust_remote_code,
                     **_sweep_execution(args))
    identity = sweep_protocol(config)
    print(format_table(rows))
    print("\nStability across the LR grid and seeds (test scores):\n" + format_stability(rows))
    print("\nProtocol:\n" + "\n".join(protocol_card(identity, lrs, seeds)))
    data = {r["task"]: r["data"] for r in rows if r.get("data")}
    if data:
        print("\ndata fingerprints: " + ", ".join(f"{k} {v}" for k, v in data.items()))
    with ResultsStore(args.results) as store:
        others = other_groups(store, model_fingerprint(args.model), list(data), protocol_id(identity), data)
    if others:
        print(f"note: {others} other run(s) of this model and these tasks in {args.results} were made under another "
              "protocol or other data; they are not part of this summary")
    print(f"results: {args.results}")
    return 0


def _source(args: argparse.Namespace):
    """The corpus source of a command's arguments, every value checked (ConfigError names the bad one)."""
    from encoderlab.data import parse_source

    source = parse_source(args.source, text_column=args.text_column, txt_mode=args.txt_mode,
                          max_documents=args.max_documents, toyworld_documents=args.toyworld_documents,
                          toyworld_seed=args.seed)
    source.identity()  # the corpus path exists and holds corpus files, before any work
    return source


def cmd_tokenizer_train(args: argparse.Namespace) -> int:
    from encoderlab.data import iter_documents, train_tokenizer
    from encoderlab.data.tokenizer import check_vocab_size

    check_vocab_size(args.vocab_size)
    source = _source(args)
    tokenizer = train_tokenizer(iter_documents(source), args.vocab_size, args.output, overwrite=args.overwrite)
    print(f"trained a byte-level BPE tokenizer of {len(tokenizer)} tokens to {args.output}")
    return 0


def cmd_data_prepare(args: argparse.Namespace) -> int:
    from encoderlab.data import iter_documents, prepare
    from encoderlab.data.tokenizer import check_vocab_size, tokenizer_for_shards

    if args.tokenizer and args.train_tokenizer is not None:
        raise ConfigError("data prepare: give --tokenizer NAME_OR_PATH or --train-tokenizer VOCAB_SIZE, not both")
    if not (args.tokenizer or args.train_tokenizer is not None):
        raise ConfigError("data prepare: give --tokenizer NAME_OR_PATH or --train-tokenizer VOCAB_SIZE")
    if args.train_tokenizer is not None:
        check_vocab_size(args.train_tokenizer)
    if args.shard_tokens < 1:
        raise ConfigError(f"--shard-tokens {args.shard_tokens}: expected a whole number >= 1")
    source = _source(args)
    overwrite = getattr(args, "overwrite", False)
    tokenizer, name, origin = tokenizer_for_shards(args.output, name=args.tokenizer, train_vocab=args.train_tokenizer,
                                                   documents=iter_documents(source), source=source,
                                                   overwrite=overwrite)
    manifest = prepare(source, tokenizer, name, args.output, shard_tokens=args.shard_tokens, dtype=args.dtype,
                       mask_origin=origin, progress=not args.no_progress, overwrite=overwrite)
    t = manifest["tokenizer"]
    print(f"{args.output}: {manifest['total_documents']:,} documents, {manifest['total_tokens']:,} tokens in "
          f"{len(manifest['shards'])} shard(s), {manifest['dtype']}; tokenizer {t['name']} ({t['vocab_size']} tokens, "
          f"mask id {t['mask_token_id']}, {t['mask_origin']}); {manifest['empty_documents_skipped']} empty documents skipped")
    return 0


def cmd_data_inspect(args: argparse.Namespace) -> int:
    from encoderlab.data import PackedDataset

    dataset = PackedDataset(args.shards, args.seq_len, variable_length=args.variable_length)
    print(json.dumps({"manifest": {k: v for k, v in dataset.manifest.items() if k != "shards"},
                      "shards": len(dataset.manifest["shards"]), f"packing (seq_len {args.seq_len})": dataset.stats},
                     indent=2))
    return 0


def cmd_data_toyworld(args: argparse.Namespace) -> int:
    from encoderlab.data import World, export_tasks, measure_baselines

    world = World(seed=args.seed)
    export_tasks(world, args.output, overwrite=args.overwrite)
    print(f"wrote the toyworld tasks (seed {args.seed}) to {args.output}")
    print(json.dumps(measure_baselines(world), indent=2))
    return 0


def _add_source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="toyworld, fineweb-edu-10BT, fineweb-edu-100BT, hf:ID[:CONFIG[:SPLIT]], or a "
                                       "local file/folder (.txt .jsonl .json .parquet .tsv .csv)")
    parser.add_argument("--text-column", default="text", help="column holding the text (jsonl, parquet, tsv, hf)")
    parser.add_argument("--txt-mode", choices=["file", "line", "paragraph"], default="file",
                        help=".txt files: one document per file, line or blank-line separated paragraph")
    parser.add_argument("--max-documents", type=POSITIVE_INT, default=None,
                        help="read at most this many source documents (empty ones included)")
    parser.add_argument("--toyworld-documents", type=POSITIVE_INT, default=20_000)
    parser.add_argument("--seed", type=NONNEGATIVE_INT, default=0, help="toyworld seed")
    if parser.prog.split()[-2:] == ["data", "prepare"]:  # `tokenizer train` defines its own --overwrite
        parser.add_argument("--overwrite", action="store_true",
                            help="rebuild an output directory prepared with other settings (else it is refused)")


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (the command and what was wrong), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"encoderlab: error: {self.prog}: {_one_line(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="encoderlab",
        description="Pretrain text encoders with CLM, MLM or CLM->MLM and evaluate them (arXiv 2507.00994).",
    )
    parser.add_argument("--version", action="version", version=f"encoderlab {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="on an unexpected failure, print the whole traceback (default: one line)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    from encoderlab.cli_convert import add_convert_parser
    from encoderlab.cli_model import add_model_parser
    from encoderlab.cli_cpt import add_cpt_parser
    from encoderlab.cli_study import add_study_parsers

    add_model_parser(commands)  # encoderlab.cli_model: model list/info

    export = commands.add_parser(
        "export", help="export an encoderlab checkpoint to a Hugging Face or sentence-transformers format",
        description="Targets: eurobert (transformers' EuroBertForMaskedLM, bidirectional), llama (LlamaForCausalLM, "
                    "decoder use), sentence-transformers (a SentenceTransformer folder: the EuroBERT export, mean "
                    "pooling, prompts query='Query: ' and document='Document: '). Models imported from other decoder "
                    "families (Mistral sliding windows, Qwen2 biases, Qwen3/OLMo 2 q/k norms, Gemma 2/3) are "
                    "refused: no transformers class runs those architectures bidirectionally, so their encoderlab "
                    "checkpoint stays the evaluation path.")
    export.add_argument("checkpoint", help="encoderlab checkpoint directory")
    export.add_argument("output", help="output directory (written atomically)")
    export.add_argument("--target", choices=["eurobert", "llama", "sentence-transformers"], default="eurobert",
                        help="EuroBertForMaskedLM (bidirectional use), LlamaForCausalLM (decoder use) or a "
                             "sentence-transformers folder (mean pooling, IR prompts)")
    export.add_argument("--tokenizer", help="directory with tokenizer files to include")
    export.add_argument("--overwrite", action="store_true")
    export.set_defaults(func=cmd_export)

    imp = commands.add_parser("import", help="import a local Hugging Face EuroBERT or Llama-architecture checkpoint")
    imp.add_argument("hf_dir", help="local Hugging Face model directory (safetensors weights)")
    imp.add_argument("output", help="encoderlab checkpoint directory to write")
    imp.add_argument("--mask-token-id", type=NONNEGATIVE_INT, help="mask token id to record (decoders have none)")
    imp.add_argument("--overwrite", action="store_true")
    imp.set_defaults(func=cmd_import)

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

    add_cpt_parser(commands)  # encoderlab.cli_cpt

    data = commands.add_parser("data", help="prepare token shards, inspect them, export the toyworld tasks")
    data_commands = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    prep = data_commands.add_parser("prepare", help="tokenize a corpus into token shards with a manifest")
    _add_source_arguments(prep)
    prep.add_argument("--output", "-o", required=True, help="shard directory (resumable)")
    prep.add_argument("--tokenizer", help="Hugging Face tokenizer id or local directory")
    prep.add_argument("--train-tokenizer", type=POSITIVE_INT, metavar="VOCAB_SIZE",
                      help="train a byte-level BPE tokenizer of this size on the corpus first")
    prep.add_argument("--shard-tokens", type=POSITIVE_INT, default=64 * 2**20)
    prep.add_argument("--dtype", choices=["uint16", "uint32"], default=None, help="default: the smallest that fits")
    prep.add_argument("--no-progress", action="store_true")
    prep.set_defaults(func=cmd_data_prepare)
    inspect = data_commands.add_parser("inspect", help="manifest and packing statistics of a shard directory")
    inspect.add_argument("shards")
    inspect.add_argument("--seq-len", type=POSITIVE_INT, default=2048)
    inspect.add_argument("--variable-length", action="store_true")
    inspect.set_defaults(func=cmd_data_inspect)
    toy = data_commands.add_parser("toyworld", help="write the toyworld tasks (hub schemas) and their baselines")
    toy.add_argument("output")
    toy.add_argument("--seed", type=NONNEGATIVE_INT, default=0)
    toy.add_argument("--overwrite", action="store_true")
    toy.set_defaults(func=cmd_data_toyworld)
    add_convert_parser(data_commands)  # encoderlab.cli_convert: data iob1-to-iob2
    data.set_defaults(func=lambda args: (data.print_help(), 0)[1])

    tok = commands.add_parser("tokenizer", help="train a tokenizer")
    tok_commands = tok.add_subparsers(dest="tokenizer_command", metavar="SUBCOMMAND")
    train = tok_commands.add_parser("train", help="train a byte-level BPE tokenizer on a corpus")
    _add_source_arguments(train)
    train.add_argument("--vocab-size", type=POSITIVE_INT, required=True)
    train.add_argument("--output", "-o", required=True)
    train.add_argument("--overwrite", action="store_true")
    train.set_defaults(func=cmd_tokenizer_train)
    tok.set_defaults(func=lambda args: (tok.print_help(), 0)[1])

    ev = commands.add_parser("evaluate", help="fine-tune and evaluate a model over tasks x LRs x seeds (resumable)")
    ev.add_argument("model", help="encoderlab checkpoint or local transformers model directory (with tokenizer)")
    ev.add_argument("--tasks", help="comma list (default: the toyworld tasks); see encoderlab.evaluation.tasks")
    ev.add_argument("--lrs", help="comma list (default: the paper's 1e-5 ... 5e-4)")
    ev.add_argument("--seeds", help="comma list (default: 0,1,2,3,4)")
    ev.add_argument("--results", default="results.sqlite", help="SQLite results database (runs already there are skipped)")
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
    ev.add_argument("--workers", type=workers_argument, default=1,
                    help="fine-tuning runs at a time, each in its own process (default 1; 'auto': the usable cores, "
                         "one thread each); never changes which runs are done or how they are keyed")
    ev.add_argument("--trust-remote-code", action="store_true", help="allow custom model code from the model dir")
    ev.add_argument("--no-progress", action="store_true")
    add_threads_argument(ev, "torch threads per fine-tuning process (default: usable cores / workers)")
    ev.set_defaults(func=cmd_evaluate)

    add_study_parsers(commands)  # encoderlab.cli_study: study run/status, report, demo

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
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, --version, or a bad option (one line already printed): its status
        return done.code if isinstance(done.code, int) else 2
    if not hasattr(args, "func"):
        parser.print_help()
        return 0
    try:
        from encoderlab.threads import POLICY, apply, resolve

        # the thread policy (encoderlab.threads): a command that shares its cores out (study run,
        # evaluate --workers) resolves its own workers; every other runs alone on the usable cores.
        # Only a user's choice (--threads, ENCODERLAB_THREADS) is passed on to child processes.
        policy = resolve(None, getattr(args, "threads", None))
        apply(policy.threads, export=policy.source != POLICY)
        return int(args.func(args) or 0)
    except (ConfigError, ValueError, RuntimeError) as err:  # expected failures: one line, exit code 2
        if args.debug:
            raise
        print(f"encoderlab: error: {_one_line(str(err))}", file=sys.stderr)
        return 2
    except OSError as err:  # a missing path, a full disk, no permission: the file and the reason
        if args.debug:
            raise
        text = f"{err.filename}: {err.strerror}" if err.filename and err.strerror else str(err)
        print(f"encoderlab: error: {_one_line(text)}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - unexpected: one line naming it, the traceback on request
        if args.debug:
            raise
        where = _raised_at(err)
        print(f"encoderlab: error: {_one_line(f'{type(err).__name__}: {err}')} (unexpected, at {where}; run "
              f"`encoderlab --debug {' '.join(argv if argv is not None else sys.argv[1:])}` for the traceback)",
              file=sys.stderr)
        return 2


def _raised_at(err: BaseException) -> str:
    import traceback

    frames = traceback.extract_tb(err.__traceback__)
    if not frames:
        return "an unknown place"
    last = frames[-1]
    return f"{Path(last.filename).name}:{last.lineno}"


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "failed without a message"


if __name__ == "__main__":
    sys.exit(main())
