"""Fine-tuning throughput per task type, and the projected cost of the paper's protocol.

For one backbone (a preset, randomly initialised, with a tokenizer trained on toyworld), each
toyworld task type (SC, SC-pair, TC, QA, IR) is fine-tuned for ``--steps`` steps at batch 32
and then evaluated; examples/s and tokens/s of training are the median over ``--repeats`` runs.
The wall time of a whole run (backbone load, features, training, evaluation) is measured with
and without the feature cache a sweep shares across its runs, alternating in the same process.
The projection multiplies the measured time per step by the protocol's size: 12 datasets x
6 LRs x 5 seeds, each up to 1,000 steps (NQ and MLDR are evaluated, not trained: 10 trained
datasets), plus the measured evaluation time scaled by each dataset's test-set size.

    python benchmarks/finetune_throughput.py --preset tiny     # CPU, minutes
    python benchmarks/finetune_throughput.py --preset 210m     # GPU
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from encoderlab.io import atomic_write_text  # noqa: E402
import time  # noqa: E402

from encoderlab.evaluation.finetune import FeatureCache, FinetuneConfig, finetune  # noqa: E402
from encoderlab.evaluation.tasks import load_task  # noqa: E402
from toyworld_model import random_toyworld_checkpoint  # noqa: E402

TASKS = {"toy-sentiment": "SC", "toy-nli": "SC-pair", "toy-ner": "TC", "toy-qa": "QA", "toy-retrieval": "IR"}
# Test-set sizes of the paper's datasets (official validation splits / BEIR test queries), for the projection.
PAPER_EVAL_EXAMPLES = {"SC": 872 + 9815 + 40430, "TC": 3453 + 8262 + 2077, "QA": 10570 + 11873 + 10000,
                       "IR": 6980 + 3452 + 800}
PAPER_TRAINED = {"SC": 3, "TC": 3, "QA": 3, "IR": 1}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--out", default=os.environ.get("OUT", "benchmarks/results/latest"))
    args = parser.parse_args(argv)
    results = {"preset": args.preset, "device": "cuda" if torch.cuda.is_available() else "cpu",
               "torch": torch.__version__, "steps": args.steps, "batch_size": 32, "tasks": {}}
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = random_toyworld_checkpoint(args.preset, tmp)
        for name, kind in TASKS.items():
            task = load_task(name)
            # the step rate is what is measured: every task trains --steps (TC too, not its full epoch),
            # and QA windows scale with a short max_length (the protocol's 64/128 need >= 238 tokens)
            question = min(64, args.max_length // 8)
            stride = min(128, 3 * (args.max_length - question - 3) // 4)
            ft = FinetuneConfig(max_steps=args.steps, batch_size=32, max_length=args.max_length, max_eval_examples=256,
                                tc_full_epoch=False, max_question_tokens=question, doc_stride=stride)
            train_times, eval_times, run_alone, run_shared = [], [], [], []
            cache = FeatureCache()
            finetune(str(checkpoint), task, lr=1e-4, seed=0, config=ft, features=cache)  # fills the cache
            for repeat in range(args.repeats):
                started = time.perf_counter()
                result = finetune(str(checkpoint), task, lr=1e-4, seed=repeat, config=ft)
                run_alone.append(time.perf_counter() - started)
                train_times.append(result.train_seconds / result.steps)
                eval_times.append(result.eval_seconds)
                started = time.perf_counter()
                finetune(str(checkpoint), task, lr=1e-4, seed=repeat, config=ft, features=cache)
                run_shared.append(time.perf_counter() - started)
            step_s = statistics.median(train_times)
            eval_examples = 2 * 256 if kind != "IR" else len(task.corpus) + 2 * min(256, len(task.queries["test"]))
            results["tasks"][name] = {"type": kind, "train_s_per_step": step_s, "train_examples_per_s": 32 / step_s,
                                      "eval_s": statistics.median(eval_times),
                                      "eval_examples_per_s": eval_examples / statistics.median(eval_times),
                                      "run_s": statistics.median(run_alone),
                                      "run_s_shared_features": statistics.median(run_shared),
                                      "shared_features_speedup": statistics.median(run_alone)
                                      / statistics.median(run_shared)}
        per_step = {k: [v["train_s_per_step"] for v in results["tasks"].values() if v["type"].startswith(k)]
                    for k in PAPER_TRAINED}
        eval_rate = {k: [v["eval_examples_per_s"] for v in results["tasks"].values() if v["type"].startswith(k)]
                     for k in PAPER_TRAINED}
        runs = 6 * 5
        hours = sum(PAPER_TRAINED[k] * runs * 1000 * statistics.mean(per_step[k]) for k in per_step) / 3600
        hours += sum(runs * PAPER_EVAL_EXAMPLES[k] * 2 / statistics.mean(eval_rate[k]) for k in eval_rate) / 3600
        results["projected_protocol_hours_per_checkpoint"] = hours
        results["projection_note"] = ("10 trained datasets x 6 LRs x 5 seeds x 1,000 steps at the measured s/step of the "
                                      "same task type (toyworld sequence lengths, max_length "
                                      f"{args.max_length}), plus validation+test evaluation of the paper's test-set "
                                      "sizes at the measured examples/s; real datasets have longer inputs (QA, IR)")
    atomic_write_text(Path(args.out) / "finetune_throughput.json", json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
