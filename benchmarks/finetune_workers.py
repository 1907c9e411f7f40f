"""A sweep's fine-tuning runs one at a time against ``--workers`` at a time (evaluation/pool.py).

For one backbone (a preset, randomly initialised, with a tokenizer trained on toyworld), the same
grid (``--tasks`` x ``--lrs`` x ``--seeds``) is swept into a fresh results database with 1 worker
and with each count of ``--workers``, alternating, ``--repeats`` times; reported: the median wall
time of each, runs per second, the ratio against 1 worker measured in the same process, and
whether every run's validation and test scores agree (same keys; scores within 1e-6).

    python benchmarks/finetune_workers.py --preset demo              # CPU, a few minutes
    python benchmarks/finetune_workers.py --preset 210m --workers 2,4  # GPU: runs sharing one device
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from encoderlab.evaluation.finetune import FinetuneConfig  # noqa: E402
from encoderlab.evaluation.pool import threads_per_worker  # noqa: E402
from encoderlab.evaluation.sweep import run_sweep  # noqa: E402
from encoderlab.io import atomic_write_text  # noqa: E402
from toyworld_model import random_toyworld_checkpoint  # noqa: E402


def _scores(db: Path) -> dict:
    rows = sqlite3.connect(db).execute("SELECT run_key, validation_score, test_score FROM runs").fetchall()
    return {key: (v, t) for key, v, t in rows}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--tasks", default="toy-sentiment,toy-qa")
    parser.add_argument("--lrs", default="1e-3,3e-3")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--max-eval-examples", type=int, default=200)
    parser.add_argument("--workers", default="2", help="comma list of worker counts, each compared with 1")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=os.environ.get("OUT", "benchmarks/results/latest"))
    args = parser.parse_args(argv)
    tasks, counts = args.tasks.split(","), [int(w) for w in args.workers.split(",")]
    lrs, seeds = [float(x) for x in args.lrs.split(",")], [int(x) for x in args.seeds.split(",")]
    config = FinetuneConfig(max_steps=args.steps, batch_size=32, max_length=128, max_question_tokens=16, doc_stride=32,
                            tc_full_epoch=False, max_eval_examples=args.max_eval_examples)
    runs = len(tasks) * len(lrs) * len(seeds)
    result = {"preset": args.preset, "device": "cuda" if torch.cuda.is_available() else "cpu", "torch": torch.__version__,
              "threads": torch.get_num_threads(), "cpus": os.cpu_count(), "tasks": tasks, "lrs": lrs, "seeds": seeds,
              "steps": args.steps, "runs_per_sweep": runs, "repeats": args.repeats, "workers": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        checkpoint = str(random_toyworld_checkpoint(args.preset, tmp))
        times: dict[int, list[float]] = {1: [], **{w: [] for w in counts}}
        scores: dict[int, dict] = {}
        for repeat in range(args.repeats):
            for workers in times:  # alternating, so drift in the machine's speed hits every count alike
                db = tmp / f"r{repeat}-w{workers}.sqlite"
                started = time.perf_counter()
                run_sweep(checkpoint, tasks, lrs, seeds, db, config, progress=False, workers=workers)
                times[workers].append(time.perf_counter() - started)
                scores.setdefault(workers, _scores(db))
        base = statistics.median(times[1])
        for workers, measured in times.items():
            median = statistics.median(measured)
            same = scores[workers].keys() == scores[1].keys() and all(
                abs(a - b) <= 1e-6 for key in scores[1] for a, b in zip(scores[1][key], scores[workers][key]))
            result["workers"][str(workers)] = {
                "threads_per_worker": threads_per_worker(workers) if workers > 1 else torch.get_num_threads(),
                "wall_s": measured, "median_s": median, "runs_per_s": runs / median, "speedup_vs_1": base / median,
                "same_scores_as_1": same}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "finetune_workers.json", json.dumps(result, indent=2) + "\n")
    for workers, row in result["workers"].items():
        print(f"{workers} worker(s) x {row['threads_per_worker']} thread(s): median {row['median_s']:.1f} s for {runs} "
              f"runs ({row['runs_per_s']:.2f} runs/s, {row['speedup_vs_1']:.2f}x 1 worker; same scores: "
              f"{row['same_scores_as_1']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
