"""``encoderlab data iob1-to-iob2``: the explicit conversion of IOB1 NER files to the IOB2 the
evaluation reads (which refuses IOB1, naming file and line: strict entity F1 would find no entity
that starts with ``I-``). The converted copy is what the evaluation then reads, so its data
fingerprint, recorded with every result, is the converted data's."""

from __future__ import annotations

import argparse
from pathlib import Path

from encoderlab.config import ConfigError


def add_convert_parser(data_commands) -> None:
    conv = data_commands.add_parser(
        "iob1-to-iob2", help="convert CoNLL (tok POS CHUNK NER) or UNER (.iob2) NER files from IOB1 to IOB2",
        description="Rewrites the NER column of INPUT (a file, or a folder: each of its files) so that every entity "
                    "starts with B- (an I-X after O or another type becomes B-X); every other byte is kept. OUTPUT "
                    "(a file, or a folder for a folder) must not exist.")
    conv.add_argument("input")
    conv.add_argument("output")
    conv.set_defaults(func=cmd_iob1_to_iob2)


def cmd_iob1_to_iob2(args: argparse.Namespace) -> int:
    from encoderlab.evaluation.formats import convert_iob1_file

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
