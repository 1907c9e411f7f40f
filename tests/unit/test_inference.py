"""The report's one inference procedure (seeds and items) and the item scores it is built on.

Checked against references where one exists (seqeval for the entity counts, scipy's Welch t-test
for the seed part alone) and by simulation where none does (coverage and size under a two-level
model of items and seeds, as benchmarks/inference_coverage.py measures at full size)."""

import math

import numpy as np
import pytest

from encoderlab.evaluation.inference import (category_weights, combine, seed_difference, task_difference,
                                             verdict)
from encoderlab.evaluation.items import ItemScores, entity_counts, f1_from_counts, subset_index


def _random_tags(rng, n):
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    return [[labels[i] for i in rng.integers(0, len(labels), rng.integers(1, 9))] for _ in range(n)]


def test_entity_counts_rebuild_seqeval_strict_f1_on_any_subset():
    from seqeval.metrics import f1_score
    from seqeval.scheme import IOB2

    rng = np.random.default_rng(0)
    gold = _random_tags(rng, 120)
    pred = [[t if rng.random() < 0.7 else "O" for t in g] for g in gold]  # some right, some broken entities
    counts = entity_counts(gold, pred)
    assert f1_from_counts(np.array(counts)) == pytest.approx(100 * f1_score(gold, pred, mode="strict", scheme=IOB2))
    subset = np.arange(0, 120, 3)
    items = ItemScores(counts=counts)
    expected = 100 * f1_score([gold[i] for i in subset], [pred[i] for i in subset], mode="strict", scheme=IOB2)
    assert items.score(subset) == pytest.approx(expected)
    draws = rng.integers(0, 120, (5, 120))
    assert items.resampled(draws) == pytest.approx([items.score(d) for d in draws])


def test_item_scores_of_means_and_subsets():
    values = ItemScores(values=[1, 0, 1, 1])
    assert values.score() == 75.0 and values.score(np.array([1, 2])) == 50.0
    mask = np.array([True, False, True, False])
    assert list(subset_index(mask, "held_out")) == [0, 2] and list(subset_index(mask, "seen")) == [1, 3]
    with pytest.raises(ValueError):
        ItemScores()


def test_seed_part_alone_is_welchs_t_test():
    from scipy import stats

    a, b = [71.0, 74.5, 69.0], [65.0, 66.5, 70.0, 61.0]
    result = seed_difference(a, b).test()
    reference = stats.ttest_ind(a, b, equal_var=False)
    assert result["p_value"] == pytest.approx(reference.pvalue, rel=1e-9)
    assert result["difference"] == pytest.approx(np.mean(a) - np.mean(b))
    assert math.isnan(seed_difference([70.0], [60.0, 61.0]).test()["p_value"])  # one seed: no test


def test_weights_of_the_mean_over_categories():
    weights = category_weights({"sst2": "SC", "mnli": "SC", "conll": "TC", "squad": "QA"})
    assert weights == {"sst2": 1 / 6, "mnli": 1 / 6, "conll": 1 / 3, "squad": 1 / 3}
    part = seed_difference([2.0, 3.0, 4.0], [1.0, 1.5, 2.0])
    combined = combine([(0.5, part), (0.5, part)])
    assert combined.difference == pytest.approx(part.difference)
    assert sum(c.variance for c in combined.components) == pytest.approx(sum(c.variance for c in part.components) / 2)


def test_verdicts_follow_the_adjusted_p_and_the_margin():
    test = {"difference": -0.4, "margin": 1.0}
    assert verdict(test, 0.01) == "reproduced"  # within the margin: competitive
    assert verdict({"difference": -3.0, "margin": 1.0}, 0.01) == "contradicted"
    assert verdict(test, 0.2) == "inconclusive" and verdict(test, math.nan) == "inconclusive"


