"""Retrieval at corpus scale: the corpus is embedded and scored in chunks with a running top-k.

Scores are cosine similarities computed in fp32 (autocast off: bf16 scores would tie documents
that differ), so the ranking handed to the metrics has as few ties as the embeddings allow; the
metrics break the remaining ones by one documented rule (``metrics.rank_run``).
"""

from __future__ import annotations

import math

import torch

RETRIEVAL_DEPTH = 100  # documents kept per query: enough for NDCG@10, MRR@10 and Recall@100


def rank_corpus(doc_ids: list[str], query_emb: torch.Tensor, query_ids: list[str], pool: set[str], embed_range,
                chunk_docs: int) -> tuple[dict, dict]:
    """Top documents per query over the whole corpus, and over its judged pool only.

    ``doc_ids``: the corpus's document ids in order; ``embed_range(start, stop)``: the embeddings of
    documents ``start`` .. ``stop - 1`` (streamed from the tokenized corpus, ``corpus_cache.py``).
    The corpus is embedded and scored ``chunk_docs`` documents at a time, keeping a running
    top-``RETRIEVAL_DEPTH`` per query, so memory does not grow with the corpus (MS MARCO: 8.8M
    passages, whose full query x document score matrix would not fit anywhere). The pool ranking
    is exact too: pool documents compete only with each other, not cut by the full top-100.
    """
    depth = min(RETRIEVAL_DEPTH, len(doc_ids))
    device = query_emb.device
    query_emb = query_emb.float()
    empty = (torch.empty(len(query_ids), 0, device=device), torch.empty(len(query_ids), 0, dtype=torch.long,
                                                                          device=device))
    best, best_pool = empty, empty
    for start in range(0, len(doc_ids), chunk_docs):
        stop = min(start + chunk_docs, len(doc_ids))
        doc_emb = embed_range(start, stop).float()
        with torch.autocast(device.type, enabled=False):
            scores = query_emb @ doc_emb.T
        index = torch.arange(start, stop, device=device).expand_as(scores)
        in_pool = torch.tensor([d in pool for d in doc_ids[start:stop]], device=device)
        best = _merge_top(best, scores, index, depth)
        best_pool = _merge_top(best_pool, scores.masked_fill(~in_pool, -math.inf), index, depth)

    def as_run(top):
        values, positions = (t.cpu().tolist() for t in top)
        return {qid: {doc_ids[i]: v for v, i in zip(vs, ps) if v != -math.inf}
                for qid, vs, ps in zip(query_ids, values, positions)}

    return as_run(best), as_run(best_pool)


def _merge_top(top: tuple[torch.Tensor, torch.Tensor], scores: torch.Tensor, index: torch.Tensor, k: int):
    values = torch.cat([top[0], scores], dim=1)
    positions = torch.cat([top[1], index], dim=1)
    kept = values.topk(min(k, values.shape[1]), dim=1)
    return kept.values, positions.gather(1, kept.indices)
