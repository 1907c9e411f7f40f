"""Retrieval (MS MARCO, NQ, MLDR, toy-retrieval): mean-pooled embeddings, InfoNCE over in-batch
negatives (cosine, temperature), every split's queries ranked against the whole corpus in one
pass; NDCG@10, MRR@10 and Recall@100 over the corpus and over the judged pool. The corpus is
tokenized once per sweep (on disk: ``corpus_cache.py``). With ``retrieval_ranking: pool`` (the
paper's EncodEval) the queries are ranked against the judged pool only, and its metrics are the
scores."""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

from encoderlab.config import ConfigError
from encoderlab.evaluation import metrics as M
from encoderlab.evaluation.backbone import mean_pool, pad_batch
from encoderlab.evaluation.features import document_text, ir_framed, query_text
from encoderlab.evaluation.retrieval import rank_corpus
from encoderlab.evaluation.task_types.base import Scored, TaskType, batches, register, with_subsets


class Retrieval(TaskType):
    name = "ir"
    layout = "corpus"

    def splits_of(self, task) -> dict:
        return task.qrels

    def main_metric(self, spec, settings: dict) -> str:
        ranking = settings.get("retrieval_ranking", "corpus")
        return spec.metric + (" (judged pool)" if ranking == "pool" else "")

    def head(self, spec, hidden_size: int):
        return nn.Identity()

    def train_features(self, backbone, task, config, limit, counts):
        docs = {d["_id"]: document_text(d, config) for d in task.corpus}
        queries = {q["_id"]: query_text(q["text"], config) for q in task.queries["train"]}
        pairs = [(q, d) for q, rel in task.qrels["train"].items() for d, score in rel.items()
                 if score > 0 and q in queries]
        missing = sorted({d for _, d in pairs if d not in docs})
        if missing:
            raise ConfigError(f"task {task.spec.name!r}: {len(missing)} training qrels name documents absent from the "
                              f"corpus (e.g. {missing[0]!r})")
        framed_queries = ir_framed(backbone, [queries[q] for q, _ in pairs], limit, counts)
        framed_docs = ir_framed(backbone, [docs[d] for _, d in pairs], limit, counts)
        return [{"q": q, "d": d} for q, d in zip(framed_queries, framed_docs)]

    def loss(self, backbone, head, batch, device, config):
        q = _embed_batch(backbone, [b["q"] for b in batch], device)
        d = _embed_batch(backbone, [b["d"] for b in batch], device)
        return F.cross_entropy(q @ d.T / config.temperature, torch.arange(len(batch), device=device))

    def score(self, backbone, head, wanted, config, limit, cap, device, cache, cache_key) -> dict[tuple, Scored]:
        """Ranks each (task, split) of ``wanted`` against its task's whole corpus by cosine similarity.

        The queries of every split of one task are ranked in a single pass over its corpus: MS MARCO's
        validation and test queries share one embedding of its 8.8M passages per run instead of two.
        The rankings are those of one pass per split: each query's scores against each document are
        the same numbers (the splits' query sets are disjoint, checked when a task is loaded; splits
        that share query ids get a pass each). Per-item scores are per-query NDCG@10."""
        def embed(sequences):
            return torch.cat([_embed_batch(backbone, batch, device)
                              for batch in batches(sequences, config.eval_batch_size, None)])

        scored = {}
        for key, (task, splits) in _passes(wanted).items():
            started, counts = time.perf_counter(), {}
            queries, embeddings = {}, []
            for split in splits:
                queries[split] = cap([(q["_id"], query_text(q["text"], config)) for q in task.queries[split]
                                      if q["_id"] in task.qrels[split]])
                texts = [t for _, t in queries[split]]
                framed = cache.get(task, (*cache_key, split), counts,
                                   lambda recorded, texts=texts: ir_framed(backbone, texts, limit, recorded))
                embeddings.append(embed(framed))
            # the paper's judged pool: documents judged for the evaluation queries (validation and test),
            # never the training qrels (MS MARCO: ~530k train positives)
            pool = {d for name, table in task.qrels.items() if name != "train" for rel in table.values() for d in rel}
            query_ids, query_emb = [q for s in splits for q, _ in queries[s]], torch.cat(embeddings)
            if config.retrieval_ranking == "pool":  # the judged pool only, its documents in corpus order
                # the pool's ids and framed documents, built once per sweep (not a corpus scan per run)
                pool_ids, framed = cache.get(task, (*cache_key, "pool"), counts, lambda recorded: _pool_features(
                    task, pool, backbone, config, limit, recorded))
                run, pool_run = None, rank_corpus(pool_ids, query_emb, query_ids, set(),
                                                  lambda start, stop: embed(framed[start:stop]),
                                                  config.retrieval_chunk_docs)[0]
            else:
                # the corpus's framed ids: tokenized once per (corpus, tokenizer, format, limit), on disk where
                # the sweep has a corpus cache, and streamed chunk by chunk into the embedding pass
                documents = cache.corpus(task, backbone, limit, config, counts)
                run, pool_run = rank_corpus(cache.document_ids(task), query_emb, query_ids, pool,
                                            lambda start, stop: embed(documents.rows(start, stop)),
                                            config.retrieval_chunk_docs)
            main = self.main_metric(task.spec, config.settings())
            results = {split: _split_scores(task, split, [q for q, _ in queries[split]], run, pool_run, pool, main)
                       for split in splits}
            seconds = time.perf_counter() - started
            for split in splits:
                scored[(id(task), split)] = Scored(*results[split], key, counts, seconds)
        return scored


