"""The interface of a task type, and the registry of task types.

A task type (sequence classification, token classification, extractive QA, retrieval, or one you
add) supplies everything the fine-tuning loop and the data loader need to know about it: which
fields its rows have and how they are checked, its features, its head, its loss, how its
predictions are decoded and scored, and how long it trains. ``finetune.py`` and ``tasks.py`` ask
the task's type for each of these and never branch on the type's name.

Adding a type is one module with a :class:`TaskType` subclass and a :func:`register` call; a task
(``TaskSpec``, ``evaluation/registry.py``) names its type by the registered name.
"""

from __future__ import annotations

import math
import random
import time
from typing import NamedTuple

import numpy as np

from encoderlab.config import ConfigError
from encoderlab.evaluation.items import ItemScores
from encoderlab.evaluation.registry import get_task


class Scored(NamedTuple):
    """One split scored: its metrics and per-item scores, and the evaluation pass that scored it (its
    id, what it counted, its seconds; the splits of one retrieval task share a pass)."""

    metrics: dict
    items: list[float]
    pass_id: tuple
    counts: dict
    seconds: float


def batches(items: list, size: int, rng: random.Random | None):
    """``items`` in batches of ``size``, shuffled by ``rng`` (None: in order)."""
    order = list(range(len(items)))
    if rng is not None:
        rng.shuffle(order)
    for start in range(0, len(order), size):
        yield [items[i] for i in order[start : start + size]]


def with_subsets(metrics: dict, metric: str, items: list[float], counts: list | None, rows: list[dict]) -> dict:
    """``metrics`` plus, when the scored rows mark held-out items (toyworld: key words that never
    occur in the task's fine-tuning data), the mask and the main metric on the held-out items and
    on the rest (``held_out/<metric>``, ``seen/<metric>``, x100 like every main score)."""
    if not rows or "held_out" not in rows[0]:
        return metrics
    mask = np.array([bool(r["held_out"]) for r in rows])
    if len(mask) != len(items):
        raise RuntimeError(f"held-out mask of {len(mask)} rows for {len(items)} scored items (a dropped item?)")
    scores = ItemScores(counts=counts) if counts is not None else ItemScores(values=items)
    subsets = {f"{name}/{metric}": scores.score(np.flatnonzero(m)) for name, m in (("held_out", mask), ("seen", ~mask))}
    return metrics | {"held_out_mask": mask.astype(int).tolist(), "held_out_items": int(mask.sum())} | subsets


class TaskType:
    """What the evaluation needs to know about one kind of task. Subclasses set ``name`` and implement
    the methods that raise NotImplementedError; the others have the common behaviour."""

    name: str = ""
    layout: str = "rows"  # "rows": splits of rows; "corpus": a corpus, queries and qrels per split (retrieval)
    scale: float = 100.0  # main metric x scale = the reported score, on the paper's 0-100 scale

    # -- data ------------------------------------------------------------------------------------
    def required_fields(self, spec) -> tuple[str, ...]:
        """The fields every row of a task of this type must have."""
        return ()

    def normalise(self, spec, rows: list[dict], where: str) -> list[dict]:
        """Rows as read (the hub's or a file's columns) in the schema :meth:`check_row` expects."""
        return rows

    def check_row(self, spec, row: dict, where: str) -> None:
        """Checks (and normalises in place) one row; ConfigError naming ``where`` when it is wrong."""

    def check_rows(self, spec, rows: list[dict], where: str) -> None:
        """Checks the rows of a split together (unique ids, ...)."""

    def splits_of(self, task) -> dict:
        """The task's splits as this type holds them (rows, or qrels for retrieval)."""
        return task.splits

    # -- protocol --------------------------------------------------------------------------------
    def main_metric(self, spec, settings: dict) -> str:
        """The metric whose value (x ``scale``) is a run's score under the protocol ``settings``."""
        return spec.metric

    def check_protocol(self, config, limit: int) -> None:
        """Refuses settings that cannot run this type with inputs of ``limit`` tokens."""

    def training_steps(self, examples: int, config) -> int:
        """min(max_steps, one epoch)."""
        return min(config.max_steps, math.ceil(examples / config.batch_size))

    # -- the run ---------------------------------------------------------------------------------
    def head(self, spec, hidden_size: int):
        raise NotImplementedError

    def train_features(self, backbone, task, config, limit: int, counts: dict) -> list:
        raise NotImplementedError

    def loss(self, backbone, head, batch: list, device, config):
        raise NotImplementedError

    def evaluate(self, backbone, head, task, split: str, rows: list[dict], config, limit: int, counts: dict, device,
                 cache, key: tuple) -> tuple[dict, list[float]]:
        """Predicts and scores the ``rows`` of one split: (metrics, per-item scores)."""
        raise NotImplementedError

    def score(self, backbone, head, wanted: list, config, limit: int, cap, device, cache,
              cache_key: tuple) -> dict[tuple, Scored]:
        """Scores each (task, split) of ``wanted``; ``{(id(task), split): Scored}``. By default each
        split on its own; a type whose splits share work (retrieval: one corpus pass) overrides it."""
        scored = {}
        for task, split in wanted:
            started, counts = time.perf_counter(), {}
            metrics, items = self.evaluate(backbone, head, task, split, cap(task.splits[split]), config, limit,
                                           counts, device, cache, (*cache_key, split))
            scored[(id(task), split)] = Scored(metrics, items, (id(task), split), counts,
                                               time.perf_counter() - started)
        return scored


TASK_TYPES: dict[str, TaskType] = {}


def register(task_type: TaskType) -> TaskType:
    """Makes ``task_type`` known by its name (a second type of the same name is refused)."""
    if not task_type.name:
        raise ValueError(f"{type(task_type).__name__}: a task type needs a name")
    if task_type.name in TASK_TYPES and type(TASK_TYPES[task_type.name]) is not type(task_type):
        raise ValueError(f"task type {task_type.name!r} is registered already ({type(TASK_TYPES[task_type.name]).__name__})")
    TASK_TYPES[task_type.name] = task_type
    return task_type


def task_type(name: str) -> TaskType:
    if name not in TASK_TYPES:
        raise ConfigError(f"unknown task type {name!r}; known: {', '.join(TASK_TYPES)}")
    return TASK_TYPES[name]


def main_metric(spec, settings: dict) -> str:
    """The name of the metric task ``spec`` is scored by under the protocol ``settings`` (a
    ``FinetuneConfig``'s settings or a recorded protocol identity)."""
    return task_type(spec.type).main_metric(spec, settings)


def check_protocol_fits(tasks: list[str], config) -> None:
    """The protocol can run every task at ``config.max_length`` (e.g. QA windows fit); the one place
    a job, a sweep, a study and ``cpt --evaluate`` check it, before any work."""
    for name in tasks:
        task_type(get_task(name).type).check_protocol(config, config.max_length)
