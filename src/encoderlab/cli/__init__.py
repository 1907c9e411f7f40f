"""The ``encoderlab`` command line, one module per command group: ``model`` (model list/info,
export, import), ``pretrain`` (pretrain, smoke), ``cpt``, ``data`` (data prepare/inspect/toyworld/
iob1-to-iob2, tokenizer train), ``evaluate``, ``study`` (study run/status, report, demo); ``app``
builds the parser and runs a command, ``common`` holds what several groups share."""

from encoderlab.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
