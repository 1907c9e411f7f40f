"""Fine-tune one backbone on one task with one (LR, seed), the paper's protocol, and score it.

Protocol (``protocol.py``; SYSTEM.md section 3): bidirectional attention for every model; up to
1,000 steps or one epoch, whichever comes first (TC: one full epoch); batch 32; AdamW (0.9, 0.95),
eps 1e-5, weight decay 0.1; 10% linear warmup then linear decay; heads: SC linear on mean-pooled
tokens, TC per-token linear with first-sub-token labels, QA start/end logits with a sliding
window and SQuAD-v2 no-answer at the first position, IR mean pooling with InfoNCE over in-batch
negatives (cosine, temperature 0.05). Batches are padded to their longest member only. The
head's initialisation and the data order depend on the run seed; data splits never do. A
non-finite loss marks the run as diverged instead of failing the sweep.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from encoderlab.config import ConfigError
from encoderlab.evaluation import metrics as M
from encoderlab.evaluation.backbone import Backbone, mean_pool, pad_batch
from encoderlab.evaluation.items import entity_counts
from encoderlab.evaluation.features import (FeatureCache, document_text, ir_framed, qa_features, query_text,
                                            sc_features, tc_features, train_features)
from encoderlab.evaluation.protocol import PROTOCOL_VERSION, FinetuneConfig, precision_of
from encoderlab.evaluation.retrieval import RETRIEVAL_DEPTH, rank_corpus
from encoderlab.evaluation.tasks import TaskData
from encoderlab.evaluation.items import ItemScores

__all__ = ["Backbone", "FeatureCache", "FinetuneConfig", "PROTOCOL_VERSION", "RETRIEVAL_DEPTH", "RunResult",
           "finetune", "finetune_many", "qa_features", "sc_features", "tc_features"]


# -- the run -------------------------------------------------------------------------------------
@dataclass
class RunResult:
    status: str
    validation: float
    test: float
    metrics: dict
    test_items: list[float] | None
    steps: int
    train_seconds: float
    eval_seconds: float
    counts: dict
    effective: dict = field(default_factory=dict)  # what the settings resolved to for this model and task


def _batches(items: list, size: int, rng: random.Random | None):
    order = list(range(len(items)))
    if rng is not None:
        rng.shuffle(order)
    for start in range(0, len(order), size):
        yield [items[i] for i in order[start : start + size]]


def training_steps(kind: str, examples: int, config: FinetuneConfig) -> int:
    """min(max_steps, one epoch); TC one full epoch when ``tc_full_epoch`` (the paper's EncodEval)."""
    epoch = math.ceil(examples / config.batch_size)
    return epoch if kind == "tc" and config.tc_full_epoch else min(config.max_steps, epoch)


def build_optimizer(modules: list[nn.Module], lr: float, config: FinetuneConfig, steps: int, fused: bool = False):
    """AdamW as the HF Trainer builds it: weight decay on matrices and embeddings, none on biases and
    norm weights; ``get_linear_schedule_with_warmup`` over ceil(warmup_ratio x steps) warmup steps."""
    from transformers import get_linear_schedule_with_warmup

    decay, no_decay = [], []
    for module in modules:
        for parameter in module.parameters():
            if parameter.requires_grad:
                (decay if parameter.ndim >= 2 else no_decay).append(parameter)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=(config.adam_beta1, config.adam_beta2),
                                  eps=config.adam_eps, fused=fused or None)
    warmup = math.ceil(config.warmup_ratio * steps)
    return optimizer, get_linear_schedule_with_warmup(optimizer, warmup, steps), warmup


def finetune(backbone_path: str, task: TaskData, lr: float, seed: int, config: FinetuneConfig,
             device: torch.device | None = None, trust_remote_code: bool = False,
             test_task: TaskData | None = None, features: FeatureCache | None = None) -> RunResult:
    """Fine-tunes on ``task`` and scores its validation split and the test split of ``test_task``
    (default ``task``; zero-shot tasks such as NQ pass the MS MARCO data as ``task``).

    ``features``: a cache shared by the runs of one sweep of this backbone on these task objects
    (see :class:`FeatureCache`); None builds the features for this run only.
    """
    return finetune_many(backbone_path, task, lr, seed, config, [test_task or task], device=device,
                         trust_remote_code=trust_remote_code, features=features)[0]


