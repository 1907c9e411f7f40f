"""The ``encoderlab`` program: the parser of every command group and ``main`` (one-line errors,
exit status 2, the thread policy applied before a command runs)."""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from encoderlab import __version__
from encoderlab.cli import cpt, data, evaluate, model, pretrain, study
from encoderlab.cli.common import one_line
from encoderlab.config import ConfigError
from encoderlab.threads import POLICY, apply, resolve


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (the command and what was wrong), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"encoderlab: error: {self.prog}: {one_line(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="encoderlab",
        description="Pretrain text encoders with CLM, MLM or CLM->MLM and evaluate them (arXiv 2507.00994).",
    )
    parser.add_argument("--version", action="version", version=f"encoderlab {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="on an unexpected failure, print the whole traceback (default: one line)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in (model, pretrain, cpt, data, evaluate, study):  # the order of `encoderlab --help`
        group.add_parsers(commands)
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
        # the thread policy (encoderlab.threads): a command that shares its cores out (study run,
        # evaluate --workers) resolves its own workers; every other runs alone on the usable cores.
        # Only a user's choice (--threads, ENCODERLAB_THREADS) is passed on to child processes.
        policy = resolve(None, getattr(args, "threads", None))
        apply(policy.threads, export=policy.source != POLICY)
        return int(args.func(args) or 0)
    except (ConfigError, ValueError, RuntimeError) as err:  # expected failures: one line, exit code 2
        if args.debug:
            raise
        print(f"encoderlab: error: {one_line(str(err))}", file=sys.stderr)
        return 2
    except OSError as err:  # a missing path, a full disk, no permission: the file and the reason
        if args.debug:
            raise
        text = f"{err.filename}: {err.strerror}" if err.filename and err.strerror else str(err)
        print(f"encoderlab: error: {one_line(text)}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - unexpected: one line naming it, the traceback on request
        if args.debug:
            raise
        where = _raised_at(err)
        print(f"encoderlab: error: {one_line(f'{type(err).__name__}: {err}')} (unexpected, at {where}; run "
              f"`encoderlab --debug {' '.join(argv if argv is not None else sys.argv[1:])}` for the traceback)",
              file=sys.stderr)
        return 2


def _raised_at(err: BaseException) -> str:
    frames = traceback.extract_tb(err.__traceback__)
    if not frames:
        return "an unknown place"
    last = frames[-1]
    return f"{Path(last.filename).name}:{last.lineno}"
