"""Statistics of a fine-tuning sweep: LR selection, confidence intervals, stability, paired tests.

Protocol (fixing the flaws of the authors' selection code: LR chosen on test, no intervals):
- for each LR, the mean *validation* score over seeds; the LR with the best mean is selected
  (never on test);
- the reported score is the *test* mean over the seeds of that LR with a 95% Student-t interval,
  the per-seed scores kept alongside;
- a diverged run (non-finite loss) keeps its row: it scores NaN, counts in the stability analysis,
  and an LR where more than half of the seeds diverged cannot be selected;
- two models are compared with a paired permutation test over test items (scores averaged over
  seeds), with Holm's correction when several comparisons are reported;
- a claim about two models (the report's paper findings) is a paired t-test over fine-tuning seeds
  (the same seed fine-tunes both), with a verdict at level 0.05.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class RunScore:
    lr: float
    seed: int
    validation: float  # NaN when the run diverged
    test: float
    test_items: Sequence[float] | None = None  # per-item test scores, for paired tests
    items: object | None = None  # evaluation.items.ItemScores: the test score rebuilt from its items
    held_out: np.ndarray | None = None  # bool per test item: a toyworld item whose key words fine-tuning never saw


@dataclass
class Summary:
    lr: float
    mean: float
    ci_low: float
    ci_high: float
    per_seed: list[float]  # test scores at the selected LR, in the order of ``seeds``
    n: int
    lr_means: dict[float, dict] = field(default_factory=dict)  # lr -> validation/test mean, std, diverged
    seeds: list[int] = field(default_factory=list)  # the seeds of ``per_seed`` (diverged seeds left out)

    def by_seed(self) -> dict[int, float]:
        return dict(zip(self.seeds, self.per_seed))


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and the Student-t confidence interval over ``values`` (NaN width for a single value)."""
    from scipy import stats

    data = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    if data.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(data.mean())
    if data.size == 1:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, df=data.size - 1) * data.std(ddof=1) / math.sqrt(data.size))
    return mean, mean - half, mean + half


def summarize(runs: Sequence[RunScore], confidence: float = 0.95) -> Summary:
    """Selects the LR on validation and reports the test mean with its confidence interval."""
    by_lr: dict[float, list[RunScore]] = defaultdict(list)
    for run in runs:
        by_lr[run.lr].append(run)
    lr_means = {}
    for lr, group in sorted(by_lr.items()):
        finite = [r for r in group if math.isfinite(r.validation)]
        lr_means[lr] = {
            "validation_mean": float(np.mean([r.validation for r in finite])) if finite else math.nan,
            "test_mean": float(np.mean([r.test for r in finite])) if finite else math.nan,
            "test_std": float(np.std([r.test for r in finite], ddof=1)) if len(finite) > 1 else math.nan,
            "diverged": len(group) - len(finite), "seeds": len(group),
        }
    eligible = {lr: m for lr, m in lr_means.items() if m["diverged"] * 2 <= m["seeds"] and math.isfinite(m["validation_mean"])}
    if not eligible:
        raise ValueError("summarize: every learning rate diverged on more than half of its seeds")
    best = max(eligible, key=lambda lr: (eligible[lr]["validation_mean"], -lr))
    kept = [r for r in sorted(by_lr[best], key=lambda r: r.seed) if math.isfinite(r.validation)]
    per_seed = [r.test for r in kept]
    mean, low, high = t_interval(per_seed, confidence)
    return Summary(lr=best, mean=mean, ci_low=low, ci_high=high, per_seed=per_seed, n=len(per_seed),
                   lr_means=lr_means, seeds=[r.seed for r in kept])


def category_summary(per_dataset_seed_scores: dict[str, dict[int, float] | list[float]],
                     confidence: float = 0.95) -> tuple:
    """Category mean: average the datasets' scores seed by seed, then a t-interval over seeds.

    Scores keyed by seed (``Summary.by_seed()``) are matched by seed, over the seeds every dataset
    has (a seed that diverged on one dataset is left out of the category, not paired with another
    seed); plain lists are taken as already aligned by position."""
    columns = list(per_dataset_seed_scores.values())
    if all(isinstance(c, dict) for c in columns):
        per_seed = list(seedwise_mean(columns).values())
    else:
        seeds = min(len(c) for c in columns)
        per_seed = [float(np.mean([c[i] for c in columns])) for i in range(seeds)]
    return t_interval(per_seed, confidence)