def finetune_many(backbone_path: str, task: TaskData, lr: float, seed: int, config: FinetuneConfig,
                  test_tasks: list[TaskData], device: torch.device | None = None, trust_remote_code: bool = False,
                  features: FeatureCache | None = None) -> list[RunResult]:
    """One fine-tuning run on ``task`` scored on its validation split once and on the test split of
    each of ``test_tasks``: MS MARCO, NQ and MLDR share one training run per (LR, seed) instead of
    repeating it for each zero-shot test set. One result per test task, in order."""
    if not test_tasks:
        raise ValueError("finetune_many: expected at least one test task")
    for needed, split in [(task, "train"), (task, "validation"), *[(t, "test") for t in test_tasks]]:
        _require_split(needed, split)
    features = features if features is not None else FeatureCache()
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    backbone = Backbone(backbone_path, trust_remote_code=trust_remote_code, attention=config.attention).to(device)
    spec = task.spec
    limit = min(config.max_length, backbone.max_positions)
    if spec.type == "qa":
        config.check_qa_windows(limit)
    counts: dict = {}
    n_labels = len(spec.label_names)
    head = {"sc": lambda: nn.Linear(backbone.hidden_size, n_labels), "tc": lambda: nn.Linear(backbone.hidden_size, n_labels),
            "qa": lambda: nn.Linear(backbone.hidden_size, 2), "ir": lambda: nn.Identity()}[spec.type]().to(device)
    params = list(backbone.parameters()) + list(head.parameters())
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def cap(rows):
        return rows[: config.max_eval_examples] if config.max_eval_examples else rows

    cache_key = (str(backbone_path), limit, json.dumps(config.settings(), sort_keys=True))
    train = features.get(task, (*cache_key, "train"), counts,
                         lambda recorded: train_features(backbone, task, config, limit, recorded))
    if not train:
        raise ConfigError(f"task {spec.name!r}: the train split is empty")
    steps = training_steps(spec.type, len(train), config)
    optimizer, scheduler, warmup = build_optimizer([backbone, head], lr, config, steps, fused=device.type == "cuda")
    effective = {"max_length": limit, "steps": steps, "warmup_steps": warmup, "train_examples": len(train),
                 "backbone": backbone.kind, "attention": config.attention, "precision": precision_of(device.type),
                 "device": device.type}
    started = time.perf_counter()
    status, step, losses = "ok", 0, []
    backbone.train()
    for batch in _batches(train, config.batch_size, rng):  # steps <= one epoch: a single pass
        if step >= steps:
            break
        with autocast:
            loss = _loss(spec.type, backbone, head, batch, device, config)
        losses.append(loss.detach().item())
        if not math.isfinite(losses[-1]):
            status = "diverged"
            effective["diverged"] = f"non-finite loss at step {step}"
            break
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
    train_seconds = time.perf_counter() - started
    if status == "ok" and (rise := loss_exploded(losses)):
        status, effective["diverged"] = "diverged", rise
    effective["loss_first_last"] = _loss_ends(losses)
    if status == "diverged":
        return [RunResult("diverged", math.nan, math.nan, {}, None, step, train_seconds, 0.0, dict(counts), effective)
                for _ in test_tasks]
    backbone.eval()
    scale = 1.0 if spec.type == "qa" else 100.0  # every main score on the paper's 0-100 scale (SQuAD already is)
    wanted = [(task, "validation"), *[(t, "test") for t in test_tasks]]
    with torch.no_grad(), autocast:
        if spec.type == "ir":  # the splits of one task are ranked in one pass over its corpus
            scored = _evaluate_retrieval(backbone, wanted, config, limit, cap, device, features, cache_key)
        else:  # each split on its own
            scored = {}
            for scored_task, split in wanted:
                started, added = time.perf_counter(), {}
                metrics, items = _evaluate(spec.type, backbone, head, scored_task, split, config, limit, added, cap,
                                           device, features, cache_key)
                scored[(id(scored_task), split)] = _Scored(metrics, items, (id(scored_task), split), added,
                                                           time.perf_counter() - started)
    validation = scored[(id(task), "validation")]
    results = []
    for test_task in test_tasks:
        test = scored[(id(test_task), "test")]
        passes = {validation.pass_id: validation, test.pass_id: test}  # a pass shared by both counts once
        run_counts = dict(counts)
        for scoring in passes.values():
            for name, value in scoring.counts.items():
                run_counts[name] = run_counts.get(name, 0) + value
        # per-item lists (held-out mask, entity counts) are kept for the test split only: nothing reads them
        # for validation, which selects the LR by its score
        metrics = ({f"validation/{k}": v for k, v in validation.metrics.items() if not isinstance(v, list)}
                   | {f"test/{k}": v for k, v in test.metrics.items()})
        results.append(RunResult("ok", scale * validation.metrics[spec.metric],
                                 scale * test.metrics[test_task.spec.metric], metrics, test.items, steps, train_seconds,
                                 sum(p.seconds for p in passes.values()), run_counts, effective))
    return results


