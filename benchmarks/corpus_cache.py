"""The retrieval corpus per checkpoint: tokenized by every run (before) vs once, on disk (after).

Every (LR, seed) run of a retrieval task ranks the whole corpus. Before the corpus cache, each run
tokenized every document again (``ir_framed`` per chunk inside the ranking pass); now the framed
ids are built once per (corpus, tokenizer, format, limit), written to disk and memory-mapped by
every run (``encoderlab.evaluation.corpus_cache``). This measures, on a synthetic corpus of
``--documents`` passages (toyworld sentences joined to ~``--words`` words, MS MARCO's passage
length) with a randomly initialised ``--preset`` encoder and a 2,048-token toyworld BPE:

- ``tokenize``: what each run paid before: the corpus framed in ``retrieval_chunk_docs`` chunks;
- ``build``: what the first run pays now: tokenize, write both arrays and their checksums;
- ``open``: a process's first open of the cache (shape and SHA-256 checks);
- ``stream``: what every run pays now: the ids read back from the memory map chunk by chunk as the
  embedding pass asks for them;
- ``embed``: the embedding pass itself, the same before and after, measured on
  ``--embed-documents`` documents and scaled to the corpus (stated in the output).

Alternating before/after in one process, ``--repeats`` rounds, median wall and CPU seconds; one
torch thread and one tokenizer thread. The per-checkpoint totals use ``--runs`` runs (the paper's
grid: 6 LRs x 5 seeds). The two ways' rankings of ``--check-documents`` documents for 50 queries
are compared exactly (scores bit-equal, same order).

    python benchmarks/corpus_cache.py --preset mini --documents 200000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one tokenizer thread, like one torch thread

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from encoderlab.data import iter_documents, parse_source  # noqa: E402
from encoderlab.evaluation import corpus_cache as cc  # noqa: E402
from encoderlab.evaluation.backbone import Backbone  # noqa: E402
from encoderlab.evaluation.features import document_text, ir_framed  # noqa: E402
from encoderlab.evaluation.protocol import FinetuneConfig  # noqa: E402
from encoderlab.evaluation.retrieval import rank_corpus  # noqa: E402
from encoderlab.evaluation.task_types.ir import _embed_batch  # noqa: E402
from encoderlab.evaluation.task_types.base import batches  # noqa: E402
from encoderlab.io import atomic_write_text  # noqa: E402
from toyworld_model import random_toyworld_checkpoint  # noqa: E402


def synthetic_corpus(documents: int, words: int, seed: int = 0) -> list[dict]:
    """``documents`` passages of about ``words`` words, toyworld sentences drawn with a fixed seed."""
    sentences = [s.strip() + "." for d in iter_documents(parse_source("toyworld", toyworld_documents=4000))
                 for s in d.split(".") if s.strip()]
    rng = random.Random(seed)
    corpus = []
    for i in range(documents):
        parts, count = [], 0
        while count < words:
            sentence = rng.choice(sentences)
            parts.append(sentence)
            count += len(sentence.split())
        corpus.append({"_id": f"p{i}", "title": "", "text": " ".join(parts)})
    return corpus


def timed(function):
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--documents", type=int, default=200_000)
    parser.add_argument("--words", type=int, default=56)
    parser.add_argument("--runs", type=int, default=30, help="runs per checkpoint (the paper: 6 LRs x 5 seeds)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--embed-documents", type=int, default=4096)
    parser.add_argument("--check-documents", type=int, default=5000)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--out", default=os.environ.get("OUT", "benchmarks/results/latest"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    config = FinetuneConfig(max_length=args.max_length)
    corpus = synthetic_corpus(args.documents, args.words)
    texts = [document_text(d, config) for d in corpus]
    chunk = config.retrieval_chunk_docs
    with tempfile.TemporaryDirectory() as tmp:
        backbone = Backbone(str(random_toyworld_checkpoint(args.preset, Path(tmp) / "model"))).eval()
        limit = min(config.max_length, backbone.max_positions)
        key = cc.corpus_key(cc.corpus_fingerprint(corpus), backbone, limit, config.document_prefix)

        def frame(batch, counts):
            return ir_framed(backbone, batch, limit, counts)

        def before():  # each run, before: the corpus framed chunk by chunk inside the ranking pass
            counts: dict = {}
            return sum(len(ir_framed(backbone, texts[s : s + chunk], limit, counts)) for s in range(0, len(texts), chunk))

        seconds: dict[str, list] = {k: [] for k in ("tokenize", "build", "open", "stream")}
        for repeat in range(args.repeats):
            seconds["tokenize"].append(timed(before)[1:])
            folder = Path(tmp) / f"cache-{repeat}"
            tokens, *spent = timed(lambda: cc.cached_corpus(folder, key, lambda: iter(texts), frame))
            seconds["build"].append(tuple(spent))
            cc._VERIFIED.clear()  # a new process: its first open checks the cache
            tokens, *spent = timed(lambda: cc.open_cached(tokens.path, key))
            seconds["open"].append(tuple(spent))
            seconds["stream"].append(timed(lambda: sum(len(tokens.rows(s, s + chunk))
                                                        for s in range(0, len(tokens), chunk)))[1:])
        size_mb = sum(f.stat().st_size for f in tokens.path.iterdir()) / 2 ** 20

        def embed(sequences):
            with torch.no_grad():
                return torch.cat([_embed_batch(backbone, b, torch.device("cpu"))
                                  for b in batches(sequences, config.eval_batch_size, None)])

        sample = tokens.rows(0, args.embed_documents)
        embed(sample[: config.eval_batch_size])  # warm-up
        _, embed_wall, embed_cpu = timed(lambda: embed(sample))
        scale = len(tokens) / len(sample)
        # the same scores: both ways rank the first --check-documents documents for 50 queries
        n = min(args.check_documents, len(corpus))
        queries = embed(tokens.rows(n, n + 50))
        ids = [d["_id"] for d in corpus[:n]]
        old, _ = rank_corpus(ids, queries, [f"q{i}" for i in range(50)], set(),
                             lambda a, b: embed(ir_framed(backbone, texts[a:b], limit, {})), 1000)
        new, _ = rank_corpus(ids, queries, [f"q{i}" for i in range(50)], set(),
                             lambda a, b: embed(tokens.rows(a, b)), 1000)
        identical = all(list(old[q].items()) == list(new[q].items()) for q in old)
        mean_tokens = tokens.tokens / len(tokens)
    median = {k: {"wall": statistics.median(w for w, _ in v), "cpu": statistics.median(c for _, c in v)}
              for k, v in seconds.items()}
    embed_pass = {"wall": embed_wall * scale, "cpu": embed_cpu * scale}
    runs = args.runs

    totals = {}
    for k in ("wall", "cpu"):
        totals[k] = {"before": runs * (median["tokenize"][k] + embed_pass[k]),
                     "after": median["build"][k] + median["open"][k] + runs * (median["stream"][k] + embed_pass[k]),
                     "tokens_before": runs * median["tokenize"][k],
                     "tokens_after": median["build"][k] + median["open"][k] + runs * median["stream"][k]}
    result = {"preset": args.preset, "documents": len(corpus), "mean_framed_tokens": mean_tokens,
              "max_length": limit, "runs_per_checkpoint": runs, "repeats": args.repeats, "threads": 1,
              "cache_mb": size_mb, "seconds": seconds, "median_seconds": median,
              "embed_pass_seconds": embed_pass,
              "embed_measured_on": f"{len(sample)} documents, scaled x{scale:.1f} to the corpus",
              "per_checkpoint_seconds": totals, "rankings_identical": identical,
              "checked_on": f"{n} documents x 50 queries", "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "corpus_cache.json", json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("documents", "median_seconds", "embed_pass_seconds",
                                             "per_checkpoint_seconds", "rankings_identical", "cache_mb")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
