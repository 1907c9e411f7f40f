"""One inference procedure for every comparison a report makes: the daggers of the main table, the
paired comparisons and the findings' verdicts.

A score difference between two models has two sources of chance, and a test must see both:

- **the fine-tuning seed** (head initialisation, data order): each model's test score varies from
  seed to seed. The seeds of two models are not paired (seed 0 of one backbone has nothing in
  common with seed 0 of another), so this part is each model's variance across its seeds over its
  number of seeds (Welch), with ``seeds - 1`` degrees of freedom each;
- **the test items**: the test set is one sample of the items the task could have had; the two
  models are scored on the same items, so this part is the variance of the per-item difference
  (averaged over seeds) over the number of items, ``items - 1`` degrees of freedom. Means
  (accuracy, SQuAD F1, NDCG@10) use each item's score; seqeval's micro entity F1 uses each
  sentence's linearised contribution (the delta method on true positives, predicted and gold
  entities).

The statistic is a weighted sum of per-task differences of seed means (one task: weight 1; a
finding's "mean over categories of the mean over each category's tasks": the matching weights;
tasks have independent items and runs, so their variances add). Its standard error combines the
components, and the reference distribution is Student's t with Welch-Satterthwaite degrees of
freedom. The interval is ``difference ± t · se``; the two-sided p tests ``difference + margin = 0``.
With one seed per model the seed variance cannot be estimated and there is no test (p NaN).

Why not the alternatives the previous reports used: a permutation test over items ignores the
seed variance (it called differences of one noisy fine-tuning run significant), and a paired
t-test over 3 seeds ignores the items and has 2 degrees of freedom. A nested bootstrap over 3
seeds under-covers (resampling 3 values cannot show their spread). The coverage and size of this
procedure are checked by simulation in ``benchmarks/inference_coverage.py`` (results in
``docs/inference.md``) and in ``tests/unit/test_inference.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from encoderlab.evaluation.items import ItemScores


@dataclass(frozen=True)
class Component:
    """One variance component of a difference: its variance (of the statistic) and degrees of freedom."""

    variance: float
    df: float
    source: str  # "seeds of A", "seeds of B", "items"


@dataclass
class Difference:
    """A - B with every variance component; :meth:`test` gives the interval and p."""

    difference: float
    components: list[Component] = field(default_factory=list)

    def __add__(self, other: Difference) -> Difference:
        return Difference(self.difference + other.difference, self.components + other.components)

    def scaled(self, weight: float) -> Difference:
        return Difference(weight * self.difference,
                          [Component(weight ** 2 * c.variance, c.df, c.source) for c in self.components])

    def test(self, margin: float = 0.0, confidence: float = 0.95) -> dict:
        """The interval of A - B and the two-sided p of ``A - B + margin = 0`` (Student t, Welch-
        Satterthwaite df). No test (NaN) when a seed component has no degree of freedom."""
        from scipy import stats as scipy_stats

        nan = {"difference": self.difference, "ci_low": math.nan, "ci_high": math.nan, "p_value": math.nan,
               "se": math.nan, "df": math.nan, "margin": margin,
               "seed_variance": math.nan, "item_variance": math.nan}
        if not math.isfinite(self.difference) or any(c.df < 1 for c in self.components if c.source.startswith("seeds")):
            return nan
        noise = -sum(c.variance for c in self.components if c.variance < 0)
        # the sum of the mean squares, never below the run-by-item noise it must at least contain
        variance = max(sum(c.variance for c in self.components), noise)
        seed_var = sum(c.variance for c in self.components if c.source.startswith("seeds"))
        item_var = variance - seed_var
        shifted = self.difference + margin
        if variance <= 1e-18:  # no variation at all: the difference is what it is
            p = 1.0 if abs(shifted) <= 1e-12 else 0.0
            return nan | {"ci_low": self.difference, "ci_high": self.difference, "p_value": p, "se": 0.0,
                          "df": math.inf, "seed_variance": seed_var, "item_variance": item_var}
        weights = sum(c.variance ** 2 / c.df for c in self.components if c.variance != 0 and c.df > 0)
        df = variance ** 2 / weights if weights > 0 else math.inf
        se = math.sqrt(variance)
        t = scipy_stats.t.ppf(0.5 + confidence / 2, df)
        p = float(2 * scipy_stats.t.sf(abs(shifted) / se, df))
        return {"difference": self.difference, "ci_low": self.difference - t * se,
                "ci_high": self.difference + t * se, "p_value": p, "se": se, "df": df, "margin": margin,
                "seed_variance": seed_var, "item_variance": item_var}


def _influence(run: ItemScores, index: np.ndarray | None) -> np.ndarray:
    """Each item's contribution to the run's score (x100), whose mean is the score: the item's
    score for a mean, the delta-method linearisation for micro F1."""
    if run.values is not None:
        values = run.values if index is None else run.values[index]
        return 100.0 * values
    counts = run.counts if index is None else run.counts[index]
    tp, predicted, gold = counts[:, 0], counts[:, 1], counts[:, 2]
    denominator = predicted.mean() + gold.mean()
    if denominator <= 0:
        return np.zeros(len(counts))
    f1 = 200.0 * tp.mean() / denominator
    return f1 + 200.0 * (tp - f1 / 200.0 * (predicted + gold)) / denominator


def _residual_component(matrix: np.ndarray, source: str) -> Component | None:
    """The run-by-item interaction of one model (seeds x items): its mean square estimates the
    noise of one item in one run, which the seed and the item components both contain; returned
    as a negative component (two-way random-effects ANOVA: Var of the grand mean =
    (MS_seeds + MS_items - MS_residual) / (seeds x items))."""
    seeds, items = matrix.shape
    if seeds < 2 or items < 2:
        return None
    residual = matrix - matrix.mean(axis=0, keepdims=True) - matrix.mean(axis=1, keepdims=True) + matrix.mean()
    mean_square = float((residual ** 2).sum()) / ((seeds - 1) * (items - 1))
    return Component(-mean_square / (seeds * items), (seeds - 1) * (items - 1), source)


def task_difference(a: Sequence[ItemScores], b: Sequence[ItemScores], index: np.ndarray | None = None) -> Difference:
    """A - B on one task: ``a`` and ``b`` hold each model's runs (one per seed, at its selected LR),
    scored on the same test items; ``index`` restricts to a subset of them (e.g. held-out items).

    Components (two-way random effects, seeds x items, per model; items shared by the models):
    each model's seed variance of its run scores / seeds, the variance of the per-item difference
    (seed-averaged) / items, minus each model's run-by-item noise counted in both."""
    if not a or not b:
        raise ValueError("task_difference: each model needs at least one run")
    sizes = {len(r) for r in (*a, *b)}
    if len(sizes) != 1:
        raise ValueError(f"task_difference: the runs were scored on different numbers of test items ({sorted(sizes)})")
    score_a = np.array([r.score(index) for r in a])
    score_b = np.array([r.score(index) for r in b])
    components = [Component(float(score_a.var(ddof=1)) / len(a) if len(a) > 1 else 0.0, len(a) - 1, "seeds of A"),
                  Component(float(score_b.var(ddof=1)) / len(b) if len(b) > 1 else 0.0, len(b) - 1, "seeds of B")]
    influence_a = np.array([_influence(r, index) for r in a])
    influence_b = np.array([_influence(r, index) for r in b])
    per_item = influence_a.mean(axis=0) - influence_b.mean(axis=0)
    if len(per_item) > 1:
        components.append(Component(float(per_item.var(ddof=1)) / len(per_item), len(per_item) - 1, "items"))
        for matrix, source in ((influence_a, "run x item noise of A"), (influence_b, "run x item noise of B")):
            residual = _residual_component(matrix, source)
            if residual is not None:
                components.append(residual)
    return Difference(float(score_a.mean() - score_b.mean()), components)


