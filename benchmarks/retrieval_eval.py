"""Retrieval scoring of one fine-tuning run: validation and test ranked in one corpus pass vs two.

A run on a retrieval task scores its validation queries (LR selection) and its test queries,
both against the task's whole corpus. ``finetune`` ranks them in one pass over the corpus
(``_evaluate_retrieval``); before, each split made its own pass, embedding the corpus twice
(MS MARCO: 8.8M passages per run). This measures both ways on toy-retrieval (1,000 reviews) with
a randomly initialised encoder of ``--preset``, alternating in the same process: the median
seconds of ``--repeats`` rounds, and their ratio. The scores of both ways are compared too.

    python benchmarks/retrieval_eval.py --preset demo --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from encoderlab.evaluation import finetune as ft  # noqa: E402
from encoderlab.evaluation.task_types import task_type  # noqa: E402
from encoderlab.evaluation.tasks import load_task  # noqa: E402
from encoderlab.io import atomic_write_text  # noqa: E402
from toyworld_model import random_toyworld_checkpoint  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--max-eval-examples", type=int, default=200)
    parser.add_argument("--out", default=os.environ.get("OUT", "benchmarks/results/latest"))
    args = parser.parse_args(argv)
    task = load_task("toy-retrieval")
    config = ft.FinetuneConfig(max_length=args.max_length, max_eval_examples=args.max_eval_examples)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = random_toyworld_checkpoint(args.preset, tmp)
        backbone = ft.Backbone(str(checkpoint)).to(device).eval()
        limit = min(config.max_length, backbone.max_positions)
        cache = ft.FeatureCache()  # queries and corpus tokenized once, as in a sweep; the corpus is embedded every pass

        def cap(rows):
            return rows[: config.max_eval_examples]

        def score(groups):
            started, out = time.perf_counter(), {}
            with torch.no_grad():
                for splits in groups:
                    out |= task_type("ir").score(backbone, None, [(task, s) for s in splits], config, limit, cap,
                                                 device, cache, ("bench",))
            return time.perf_counter() - started, out

        score([["validation", "test"]])  # warm-up: query features cached, kernels loaded
        seconds = {"two_passes": [], "one_pass": []}
        for _ in range(args.repeats):
            seconds["two_passes"].append(score([["validation"], ["test"]])[0])
            seconds["one_pass"].append(score([["validation", "test"]])[0])
        two, one = score([["validation"], ["test"]])[1], score([["validation", "test"]])[1]
    largest = max(abs(two[k].metrics[m] - one[k].metrics[m]) for k in two for m, v in two[k].metrics.items()
                  if isinstance(v, (int, float)))  # the held-out mask is a list, compared below
    assert all(two[k].metrics.get("held_out_mask") == one[k].metrics.get("held_out_mask") for k in two)
    median = {k: statistics.median(v) for k, v in seconds.items()}
    result = {"preset": args.preset, "device": device.type, "torch": torch.__version__, "task": "toy-retrieval",
              "corpus_documents": len(task.corpus), "max_eval_examples": args.max_eval_examples,
              "queries": {s: min(len(task.qrels[s]), args.max_eval_examples) for s in ("validation", "test")},
              "max_length": args.max_length, "repeats": args.repeats, "seconds": seconds, "median_seconds": median,
              "one_pass_vs_two": median["one_pass"] / median["two_passes"], "largest_metric_difference": largest}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "retrieval_eval.json", json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("preset", "median_seconds", "one_pass_vs_two",
                                             "largest_metric_difference")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