class _Scored(NamedTuple):
    """One split scored: its metrics and per-item scores, and the evaluation pass that scored it (its
    id, what it counted, its seconds; the splits of one retrieval task share a pass)."""

    metrics: dict
    items: list[float]
    pass_id: tuple
    counts: dict
    seconds: float


def _with_subsets(metrics: dict, metric: str, items: list[float], counts: list | None, rows: list[dict]) -> dict:
    """``metrics`` plus, when the scored rows mark held-out items (toyworld: key words that never
    occur in the task's fine-tuning data), the mask and the main metric on the held-out items and
    on the rest (``held_out/<metric>``, ``seen/<metric>``, x100 like every main score)."""
    if not rows or "held_out" not in rows[0]:
        return metrics
    import numpy as np


    mask = np.array([bool(r["held_out"]) for r in rows])
    if len(mask) != len(items):
        raise RuntimeError(f"held-out mask of {len(mask)} rows for {len(items)} scored items (a dropped item?)")
    scores = ItemScores(counts=counts) if counts is not None else ItemScores(values=items)
    subsets = {f"{name}/{metric}": scores.score(np.flatnonzero(m)) for name, m in (("held_out", mask), ("seen", ~mask))}
    return metrics | {"held_out_mask": mask.astype(int).tolist(), "held_out_items": int(mask.sum())} | subsets


DIVERGENCE_FACTOR = 2.0  # a run whose loss ends above this multiple of where it began has diverged


