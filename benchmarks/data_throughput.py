"""Data pipeline throughput: ``prepare`` tokens/s and the packed loader's cost per training step.

- prepare: toyworld corpus -> byte-level BPE tokenizer -> shards, tokens/s (median of repeats);
- loader: ``PackedDataset.sample`` samples/s and tokens/s at seq_len 256 and 2048;
- cost per step: building one global batch of the ``mini`` preset (micro-batches on the device)
  against one ``mini`` training step (forward, backward, AdamW) measured in the same process.

    python benchmarks/data_throughput.py [--documents 40000] [--repeats 3] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from encoderlab.io import atomic_write_text  # noqa: E402
from encoderlab.data import PackedDataset, iter_documents, parse_source, prepare, train_tokenizer  # noqa: E402
from encoderlab.training import run_preset  # noqa: E402
from encoderlab.training.data import micro_batches  # noqa: E402
from encoderlab.training.phases import build_objectives  # noqa: E402


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=40_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--out", default=os.environ.get("OUT", "benchmarks/results/latest"))
    args = parser.parse_args(argv)
    results: dict = {"host": platform.node(), "cpu_count": os.cpu_count(), "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = parse_source("toyworld", toyworld_documents=args.documents)
        tokenizer = train_tokenizer(iter_documents(parse_source("toyworld", toyworld_documents=5000)), args.vocab_size,
                                    tmp / "tok")
        documents = list(iter_documents(source))
        generate_s = median_time(lambda: list(iter_documents(source)), args.repeats)
        results["toyworld_generate_docs_per_s"] = len(documents) / generate_s

        counter = {"n": 0}

        def run_prepare():
            counter["n"] += 1
            manifest = prepare(source, tokenizer, "bench", tmp / f"shards-{counter['n']}", progress=False)
            results["prepared_tokens"] = manifest["total_tokens"]

        prepare_s = median_time(run_prepare, args.repeats)
        results["prepare_tokens_per_s"] = results["prepared_tokens"] / prepare_s
        results["prepare_s_median"] = prepare_s
        shards = tmp / "shards-1"

        for seq_len in (256, 2048):
            dataset = PackedDataset(shards, seq_len, seed=0)
            count = min(len(dataset), 2000)
            seconds = median_time(lambda: [dataset.sample(i) for i in range(count)], args.repeats)
            results[f"loader_seq{seq_len}_samples_per_s"] = count / seconds
            results[f"loader_seq{seq_len}_tokens_per_s"] = count * seq_len / seconds

        config = run_preset("mini-clm-mlm40")
        config = type(config).from_dict({**config.to_dict(), "data": {**config.to_dict()["data"], "source": str(shards)},
                                         "model": {**config.to_dict()["model"], "vocab_size": len(tokenizer)}})
        dataset = PackedDataset(shards, config.data.seq_len, seed=0)
        device = torch.device("cpu")
        g, micro = config.global_batch_samples, config.micro_batch_size
        step_counter = {"s": 0}

        def load_one_step():
            step_counter["s"] += 1
            return micro_batches(dataset, step_counter["s"], g, micro, 0, 1, device)

        loader_s = median_time(load_one_step, max(5, args.repeats))
        from encoderlab.model import build_encoder

        model = build_encoder(config.model, seed=0)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        objectives = build_objectives(config)
        batches = load_one_step()

        def train_one_step():
            for objective in objectives:  # one CLM and one MLM step: the mean cost of the two phases
                for batch in batches:
                    out = objective(model, batch, 0)
                    (out.loss_sum / out.num_targets).backward()
                optimizer.step()
                optimizer.zero_grad()

        train_one_step()  # warm-up
        step_s = median_time(train_one_step, args.repeats) / len(objectives)
        results.update(mini_global_batch=f"{g} x {config.data.seq_len}", loader_s_per_step=loader_s,
                       mini_train_s_per_step=step_s, loader_share_of_step=loader_s / step_s)
    atomic_write_text(Path(args.out) / "data_throughput.json", json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