def seedwise_mean(columns: Sequence[dict[int, float]]) -> dict[int, float]:
    """Seed by seed, the mean of ``columns`` (scores keyed by seed), over the seeds every column has."""
    if not columns:
        return {}
    common = sorted(set.intersection(*(set(c) for c in columns)))
    return {seed: float(np.mean([c[seed] for c in columns])) for seed in common}


def lr_spread_by_seed(runs: Sequence[RunScore]) -> dict[int, float]:
    """LR sensitivity per fine-tuning seed: the best minus the worst test score of that seed across
    the LR grid. Diverged runs (NaN) are left out; a seed needs two LRs with a finite score."""
    by_seed: dict[int, list[float]] = defaultdict(list)
    for run in runs:
        if math.isfinite(run.test):
            by_seed[run.seed].append(run.test)
    return {seed: max(v) - min(v) for seed, v in sorted(by_seed.items()) if len(v) > 1}


def paired_seed_test(a: dict[int, float], b: dict[int, float], margin: float = 0.0,
                     confidence: float = 0.95) -> dict:
    """Paired t-test over fine-tuning seeds of ``a - b`` (scores keyed by seed; only seeds both have).

    Tests whether ``a - b + margin`` is 0 (two-sided): with ``margin`` 0, whether A and B differ;
    with a margin, whether A is within ``margin`` of B or better (non-inferiority). Returns the mean
    difference ``a - b`` with its t-interval, the p-value, the seeds and their differences. Fewer
    than two seeds: no test (p NaN); differences all equal: p 0 (1 when they are all ``-margin``)."""
    from scipy import stats as scipy_stats

    seeds = sorted(set(a) & set(b))
    diffs = np.asarray([a[s] - b[s] for s in seeds], dtype=float)
    mean, low, high = t_interval(diffs, confidence) if seeds else (math.nan,) * 3
    shifted = diffs + margin
    if shifted.size < 2:
        p = math.nan
    elif np.ptp(shifted) <= 1e-12 * max(1.0, float(np.abs(shifted).max())):
        p = 1.0 if abs(float(shifted[0])) <= 1e-12 else 0.0
    else:
        p = float(scipy_stats.ttest_1samp(shifted, 0.0).pvalue)
    return {"difference": mean, "ci_low": low, "ci_high": high, "p_value": p, "margin": margin, "n": len(seeds),
            "seeds": seeds, "differences": diffs.tolist()}


def verdict(test: dict, alpha: float = 0.05) -> str:
    """``reproduced`` when the claim (``a - b > -margin``) holds at level ``alpha``, ``contradicted``
    when its opposite (``a - b < -margin``) does, ``inconclusive`` otherwise (or with no test)."""
    p = test["p_value"]
    if not math.isfinite(p) or p >= alpha or not math.isfinite(test["difference"]):
        return "inconclusive"
    return "reproduced" if test["difference"] + test["margin"] > 0 else "contradicted"


def stability(runs: Sequence[RunScore]) -> dict:
    """Spread of test scores across the LR grid and across seeds (the paper's Fig. 5)."""
    summary = summarize(runs)
    means = [m["test_mean"] for m in summary.lr_means.values() if math.isfinite(m["test_mean"])]
    diverged = sum(m["diverged"] for m in summary.lr_means.values())
    stds = [m["test_std"] for m in summary.lr_means.values() if math.isfinite(m["test_std"])]
    return {
        "lr_range": max(means) - min(means) if means else math.nan,  # best minus worst LR mean
        "lr_std": float(np.std(means, ddof=1)) if len(means) > 1 else math.nan,
        "mean_seed_std": float(np.mean(stds)) if stds else math.nan,
        "diverged_runs": diverged, "runs": len(runs),
    }


def paired_permutation_test(a_items: Sequence[float], b_items: Sequence[float], n_resamples: int = 9999,
                            seed: int = 0) -> dict:
    """Two-sided paired permutation (sign-flip) test on per-item score differences (scipy)."""
    from scipy import stats

    a, b = np.asarray(a_items, dtype=float), np.asarray(b_items, dtype=float)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"paired test: the two models scored {a.size} and {b.size} items; they must match")
    if np.allclose(a, b):
        return {"difference": 0.0, "p_value": 1.0}
    result = stats.permutation_test(
        (a, b), lambda x, y, axis: np.mean(x - y, axis=axis), permutation_type="samples",
        n_resamples=n_resamples, alternative="two-sided", random_state=seed, vectorized=True,
    )
    return {"difference": float(np.mean(a - b)), "p_value": float(result.pvalue)}


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (same order as the input)."""
    order = np.argsort(p_values)
    m = len(p_values)
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted.tolist()