def _loss_ends(losses: list[float]) -> list[float]:
    window = max(1, len(losses) // 10)
    return [sum(losses[:window]) / window, sum(losses[-window:]) / window] if losses else []


def loss_exploded(losses: list[float]) -> str | None:
    """A finite loss that blew up: the mean of the last 10% of steps is above DIVERGENCE_FACTOR x the
    mean of the first 10% (e.g. 0.7 -> 2e5 at LR 1e6). Such a run predicts one class or garbage and
    would otherwise be recorded 'ok' at chance level. A loss that merely failed to fall (an LR too
    small) is not divergence: that run is kept as a score, and LR selection judges it."""
    if len(losses) < 2:
        return None
    first, last = _loss_ends(losses)
    if last > DIVERGENCE_FACTOR * first:
        return f"loss rose from {first:.4g} to {last:.4g} (above {DIVERGENCE_FACTOR:g}x)"
    return None


def _require_split(task: TaskData, split: str) -> None:
    have = task.qrels if task.spec.type == "ir" else task.splits
    if not have or split not in have:
        raise ConfigError(f"task {task.spec.name!r}: no {split!r} split (it has {sorted(have or {})}); the protocol "
                          f"needs train and validation of the trained task and test of each scored task")


def _loss(kind, backbone, head, batch, device, config) -> torch.Tensor:
    if kind == "ir":
        q_ids, q_mask = pad_batch([b["q"] for b in batch], backbone.pad_id, device)
        d_ids, d_mask = pad_batch([b["d"] for b in batch], backbone.pad_id, device)
        q = F.normalize(mean_pool(backbone(q_ids, q_mask), q_mask).float(), dim=-1)
        d = F.normalize(mean_pool(backbone(d_ids, d_mask), d_mask).float(), dim=-1)
        return F.cross_entropy(q @ d.T / config.temperature, torch.arange(len(batch), device=device))
    ids, mask = pad_batch([b["ids"] for b in batch], backbone.pad_id, device)
    hidden = backbone(ids, mask)
    if kind == "sc":
        logits = head(mean_pool(hidden, mask)).float()
        return F.cross_entropy(logits, torch.tensor([b["label"] for b in batch], device=device))
    if kind == "tc":
        labels = torch.full(ids.shape, -100, dtype=torch.long)
        for i, b in enumerate(batch):
            labels[i, : len(b["labels"])] = torch.tensor(b["labels"])
        return F.cross_entropy(head(hidden).float().flatten(0, 1), labels.to(device).flatten(), ignore_index=-100)
    logits = head(hidden).float().masked_fill(~mask.bool().unsqueeze(-1), -1e4)
    start = torch.tensor([b["start"] for b in batch], device=device)
    end = torch.tensor([b["end"] for b in batch], device=device)
    return (F.cross_entropy(logits[..., 0], start) + F.cross_entropy(logits[..., 1], end)) / 2


def _evaluate(kind, backbone, head, task, split, config, limit, counts, cap, device, cache: FeatureCache,
              cache_key: tuple) -> tuple[dict, list[float]]:
    spec = task.spec
    size = config.eval_batch_size
    key = (*cache_key, split)
    if kind == "sc":
        features = cache.get(task, key, counts,
                             lambda recorded: sc_features(backbone, task, cap(task.splits[split]), limit, recorded))
        predictions = []
        for batch in _batches(features, size, None):
            ids, mask = pad_batch([b["ids"] for b in batch], backbone.pad_id, device)
            predictions += head(mean_pool(backbone(ids, mask), mask)).argmax(-1).tolist()
        labels = [f["label"] for f in features]
        items = [float(p == y) for p, y in zip(predictions, labels)]
        return _with_subsets({"accuracy": M.accuracy(predictions, labels)}, "accuracy", items, None,
                             cap(task.splits[split])), items
    if kind == "tc":
        features = cache.get(task, key, counts,
                             lambda recorded: tc_features(backbone, cap(task.splits[split]), limit, recorded))
        names = spec.label_names
        gold_tags, pred_tags, items = [], [], []
        for batch in _batches(features, size, None):
            ids, mask = pad_batch([b["ids"] for b in batch], backbone.pad_id, device)
            best = head(backbone(ids, mask)).argmax(-1).tolist()
            for b, row in zip(batch, best):
                words = [names[row[f]] for f in b["first"]] + ["O"] * (b["words"] - len(b["first"]))  # truncated: O
                gold = [names[t] for t in b["gold"]]
                gold_tags.append(gold)
                pred_tags.append(words)
                items.append(sum(g == p for g, p in zip(gold, words)) / len(gold))
        counts = entity_counts(gold_tags, pred_tags)
        scores = M.entity_scores(gold_tags, pred_tags) | {"entity_counts": counts}
        return _with_subsets(scores, spec.metric, items, counts, cap(task.splits[split])), items
    if kind == "qa":
        rows = cap(task.splits[split])
        features = cache.get(task, key, counts, lambda recorded: qa_features(backbone, rows, config, limit, recorded))
        best: dict[int, tuple[float, str]] = {}
        null: dict[int, float] = {}
        for batch in _batches(features, size, None):
            ids, mask = pad_batch([b["ids"] for b in batch], backbone.pad_id, device)
            logits = head(backbone(ids, mask)).float()
            for b, row_logits in zip(batch, logits):
                start_scores, end_scores = row_logits[:, 0], row_logits[:, 1]
                null_score = float(start_scores[0] + end_scores[0])
                null[b["example"]] = min(null.get(b["example"], math.inf), null_score)
                first, n = b["context_offset"], len(b["offsets"])
                s = start_scores[first : first + n]
                e = end_scores[first : first + n]
                pair = s[:, None] + e[None, :]
                allowed = torch.triu(torch.ones(n, n, dtype=torch.bool, device=pair.device))
                allowed &= ~torch.triu(allowed, diagonal=config.max_answer_tokens)
                pair = pair.masked_fill(~allowed, -math.inf)
                score, flat = pair.flatten().max(0)
                i, j = divmod(int(flat), n)
                context = rows[b["example"]]["context"]
                text = context[b["offsets"][i][0] : b["offsets"][j][1]]
                if float(score) > best.get(b["example"], (-math.inf, ""))[0]:
                    best[b["example"]] = (float(score), text)
        predictions, references = {}, {}
        for index, row in enumerate(rows):
            span_score, text = best.get(index, (-math.inf, ""))
            unanswerable_allowed = spec.metric == "squad_v2"
            predictions[row["id"]] = "" if unanswerable_allowed and null.get(index, -math.inf) > span_score else text
            references[row["id"]] = list(row["answers"]["text"])
        version = 2 if spec.metric == "squad_v2" else 1
        scores = M.squad_scores(predictions, references, version=version)
        items = [scores["per_question_f1"][r["id"]] for r in rows]
        scores = {k: v for k, v in scores.items() if k != "per_question_f1"}
        scores["squad_v2" if version == 2 else ("record" if spec.metric == "record" else "squad_v1")] = scores["f1"]
        return _with_subsets(scores, spec.metric, items, None, rows), items
    raise ValueError(f"_evaluate: {kind!r} is scored by _evaluate_retrieval")


def _evaluate_retrieval(backbone, wanted: list[tuple[TaskData, str]], config, limit, cap, device,
                        cache: FeatureCache, cache_key: tuple) -> dict[tuple, _Scored]:
    """Scores each (task, split) of ``wanted`` by ranking its task's whole corpus by cosine similarity.

    The queries of every split of one task are ranked in a single pass over its corpus: MS MARCO's
    validation and test queries share one embedding of its 8.8M passages per run instead of two.
    The rankings are those of one pass per split: each query's scores against each document are
    the same numbers (the splits' query sets are disjoint, checked when a task is loaded; splits
    that share query ids would get a pass each).
    Returns ``{(id(task), split): _Scored}``, the per-item scores being per-query NDCG@10.
    """
    size = config.eval_batch_size

    def embed(sequences):
        out = []
        for batch in _batches(sequences, size, None):
            ids, mask = pad_batch(batch, backbone.pad_id, device)
            out.append(F.normalize(mean_pool(backbone(ids, mask), mask).float(), dim=-1))
        return torch.cat(out)

    # one pass per task; a split sharing query ids with another split of the pass gets its own
    passes: dict[tuple, tuple[TaskData, list[str]]] = {}
    query_ids: dict[tuple, set[str]] = {}
    for task, split in {(id(t), s): (t, s) for t, s in wanted}.values():  # each (task, split) once, in order
        ids = {q["_id"] for q in task.queries[split] if q["_id"] in task.qrels[split]}
        key = ("corpus", id(task))
        if query_ids.get(key, set()) & ids:
            key = ("corpus", id(task), split)
        passes.setdefault(key, (task, []))[1].append(split)
        query_ids.setdefault(key, set()).update(ids)
    scored = {}
    for key, (task, splits) in passes.items():
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
        run, pool_run = rank_corpus(task.corpus, torch.cat(embeddings), [q for s in splits for q, _ in queries[s]],
                                    pool, lambda texts, counts=counts: embed(ir_framed(backbone, texts, limit, counts)),
                                    config.retrieval_chunk_docs, doc_text=lambda d: document_text(d, config))
        results = {}
        for split in splits:
            ids = [q for q, _ in queries[split]]
            qrels = {q: task.qrels[split][q] for q in ids}
            split_run, split_pool_run = {q: run[q] for q in ids}, {q: pool_run[q] for q in ids}
            result = (M.retrieval_scores(split_run, qrels)
                      | M.retrieval_scores(split_pool_run, qrels, judged_pool=pool))
            per_query = M.retrieval_per_query(split_run, qrels, measure="ndcg@10")
            items = [float(per_query[q]) for q in ids]
            flagged = {q["_id"]: q for q in task.queries[split]}
            results[split] = (_with_subsets(result, "ndcg@10", items, None, [flagged[q] for q in ids]), items)
        seconds = time.perf_counter() - started
        for split in splits:
            scored[(id(task), split)] = _Scored(*results[split], key, counts, seconds)
    return scored
