"""What several command groups share: the corpus source options, one-line messages, help for a
command group run without a subcommand."""

from __future__ import annotations

import argparse

from encoderlab.validate import NONNEGATIVE_INT, POSITIVE_INT


def one_line(text: str) -> str:
    return " ".join(text.split()) or "failed without a message"


def show_help(parser: argparse.ArgumentParser) -> None:
    """A command group run without a subcommand prints its help (status 0)."""
    parser.set_defaults(func=lambda args: (parser.print_help(), 0)[1])


def source_from_args(args: argparse.Namespace):
    """The corpus source of a command's arguments, every value checked (ConfigError names the bad one)."""
    from encoderlab.data import parse_source  # start-up: loads numpy

    source = parse_source(args.source, text_column=args.text_column, txt_mode=args.txt_mode,
                          max_documents=args.max_documents, toyworld_documents=args.toyworld_documents,
                          toyworld_seed=args.seed)
    source.identity()  # the corpus path exists and holds corpus files, before any work
    return source



def add_source_arguments(parser: argparse.ArgumentParser) -> None:
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
