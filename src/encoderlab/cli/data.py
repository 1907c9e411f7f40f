"""``encoderlab data prepare|inspect|toyworld|iob1-to-iob2`` and ``encoderlab tokenizer train``:
token shards, the toyworld tasks, the explicit IOB1 -> IOB2 conversion of NER files (the evaluation
refuses IOB1, naming file and line: strict entity F1 would find no entity that starts with ``I-``;
the converted copy is what the evaluation then reads, so its data fingerprint is the converted
data's), and byte-level BPE tokenizers."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from encoderlab.cli.common import add_source_arguments, show_help, source_from_args
from encoderlab.config import ConfigError
from encoderlab.validate import NONNEGATIVE_INT, POSITIVE_INT
from encoderlab.evaluation.formats import convert_iob1_file


def add_parsers(commands) -> None:
    data = commands.add_parser("data", help="prepare token shards, inspect them, export the toyworld tasks")
    data_commands = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    prep = data_commands.add_parser("prepare", help="tokenize a corpus into token shards with a manifest")
    add_source_arguments(prep)
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
    _add_convert_parser(data_commands)
    show_help(data)

    tok = commands.add_parser("tokenizer", help="train a tokenizer")
    tok_commands = tok.add_subparsers(dest="tokenizer_command", metavar="SUBCOMMAND")
    train = tok_commands.add_parser("train", help="train a byte-level BPE tokenizer on a corpus")
    add_source_arguments(train)
    train.add_argument("--vocab-size", type=POSITIVE_INT, required=True)
    train.add_argument("--output", "-o", required=True)
    train.add_argument("--overwrite", action="store_true")
    train.set_defaults(func=cmd_tokenizer_train)
    show_help(tok)


def cmd_tokenizer_train(args: argparse.Namespace) -> int:
    from encoderlab.data import iter_documents, train_tokenizer  # start-up: loads numpy
    from encoderlab.data.tokenizer import check_vocab_size, short_vocabulary_note  # start-up: loads torch

    check_vocab_size(args.vocab_size)
    source = source_from_args(args)
    tokenizer = train_tokenizer(iter_documents(source), args.vocab_size, args.output, overwrite=args.overwrite)
    print(f"trained a byte-level BPE tokenizer of {len(tokenizer)} tokens to {args.output}")
    note = short_vocabulary_note(tokenizer, args.vocab_size)
    if note:
        print(f"note: {note}")
    return 0


def cmd_data_prepare(args: argparse.Namespace) -> int:
    from encoderlab.data import iter_documents, prepare  # start-up: loads numpy
    # start-up: loads torch
    from encoderlab.data.tokenizer import check_vocab_size, short_vocabulary_note, tokenizer_for_shards

    if args.tokenizer and args.train_tokenizer is not None:
        raise ConfigError("data prepare: give --tokenizer NAME_OR_PATH or --train-tokenizer VOCAB_SIZE, not both")
    if not (args.tokenizer or args.train_tokenizer is not None):
        raise ConfigError("data prepare: give --tokenizer NAME_OR_PATH or --train-tokenizer VOCAB_SIZE")
    if args.train_tokenizer is not None:
        check_vocab_size(args.train_tokenizer)
    if args.shard_tokens < 1:
        raise ConfigError(f"--shard-tokens {args.shard_tokens}: expected a whole number >= 1")
    source = source_from_args(args)
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
    note = short_vocabulary_note(tokenizer, args.train_tokenizer)
    if note:
        print(f"note: {note}")
    return 0


def cmd_data_inspect(args: argparse.Namespace) -> int:
    from encoderlab.data import PackedDataset  # start-up: loads numpy

    dataset = PackedDataset(args.shards, args.seq_len, variable_length=args.variable_length)
    print(json.dumps({"manifest": {k: v for k, v in dataset.manifest.items() if k != "shards"},
                      "shards": len(dataset.manifest["shards"]), f"packing (seq_len {args.seq_len})": dataset.stats},
                     indent=2))
    return 0


def cmd_data_toyworld(args: argparse.Namespace) -> int:
    from encoderlab.data import World, export_tasks, measure_baselines  # start-up: loads numpy

    world = World(seed=args.seed)
    export_tasks(world, args.output, overwrite=args.overwrite)
    print(f"wrote the toyworld tasks (seed {args.seed}) to {args.output}")
    print(json.dumps(measure_baselines(world), indent=2))
    return 0


def _add_convert_parser(data_commands) -> None:
    conv = data_commands.add_parser(
        "iob1-to-iob2", help="convert CoNLL (tok POS CHUNK NER) or UNER (.iob2) NER files from IOB1 to IOB2",
        description="Rewrites the NER column of INPUT (a file, or a folder: each of its files) so that every entity "
                    "starts with B- (an I-X after O or another type becomes B-X); every other byte is kept. OUTPUT "
                    "(a file, or a folder for a folder) must not exist.")
    conv.add_argument("input")
    conv.add_argument("output")
    conv.set_defaults(func=cmd_iob1_to_iob2)


def cmd_iob1_to_iob2(args: argparse.Namespace) -> int:
    source, target = Path(args.input), Path(args.output)
    if not source.exists():
        raise ConfigError(f"{source}: not found (expected a CoNLL/UNER NER file or a folder of them)")
    if target.exists():
        raise ConfigError(f"{target}: already exists; choose a new file or folder for the converted copy")
    files = [source] if source.is_file() else sorted(p for p in source.iterdir()
                                                     if p.is_file() and not p.name.startswith("."))
    if not files:
        raise ConfigError(f"{source}: no files to convert")
    for path in files:
        out = target if source.is_file() else target / path.name
        sentences, changed = convert_iob1_file(path, out)
        print(f"{path} -> {out}: {sentences} sentences, {changed} tags changed to B-")
    return 0