def _simulated(rng, abilities, items=200, seeds=3, seed_sd=0.4):
    difficulty = rng.normal(0, 1.2, items)
    runs = []
    for ability in abilities:
        latent = (ability + difficulty + rng.normal(0, 0.6, items) + rng.normal(0, seed_sd, (seeds, 1))
                  + rng.normal(0, 0.7, (seeds, items)))
        runs.append([ItemScores(values=(rng.random(items) < 1 / (1 + np.exp(-row))).astype(float)) for row in latent])
    return runs


def test_size_and_coverage_by_simulation():
    """Equal abilities: p < 0.05 in about 5% of studies; the 95% interval covers the true difference
    (0) in about 95%. 400 simulated studies: the binomial standard error is about 1.1 points."""
    rng = np.random.default_rng(1)
    rejections = covered = 0
    reps = 400
    for _ in range(reps):
        a, b = _simulated(rng, [0.5, 0.5])
        result = task_difference(a, b).test()
        rejections += result["p_value"] < 0.05
        covered += result["ci_low"] <= 0 <= result["ci_high"]
    assert 0.02 <= rejections / reps <= 0.08
    assert 0.92 <= covered / reps <= 0.98


def test_both_sources_of_chance_are_seen():
    rng = np.random.default_rng(2)
    a, b = _simulated(rng, [1.0, 0.5], seed_sd=0.0)
    result = task_difference(a, b).test()
    assert result["item_variance"] > 0 and result["difference"] > 0
    # one item of four differs: the items make that uncertain, even with no seed variation
    same = [ItemScores(values=[1, 0, 1, 0])] * 3
    one_item = task_difference(same, [ItemScores(values=[0, 0, 1, 0])] * 3).test()
    assert one_item["difference"] == 25.0 and one_item["p_value"] > 0.05 and one_item["seed_variance"] == 0
    # every item differs the same way in every run: nothing is uncertain
    exact = task_difference([ItemScores(values=[1, 1, 1, 1])] * 3, [ItemScores(values=[0, 0, 0, 0])] * 3).test()
    assert exact["p_value"] == 0.0 and exact["ci_low"] == exact["ci_high"] == 100.0
    with pytest.raises(ValueError, match="different numbers of test items"):
        task_difference(same, [ItemScores(values=[1, 0])])


@pytest.mark.parametrize("name", ["toy-sentiment", "toy-ner", "toy-qa", "toy-retrieval"])
def test_runs_record_held_out_items_that_rebuild_their_scores(tiny_checkpoint, name):
    from encoderlab.evaluation.finetune import FinetuneConfig, finetune
    from encoderlab.evaluation.items import ItemScores
    from encoderlab.evaluation.tasks import load_task

    config = FinetuneConfig(max_steps=2, batch_size=8, max_length=96, max_eval_examples=40, max_question_tokens=16,
                            doc_stride=32, tc_full_epoch=False)
    task = load_task(name)
    result = finetune(str(tiny_checkpoint), task, lr=1e-3, seed=0, config=config)
    metric = task.spec.metric
    mask = np.array(result.metrics["test/held_out_mask"], dtype=bool)
    assert len(mask) == len(result.test_items) == 40 and 0 < mask.sum() < 40
    counts = result.metrics.get("test/entity_counts")
    items = ItemScores(counts=counts) if counts is not None else ItemScores(values=result.test_items)
    assert (counts is not None) == (name == "toy-ner")
    assert items.score() == pytest.approx(result.test)  # the items give back the run's test score
    assert items.score(np.flatnonzero(mask)) == pytest.approx(result.metrics[f"test/held_out/{metric}"])
    assert items.score(np.flatnonzero(~mask)) == pytest.approx(result.metrics[f"test/seen/{metric}"])
    source = task.queries if task.spec.type == "ir" else task.splits
    rows = source["test"]
    assert not any(r["held_out"] for r in source["train"])  # held-out words never occur in fine-tuning data
    assert sum(r["held_out"] for r in rows[:40]) == mask.sum()
