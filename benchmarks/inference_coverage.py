"""Coverage and size of the report's inference procedure (encoderlab.evaluation.inference), by simulation.

A two-level model of a fine-tuning study: test items drawn from a population (difficulty shared by
both models, plus a model-item interaction), fine-tuning seeds drawn per model (a shift of the
whole run), and run-item noise; an item is right with probability sigmoid(ability + those terms).
The estimand is the difference of the two models' expected scores over new items and new seeds.
For each setting, ``--reps`` studies are simulated with ``--seeds`` seeds and ``--items`` test
items, and we count how often the 95% interval covers the truth (coverage) and, with equal
abilities, how often p < 0.05 (size). The two procedures earlier reports used are measured on the
same studies: a paired t-test over seeds (ignores the items) and a paired permutation test over
items (ignores the seeds).

    python benchmarks/inference_coverage.py --json benchmarks/results/inference-coverage-2026-12-04.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from encoderlab.evaluation.inference import category_weights, combine, task_difference  # noqa: E402
from encoderlab.evaluation.items import ItemScores  # noqa: E402


def _truth(ability: float, sd: float) -> float:
    """E[sigmoid(ability + sd * Z)], Z standard normal (Gauss-Hermite, 80 nodes), x100."""
    x, w = np.polynomial.hermite_e.hermegauss(80)
    return float(100 * np.sum(w * (1 / (1 + np.exp(-(ability + sd * x))))) / np.sum(w))


def _study(rng, abilities, items, seeds, item_sd, interaction_sd, seed_sd, noise_sd, continuous):
    """Per model, its runs' per-item scores (seeds x items) on one shared test set."""
    difficulty = rng.normal(0, item_sd, items)
    runs = []
    for ability in abilities:
        interaction = rng.normal(0, interaction_sd, items)
        shift = rng.normal(0, seed_sd, (seeds, 1))
        latent = ability + difficulty + interaction + shift + rng.normal(0, noise_sd, (seeds, items))
        p = 1 / (1 + np.exp(-latent))
        runs.append(p if continuous else (rng.random(p.shape) < p).astype(float))
    return runs


def _old_tests(a, b, rng):
    from scipy import stats

    seed_p = float(stats.ttest_rel(a.mean(1), b.mean(1)).pvalue)  # the findings' paired t over seeds
    d = a.mean(0) - b.mean(0)  # the daggers' permutation test over items, on seed-averaged items
    signs = rng.choice([-1.0, 1.0], size=(999, len(d)))
    observed = abs(d.mean())
    perm_p = float((1 + np.sum(np.abs((signs * d).mean(1)) >= observed - 1e-12)) / 1000)
    return seed_p, perm_p


def simulate(setting: dict, reps: int, seeds: int, items: int, tasks: int, rng) -> dict:
    sd = float(np.sqrt(setting["item_sd"] ** 2 + setting["interaction_sd"] ** 2 + setting["seed_sd"] ** 2
                       + setting["noise_sd"] ** 2))
    abilities = setting["abilities"]
    truth = _truth(abilities[0], sd) - _truth(abilities[1], sd)
    covered = rejected = old_seed = old_perm = 0
    widths = []
    for _ in range(reps):
        parts, categories = [], {}
        for t in range(tasks):
            a, b = _study(rng, abilities, items, seeds, setting["item_sd"], setting["interaction_sd"],
                          setting["seed_sd"], setting["noise_sd"], setting["continuous"])
            parts.append((f"task{t}", task_difference([ItemScores(values=r) for r in a],
                                                      [ItemScores(values=r) for r in b])))
            categories[f"task{t}"] = f"C{t}"
            if tasks == 1:
                sp, pp = _old_tests(a, b, rng)
                old_seed += sp < 0.05
                old_perm += pp < 0.05
        weights = category_weights(categories)
        result = combine([(weights[name], part) for name, part in parts]).test()
        covered += result["ci_low"] <= truth <= result["ci_high"]
        rejected += result["p_value"] < 0.05
        widths.append(result["ci_high"] - result["ci_low"])
    out = {"setting": setting, "truth": truth, "coverage": covered / reps, "rejection_rate": rejected / reps,
           "median_ci_width": float(np.median(widths)), "reps": reps, "seeds": seeds, "items": items, "tasks": tasks}
    if tasks == 1:
        out["old_paired_seed_t_rejection_rate"] = old_seed / reps
        out["old_item_permutation_rejection_rate"] = old_perm / reps
    return out


SETTINGS = {  # seed_sd: how much a run's fine-tuning seed moves it (logit units)
    "binary, small seed variance": dict(item_sd=1.2, interaction_sd=0.6, seed_sd=0.1, noise_sd=0.7, continuous=False),
    "binary, large seed variance": dict(item_sd=1.2, interaction_sd=0.6, seed_sd=0.5, noise_sd=0.7, continuous=False),
    "continuous (NDCG-like), large seed variance": dict(item_sd=1.0, interaction_sd=0.5, seed_sd=0.5, noise_sd=0.5,
                                                        continuous=True),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    rows = []
    for name, setting in SETTINGS.items():
        for label, abilities, tasks in (("size (equal abilities)", [0.5, 0.5], 1),
                                        ("coverage (A ahead)", [0.8, 0.5], 1),
                                        ("size, mean over 4 categories", [0.5, 0.5], 4),
                                        ("coverage, mean over 4 categories", [0.8, 0.5], 4)):
            row = simulate(setting | {"name": name, "abilities": abilities}, args.reps, args.seeds, args.items, tasks, rng)
            row["check"] = label
            rows.append(row)
            old = (f"; old seed t {row['old_paired_seed_t_rejection_rate']:.3f}, old item permutation "
                   f"{row['old_item_permutation_rejection_rate']:.3f}" if tasks == 1 else "")
            print(f"{name:<45} {label:<34} coverage {row['coverage']:.3f}  p<0.05 {row['rejection_rate']:.3f}  "
                  f"CI width {row['median_ci_width']:.2f}{old}", flush=True)
    summary = {"reps": args.reps, "seeds": args.seeds, "items": args.items, "rows": rows,
               "seconds": time.perf_counter() - started}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