def _pool_features(task, pool: set, backbone, config, limit: int, counts: dict) -> tuple[list[str], list]:
    """The judged pool's document ids, in corpus order, and their framed ids."""
    docs = [d for d in task.corpus if d["_id"] in pool]
    return [d["_id"] for d in docs], ir_framed(backbone, [document_text(d, config) for d in docs], limit, counts)


def _embed_batch(backbone, sequences: list, device):
    ids, mask = pad_batch(sequences, backbone.pad_id, device)
    return F.normalize(mean_pool(backbone(ids, mask), mask).float(), dim=-1)


def _passes(wanted: list) -> dict[tuple, tuple]:
    """One corpus pass per task; a split sharing query ids with another split of the pass gets its own."""
    passes: dict[tuple, tuple] = {}
    query_ids: dict[tuple, set[str]] = {}
    for task, split in {(id(t), s): (t, s) for t, s in wanted}.values():  # each (task, split) once, in order
        ids = {q["_id"] for q in task.queries[split] if q["_id"] in task.qrels[split]}
        key = ("corpus", id(task))
        if query_ids.get(key, set()) & ids:
            key = ("corpus", id(task), split)
        passes.setdefault(key, (task, []))[1].append(split)
        query_ids.setdefault(key, set()).update(ids)
    return passes


def _split_scores(task, split: str, ids: list[str], run: dict | None, pool_run: dict, pool: set,
                  main: str) -> tuple[dict, list[float]]:
    """The split's metrics over the corpus (``run``; None when only the pool was ranked) and over the
    judged pool; per-item scores are per-query NDCG@10 of the ``main`` metric's ranking."""
    qrels = {q: task.qrels[split][q] for q in ids}
    split_pool_run = {q: pool_run[q] for q in ids}
    result = M.retrieval_scores(split_pool_run, qrels, judged_pool=pool)
    if run is not None:
        split_run = {q: run[q] for q in ids}
        result = M.retrieval_scores(split_run, qrels) | result
        per_query = M.retrieval_per_query(split_run, qrels, measure="ndcg@10")
    else:
        per_query = M.retrieval_per_query(split_pool_run, qrels, judged_pool=pool, measure="ndcg@10")
    items = [float(per_query[q]) for q in ids]
    flagged = {q["_id"]: q for q in task.queries[split]}
    return with_subsets(result, main, items, None, [flagged[q] for q in ids]), items


register(Retrieval())
