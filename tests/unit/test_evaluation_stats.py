import math

import pytest

from encoderlab.evaluation.stats import (
    RunScore,
    category_summary,
    holm,
    paired_permutation_test,
    stability,
    summarize,
    t_interval,
)


def test_t_interval_matches_the_textbook():
    mean, low, high = t_interval([1, 2, 3, 4, 5])
    # sd = 1.5811, t(0.975, 4) = 2.7764 -> half width 1.9632
    assert mean == 3 and high - mean == pytest.approx(1.9632, abs=1e-4) and mean - low == pytest.approx(1.9632, abs=1e-4)
    assert math.isnan(t_interval([2.0])[1])


def _grid():
    runs = []
    for seed in range(5):
        runs.append(RunScore(lr=1e-5, seed=seed, validation=0.70 + 0.01 * seed, test=0.90))  # best on test only
        runs.append(RunScore(lr=1e-4, seed=seed, validation=0.80 + 0.01 * seed, test=0.80 + 0.02 * seed))
        runs.append(RunScore(lr=1e-3, seed=seed, validation=math.nan if seed < 3 else 0.99, test=math.nan))
    return runs


def test_lr_is_selected_on_validation_and_diverged_lrs_are_not_eligible():
    summary = summarize(_grid())
    assert summary.lr == 1e-4  # not 1e-5 (best on test) nor 1e-3 (3 of 5 seeds diverged)
    assert summary.per_seed == pytest.approx([0.80, 0.82, 0.84, 0.86, 0.88]) and summary.n == 5
    assert summary.mean == pytest.approx(0.84) and summary.ci_low < 0.84 < summary.ci_high
    assert summary.lr_means[1e-3]["diverged"] == 3
    with pytest.raises(ValueError, match="every learning rate diverged"):
        summarize([RunScore(lr=1e-3, seed=0, validation=math.nan, test=math.nan)])


def test_stability_reports_spread_across_lrs_and_seeds():
    result = stability(_grid())
    assert result["diverged_runs"] == 3 and result["runs"] == 15
    assert result["lr_range"] == pytest.approx(0.90 - 0.84)  # the diverged LR has no finite test mean
    assert result["mean_seed_std"] == pytest.approx((0.0 + 0.0316228) / 2, abs=1e-6)


def test_category_mean_averages_datasets_seed_by_seed():
    mean, low, high = category_summary({"sst2": [0.9, 0.8, 0.85], "mnli": [0.7, 0.6, 0.65]})
    assert mean == pytest.approx(0.75) and low < mean < high


def test_paired_permutation_test_and_holm():
    same = paired_permutation_test([1, 0, 1, 1], [1, 0, 1, 1])
    assert same["p_value"] == 1.0
    better = [1.0] * 40 + [0.0] * 10
    worse = [1.0] * 25 + [0.0] * 25
    result = paired_permutation_test(better, worse, n_resamples=2000)
    assert result["difference"] == pytest.approx(0.3) and result["p_value"] < 0.01
    noise = paired_permutation_test([1, 0] * 20, [0, 1] * 20, n_resamples=2000)
    assert noise["p_value"] > 0.5
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    with pytest.raises(ValueError, match="must match"):
        paired_permutation_test([1, 0], [1])


def test_category_mean_pairs_seeds_by_seed_not_by_position():
    # seed 1 diverged on task b: the category mean uses seeds 0 and 2 of both, never a's seed 1 with b's seed 2
    a = summarize([RunScore(1e-4, s, 80.0, v) for s, v in enumerate([70.0, 80.0, 90.0])])
    b = summarize([RunScore(1e-4, 0, 60.0, 10.0), RunScore(1e-4, 1, math.nan, math.nan),
                   RunScore(1e-4, 2, 60.0, 30.0)])
    assert b.seeds == [0, 2] and b.by_seed() == {0: 10.0, 2: 30.0}
    mean, _, _ = category_summary({"a": a.by_seed(), "b": b.by_seed()})
    assert mean == pytest.approx(((70 + 10) / 2 + (90 + 30) / 2) / 2)
