"""encoderlab's thread policy against torch's default, on a quiet and on a loaded machine.

The same fine-tuning sweep (a randomly initialised ``--preset`` backbone, ``--tasks`` x ``--lrs`` x
``--seeds``) runs as an ``encoderlab evaluate`` process tree in two ways:

- ``torch default``: one process with one intra-op thread per usable core (what torch does when
  nobody decides);
- ``policy``: ``--workers auto --threads 1`` (encoderlab.threads: one worker per usable core, one
  thread each).

Each runs on the quiet machine and with ``--burners`` CPU burners beside it (busy Python loops,
one per usable core by default: another user's job), alternating, ``--repeats`` times. Reported:
median wall seconds and CPU seconds (user + sys of the whole process tree), the ratio default /
policy, and whether every run's test score is the same in both (the thread count must not change
results beyond float rounding; the largest difference is printed).

    python benchmarks/thread_policy.py --json benchmarks/results/thread-policy-2026-12-04/thread_policy.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from encoderlab.study.overview import cpu_model  # noqa: E402
from encoderlab.threads import usable_cores  # noqa: E402
from toyworld_model import random_toyworld_checkpoint  # noqa: E402


def _burn(stop) -> None:
    while not stop.is_set():
        for _ in range(100_000):
            pass


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _sweep(checkpoint: str, args, mode: str, db: Path) -> tuple[float, float]:
    cores = usable_cores()
    execution = ["--workers", "1", "--threads", str(cores)] if mode == "torch default" else \
        ["--workers", "auto", "--threads", "1"]
    command = [sys.executable, "-m", "encoderlab.cli", "evaluate", checkpoint, "--tasks", args.tasks, "--lrs", args.lrs,
               "--seeds", args.seeds, "--max-steps", str(args.steps), "--batch-size", "32", "--max-length", "128",
               "--max-eval-examples", str(args.max_eval_examples), "--set", "max_question_tokens=16",
               "--set", "doc_stride=32", "--set", "tc_full_epoch=false", "--results", str(db), "--no-progress",
               *execution]
    env = {k: v for k, v in os.environ.items() if k not in ("ENCODERLAB_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    cpu, started = _children_cpu(), time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started, _children_cpu() - cpu


def _scores(db: Path) -> dict:
    rows = sqlite3.connect(db).execute("SELECT dataset, lr, seed, test_score FROM runs").fetchall()
    return {(d, lr, s): t for d, lr, s, t in rows}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--tasks", default="toy-sentiment")
    parser.add_argument("--lrs", default="1e-3,3e-3")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--max-eval-examples", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--burners", type=int, default=None, help="CPU burners when loaded (default: usable cores)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    cores = usable_cores()
    burners = args.burners if args.burners is not None else cores
    result = {"usable_cores": cores, "cpu": cpu_model(), "burners": burners, "preset": args.preset, "tasks": args.tasks,
              "lrs": args.lrs, "seeds": args.seeds, "steps": args.steps, "repeats": args.repeats, "conditions": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        checkpoint = str(random_toyworld_checkpoint(args.preset, tmp))
        scores = {}
        for condition in ("quiet", "loaded"):
            stop = multiprocessing.Event()
            workers = [multiprocessing.Process(target=_burn, args=(stop,), daemon=True)
                       for _ in range(burners if condition == "loaded" else 0)]
            for w in workers:
                w.start()
            try:
                measured = {"torch default": [], "policy": []}
                for repeat in range(args.repeats):
                    for mode in measured:  # alternating, so drift in the machine's speed hits both alike
                        db = tmp / f"{condition}-{mode.replace(' ', '-')}-{repeat}.sqlite"
                        wall, cpu = _sweep(checkpoint, args, mode, db)
                        measured[mode].append({"wall_s": wall, "cpu_s": cpu})
                        scores.setdefault(mode, _scores(db))
                        print(f"{condition:<7} {mode:<14} repeat {repeat}: {wall:7.1f} s wall, {cpu:7.1f} CPU-s",
                              flush=True)
            finally:
                stop.set()
                for w in workers:
                    w.join(timeout=5)
            row = {}
            for mode, values in measured.items():
                row[mode] = {"wall_s": [v["wall_s"] for v in values], "cpu_s": [v["cpu_s"] for v in values],
                             "median_wall_s": statistics.median(v["wall_s"] for v in values),
                             "median_cpu_s": statistics.median(v["cpu_s"] for v in values)}
            row["default_over_policy_wall"] = row["torch default"]["median_wall_s"] / row["policy"]["median_wall_s"]
            result["conditions"][condition] = row
        a, b = scores["torch default"], scores["policy"]
        result["same_runs"] = a.keys() == b.keys()
        result["max_abs_test_score_diff"] = max(abs(a[k] - b[k]) for k in a) if result["same_runs"] else None
    for condition, row in result["conditions"].items():
        print(f"{condition}: torch default {row['torch default']['median_wall_s']:.1f} s wall / "
              f"{row['torch default']['median_cpu_s']:.1f} CPU-s; policy {row['policy']['median_wall_s']:.1f} s / "
              f"{row['policy']['median_cpu_s']:.1f} CPU-s; default / policy {row['default_over_policy_wall']:.2f}x")
    print(f"same runs: {result['same_runs']}; largest test-score difference: {result['max_abs_test_score_diff']}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
