"""A run's test score rebuilt from its test items, on any subset of them.

Every main metric of the suite is an aggregate over test items that can be recomputed on a subset
or a resample of the items: accuracy, SQuAD F1 and NDCG@10 are means of per-item scores (0/1, a
question's F1, a query's NDCG@10); seqeval's entity F1 is micro-averaged, so it is rebuilt from
each sentence's entity counts (true positives, predicted, gold). This is what the held-out item
scores (toyworld items whose key words never occur in fine-tuning data) and the inference
procedure (:mod:`encoderlab.evaluation.inference`, which resamples items) are computed from.

A run record holds ``test_items`` (per-item scores in [0, 1]) and, in its metrics,
``test/entity_counts`` (TC: one ``[tp, predicted, gold]`` per sentence) and
``test/held_out_mask`` (toyworld: 1 for a held-out item, in item order).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SCALE = 100.0  # every main score on the paper's 0-100 scale


def entity_counts(true_tags: list[list[str]], pred_tags: list[list[str]]) -> list[list[int]]:
    """Per sentence, ``[true positives, predicted entities, gold entities]`` under seqeval's strict
    IOB2 rules: summed over sentences they give seqeval's micro entity F1 exactly."""
    from seqeval.scheme import IOB2, Entities

    gold = Entities(true_tags, IOB2).entities
    pred = Entities(pred_tags, IOB2).entities
    out = []
    for g, p in zip(gold, pred):
        g_set, p_set = {e.to_tuple()[1:] for e in g}, {e.to_tuple()[1:] for e in p}
        out.append([len(g_set & p_set), len(p_set), len(g_set)])
    return out


def f1_from_counts(counts: np.ndarray) -> float:
    """Micro F1 (x100) from rows of ``[tp, predicted, gold]``; 0 when nothing is predicted or gold."""
    tp, predicted, gold = np.asarray(counts, dtype=float).reshape(-1, 3).sum(axis=0)
    return SCALE * 2 * tp / (predicted + gold) if predicted + gold else 0.0


class ItemScores:
    """The test items of one run: ``values`` (per-item scores in [0, 1]; the score is their mean)
    or ``counts`` (TC: ``[tp, predicted, gold]`` per sentence; the score is micro entity F1)."""

    def __init__(self, values: Sequence[float] | None = None, counts: Sequence[Sequence[int]] | None = None):
        if (values is None) == (counts is None):
            raise ValueError("ItemScores: give per-item values or entity counts, exactly one")
        self.values = None if values is None else np.asarray(values, dtype=float)
        self.counts = None if counts is None else np.asarray(counts, dtype=float).reshape(-1, 3)

    def __len__(self) -> int:
        return len(self.values) if self.values is not None else len(self.counts)

    def score(self, index: np.ndarray | None = None) -> float:
        """The run's score (x100) on the items ``index`` (all when None; repeats allowed: a resample)."""
        if self.values is not None:
            values = self.values if index is None else self.values[index]
            return SCALE * float(values.mean()) if len(values) else float("nan")
        return f1_from_counts(self.counts if index is None else self.counts[index])

    def resampled(self, draws: np.ndarray) -> np.ndarray:
        """Scores for each row of item indices in ``draws`` (shape (B, n)), vectorised."""
        if self.values is not None:
            return SCALE * self.values[draws].mean(axis=1)
        sums = self.counts[draws].sum(axis=1)  # (B, 3)
        denominator = sums[:, 1] + sums[:, 2]
        return np.where(denominator > 0, SCALE * 2 * sums[:, 0] / np.maximum(denominator, 1e-12), 0.0)


def item_scores(record) -> ItemScores | None:
    """A run record's test items (None when it has none: a diverged run, or an older record)."""
    counts = (record.metrics or {}).get("test/entity_counts")
    if counts is not None:
        return ItemScores(counts=counts)
    return ItemScores(values=record.test_items) if record.test_items else None


def held_out_mask(record) -> np.ndarray | None:
    """The record's held-out item mask (bool, item order), None when its task marks no items."""
    mask = (record.metrics or {}).get("test/held_out_mask")
    return None if mask is None else np.asarray(mask, dtype=bool)


SUBSETS = ("held_out", "seen")


def subset_index(mask: np.ndarray, subset: str | None) -> np.ndarray | None:
    """Item indices of ``subset`` (``held_out``, ``seen``, or None: every item)."""
    if subset is None:
        return None
    if subset not in SUBSETS:
        raise ValueError(f"subset {subset!r}: expected one of {SUBSETS} or None")
    return np.flatnonzero(mask if subset == "held_out" else ~mask)
