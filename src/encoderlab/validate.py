"""One validation layer for the numbers and names users give: command lines, study specs, manifests.

Every check returns the value or raises a :class:`~encoderlab.config.ConfigError` naming where the
value came from and what was expected; nothing is replaced by a default (``0`` is not "unset"), a
NaN or infinity is never a number, and a name that becomes a directory is a single safe path
component. :func:`argument` turns a check into an ``argparse`` type, so the CLI refuses a bad
option before the command starts, with the same words.
"""

from __future__ import annotations

import argparse
import math
import numbers
import re

from encoderlab.config import ConfigError

_UNSAFE_NAME = re.compile(r"[/\\\x00-\x1f]")


def integer(value, where: str, *, low: int | None = None, high: int | None = None) -> int:
    """An int (not a bool, not a float) within [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        span = ({1: "a positive integer", 0: "a non-negative integer"}.get(low, f"an integer >= {low}")
                if high is None else f"an integer <= {high}" if low is None else f"an integer in [{low}, {high}]")
        raise ConfigError(f"{where}: expected {span}, got {value!r}")
    return value


def count(value, where: str, minimum: int = 1) -> int:
    """A whole number >= ``minimum`` (numpy integers accepted): a count, a size, a seed, a thread number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(f"{where}: expected a whole number >= {minimum}, got {value!r}")
    return int(value)


def positive_int(value, where: str) -> int:
    return integer(value, where, low=1)


def number(value, where: str, *, low: float | None = None, high: float | None = None, low_open: bool = False,
           high_open: bool = False) -> float:
    """A finite float (ints accepted) within the bounds (open or closed at each end)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    value = float(value)
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if not math.isfinite(value) or below or above:
        span = (("(" if low_open else "[") + (f"{low:g}" if low is not None else "-inf") + ", "
                + (f"{high:g}" if high is not None else "inf") + (")" if high_open or high is None else "]"))
        raise ConfigError(f"{where}: expected a finite number in {span}, got {value!r}")
    return value


def positive_number(value, where: str) -> float:
    return number(value, where, low=0.0, low_open=True)


def open_fraction(value, where: str) -> float:
    """A number in (0, 1): a masking ratio, a dropout probability."""
    return number(value, where, low=0.0, high=1.0, low_open=True, high_open=True)


def safe_name(value, where: str) -> str:
    """A name that becomes one directory under a parent (a study, a run): a single path component,
    not ``.``/``..``, no separators or control characters, not starting with ``-`` or ``.``."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: expected a non-empty name, got {value!r}")
    if value in (".", "..") or _UNSAFE_NAME.search(value) or value.startswith(("-", ".")) or value != value.strip():
        raise ConfigError(f"{where}: {value!r} is not a safe name (one path component: letters, digits, '-', '_', "
                          "'.' inside; no '/', '\\', '..', leading '.' or '-', surrounding spaces)")
    return value


def repeats(values) -> list:
    """The values (hashable) that occur again after their first occurrence, in order."""
    seen: set = set()
    return [v for v in values if v in seen or seen.add(v)]


def unique(values: list, where: str) -> list:
    """``values`` without repeats, or an error naming the first repeat."""
    again = repeats(values)
    if again:
        raise ConfigError(f"{where}: {again[0]!r} is listed twice; each must appear once")
    return values


def check_grid(tasks: list, lrs: list, seeds: list, where: str) -> None:
    """An evaluation grid: tasks, LRs (finite, positive) and seeds (integers >= 0), none empty, no
    repeats (a repeated seed would be counted twice as independent evidence)."""
    for name, values in (("tasks", tasks), ("lrs", lrs), ("seeds", seeds)):
        if not values:
            raise ConfigError(f"{where}.{name}: expected at least one value")
        unique(list(values), f"{where}.{name}")
    for lr in lrs:
        positive_number(lr, f"{where}.lrs")
    for seed in seeds:
        integer(seed, f"{where}.seeds", low=0)


def parse_grid(lrs: str | None, seeds: str | None, default_lrs, default_seeds, where: str,
               flags: tuple[str, str] = ("--lrs", "--seeds")) -> tuple[list, list]:
    """``--lrs`` / ``--seeds`` comma lists (None: the defaults), checked as :func:`check_grid` does."""
    def items(text, parse, flag):
        try:
            return [parse(x) for x in text.split(",")]
        except ValueError:
            raise ConfigError(f"{where} {flag} {text!r}: expected comma-separated "
                              f"{'numbers' if parse is float else 'integers'}") from None
    lr_values = list(default_lrs) if lrs is None else items(lrs, float, flags[0])
    seed_values = list(default_seeds) if seeds is None else items(seeds, int, flags[1])
    for values, check, flag in ((lr_values, positive_number, flags[0]),
                                (seed_values, lambda v, w: integer(v, w, low=0), flags[1])):
        unique(values, f"{where} {flag}")
        for value in values:
            check(value, f"{where} {flag}")
    return lr_values, seed_values


def argument(check, parse=int, **bounds):
    """An argparse ``type`` that parses the text with ``parse`` and applies ``check``."""
    def convert(text: str):
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if parse is int else 'a number'}, "
                                             f"got {text!r}") from None
        try:
            return check(value, "value", **bounds)
        except ConfigError as err:
            raise argparse.ArgumentTypeError(str(err).removeprefix("value: ")) from None
    convert.__name__ = check.__name__  # argparse names the type in its messages
    return convert


POSITIVE_INT = argument(positive_int)
NONNEGATIVE_INT = argument(integer, low=0)
POSITIVE_NUMBER = argument(positive_number, parse=float)
OPEN_FRACTION = argument(open_fraction, parse=float)