def seed_difference(a: Sequence[float], b: Sequence[float]) -> Difference:
    """A - B of a per-seed measure with no items behind it (the LR spread): the seed components only."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if not len(a) or not len(b):
        raise ValueError("seed_difference: each model needs at least one seed")
    return Difference(float(a.mean() - b.mean()),
                      [Component(float(a.var(ddof=1)) / len(a) if len(a) > 1 else 0.0, len(a) - 1, "seeds of A"),
                       Component(float(b.var(ddof=1)) / len(b) if len(b) > 1 else 0.0, len(b) - 1, "seeds of B")])


def combine(parts: Sequence[tuple[float, Difference]]) -> Difference:
    """The weighted sum of independent differences (tasks have their own items and runs)."""
    total = Difference(0.0, [])
    for weight, part in parts:
        total = total + part.scaled(weight)
    return total


def category_weights(categories: dict[str, str]) -> dict[str, float]:
    """``{task: category}`` -> the weight of each task in the mean over categories of the mean over
    each category's tasks."""
    counts: dict[str, int] = {}
    for category in categories.values():
        counts[category] = counts.get(category, 0) + 1
    return {task: 1.0 / (len(counts) * counts[c]) for task, c in categories.items()}


def verdict(test: dict, p_adjusted: float, alpha: float = 0.05) -> str:
    """``reproduced`` when the claim (``A - B > -margin``) holds at ``alpha`` after adjustment,
    ``contradicted`` when its opposite does, ``inconclusive`` otherwise (or with no test)."""
    if not math.isfinite(p_adjusted) or p_adjusted >= alpha or not math.isfinite(test["difference"]):
        return "inconclusive"
    return "reproduced" if test["difference"] + test["margin"] > 0 else "contradicted"
