"""Fine-tune one backbone on one task with one (LR, seed), the paper's protocol, and score it.

Protocol (SYSTEM.md section 3): bidirectional attention for every model; up to 1,000 steps or
one epoch, whichever comes first; batch 32; AdamW; 10% linear warmup then linear decay; heads:
SC linear on mean-pooled tokens, TC per-token linear with first-sub-token labels, QA start/end
logits with a sliding window and SQuAD-v2 no-answer at the first position, IR mean pooling with
InfoNCE over in-batch negatives (cosine, temperature 0.05). Batches are padded to their longest
member only. The head's initialisation and the data order depend on the run seed; data splits
never do. A non-finite loss marks the run as diverged instead of failing the sweep.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from encoderlab.config import ConfigError
from encoderlab.evaluation import metrics as M
from encoderlab.evaluation.tasks import TaskData

PROTOCOL_VERSION = "1"


@dataclass(kw_only=True)
class FinetuneConfig:
    max_steps: int = 1000
    batch_size: int = 32
    eval_batch_size: int = 64
    max_length: int = 512
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    doc_stride: int = 128  # tokens shared by consecutive windows of a long context
    max_answer_tokens: int = 30
    temperature: float = 0.05
    max_eval_examples: int | None = None  # cap validation/test sizes (smoke runs); None = all
    retrieval_chunk_docs: int = 65536  # corpus documents embedded and scored at a time (memory, not results)

    def __post_init__(self) -> None:
        if self.retrieval_chunk_docs <= 0:
            raise ConfigError(f"fine-tuning config: retrieval_chunk_docs must be a positive number of documents, "
                              f"got {self.retrieval_chunk_docs}")


# -- backbones ---------------------------------------------------------------------------------
class Backbone(nn.Module):
    """An encoderlab checkpoint (bidirectional mode) or any transformers encoder, same interface."""

    def __init__(self, path: str, trust_remote_code: bool = False):
        super().__init__()
        from transformers import AutoTokenizer

        from encoderlab.model.checkpoint import CHECKPOINT_FORMAT

        config_file = Path(path) / "config.json"
        self.native = config_file.is_file() and f'"{CHECKPOINT_FORMAT}"' in config_file.read_text()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        except Exception as err:
            raise ConfigError(f"{path}: no usable tokenizer ({type(err).__name__}: {err}); an evaluated model needs "
                              "its tokenizer files next to the weights") from None
        if self.native:
            from encoderlab.model import load_checkpoint

            self.model = load_checkpoint(path)
            self.hidden_size = self.model.config.hidden_size
            self.max_positions = self.model.config.max_position_embeddings
        else:
            from transformers import AutoModel

            self.model = AutoModel.from_pretrained(path, trust_remote_code=trust_remote_code)
            self.hidden_size = self.model.config.hidden_size
            self.max_positions = getattr(self.model.config, "max_position_embeddings", 512)
        self.start_id = self.tokenizer.cls_token_id if self.tokenizer.cls_token_id is not None else self.tokenizer.bos_token_id
        self.sep_id = self.tokenizer.sep_token_id if self.tokenizer.sep_token_id is not None else self.tokenizer.eos_token_id
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else (self.sep_id or 0)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.native:
            return self.model(input_ids, attention="bidirectional", attention_mask=attention_mask).hidden_states
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def frame(self, ids: list[int], second: list[int] | None = None) -> list[int]:
        """[start] ids [sep] (second [sep]) with the model's own special tokens."""
        head = [self.start_id] if self.start_id is not None else []
        sep = [self.sep_id] if self.sep_id is not None else []
        out = head + ids + sep
        return out + second + sep if second is not None else out

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def pad_batch(sequences: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids.to(device), mask.to(device)


# -- features per task type ----------------------------------------------------------------------
def _truncate(ids: list[int], limit: int, counter: dict) -> list[int]:
    if len(ids) > limit:
        counter["truncated"] = counter.get("truncated", 0) + 1
        return ids[:limit]
    return ids


def sc_features(backbone: Backbone, task: TaskData, rows: list[dict], limit: int, counter: dict) -> list[dict]:
    spec = task.spec
    out = []
    for row in rows:
        text = spec.pair_template.format(**row) if spec.pair_template else row[spec.text_fields[0]]
        out.append({"ids": backbone.frame(_truncate(backbone.encode(text), limit - 2, counter)), "label": int(row["label"])})
    return out


def tc_features(backbone: Backbone, rows: list[dict], limit: int, counter: dict) -> list[dict]:
    out = []
    for row in rows:
        ids, labels, first_of_word = [], [], []
        for word, tag in zip(row["tokens"], row["ner_tags"]):
            pieces = backbone.encode((" " if ids else "") + word) or [backbone.pad_id]
            first_of_word.append(len(ids))
            labels += [int(tag)] + [-100] * (len(pieces) - 1)  # only the first sub-token carries the label
            ids += pieces
        if len(ids) > limit - 2:
            counter["truncated"] = counter.get("truncated", 0) + 1
            counter["truncated_words"] = counter.get("truncated_words", 0) + sum(f >= limit - 2 for f in first_of_word)
            ids, labels = ids[: limit - 2], labels[: limit - 2]
        framed = backbone.frame(ids)
        offset = 1 if backbone.start_id is not None else 0
        out.append({"ids": framed, "labels": [-100] * offset + labels + [-100] * (len(framed) - len(labels) - offset),
                    "first": [f + offset for f in first_of_word if f < limit - 2], "words": len(row["tokens"]),
                    "gold": [int(t) for t in row["ner_tags"]]})
    return out


def qa_features(backbone: Backbone, rows: list[dict], config: FinetuneConfig, limit: int, counter: dict) -> list[dict]:
    out = []
    for index, row in enumerate(rows):
        question = _truncate(backbone.encode(row["question"]), 64, counter)
        encoded = backbone.tokenizer(row["context"], add_special_tokens=False, return_offsets_mapping=True)
        context_ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
        prefix = backbone.frame(question)
        room = limit - len(prefix) - 1
        step = max(1, room - config.doc_stride)  # consecutive windows share doc_stride tokens (as HF run_qa)
        starts = list(range(0, max(1, len(context_ids) - room + step), step)) or [0]
        if len(starts) > 1:
            counter["windowed"] = counter.get("windowed", 0) + 1
        answer = (row["answers"]["text"][0], row["answers"]["answer_start"][0]) if row["answers"]["text"] else None
        for window_start in starts:
            window = context_ids[window_start : window_start + room]
            ids = prefix + window + ([backbone.sep_id] if backbone.sep_id is not None else [])
            start_label = end_label = 0  # no answer in this window: point at the first position
            window_offsets = offsets[window_start : window_start + len(window)]
            if answer is not None:
                char_start, char_end = answer[1], answer[1] + len(answer[0])
                tokens = [i for i, (a, b) in enumerate(window_offsets) if a < char_end and b > char_start]
                # the answer counts for this window only if the window holds all of it
                if tokens and window_offsets[tokens[0]][0] <= char_start and window_offsets[tokens[-1]][1] >= char_end:
                    start_label, end_label = len(prefix) + tokens[0], len(prefix) + tokens[-1]
            out.append({"ids": ids, "start": start_label, "end": end_label, "example": index,
                        "context_offset": len(prefix), "offsets": window_offsets})
    return out


class FeatureCache:
    """Tokenized task features shared by the runs of one sweep.

    Features depend on the tokenizer, the rows and the length settings, never on the run's LR or
    seed, so the runs of a sweep (one model: tasks x LRs x seeds) build each (task, split) once.
    What was counted while building (truncated inputs, windowed contexts) is replayed on every
    use, so each run reports the same counts as if it had built the features itself. Callers
    must not modify the returned features.
    """

    def __init__(self):
        self._entries: dict[tuple, tuple[object, dict]] = {}
        self._tasks: dict[int, TaskData] = {}  # keeps keyed tasks alive, so their ids are never reused

    def get(self, task: TaskData, key: tuple, counts: dict, build):
        """The features of ``task`` under ``key`` (split and settings); ``build(counts)`` makes them."""
        self._tasks.setdefault(id(task), task)
        key = (id(task), *key)
        if key not in self._entries:
            recorded: dict = {}
            self._entries[key] = (build(recorded), recorded)
        features, recorded = self._entries[key]
        for name, value in recorded.items():
            counts[name] = counts.get(name, 0) + value
        return features


def _train_features(backbone: Backbone, task: TaskData, config: FinetuneConfig, limit: int, counts: dict) -> list:
    spec = task.spec
    if spec.type == "sc":
        return sc_features(backbone, task, task.splits["train"], limit, counts)
    if spec.type == "tc":
        return tc_features(backbone, task.splits["train"], limit, counts)
    if spec.type == "qa":
        return qa_features(backbone, task.splits["train"], config, limit, counts)
    docs = {d["_id"]: (d.get("title", "") + " " + d["text"]).strip() for d in task.corpus}
    queries = {q["_id"]: q["text"] for q in task.queries["train"]}
    return [{"q": backbone.frame(_truncate(backbone.encode(queries[q]), limit - 2, counts)),
             "d": backbone.frame(_truncate(backbone.encode(docs[d]), limit - 2, counts))}
            for q, rel in task.qrels["train"].items() for d, score in rel.items() if score > 0 and q in queries]


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


def _schedule(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def _batches(items: list, size: int, rng: random.Random | None):
    order = list(range(len(items)))
    if rng is not None:
        rng.shuffle(order)
    for start in range(0, len(order), size):
        yield [items[i] for i in order[start : start + size]]


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
    features = features if features is not None else FeatureCache()
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    backbone = Backbone(backbone_path, trust_remote_code=trust_remote_code).to(device)
    spec = task.spec
    limit = min(config.max_length, backbone.max_positions)
    counts: dict = {}
    n_labels = len(spec.label_names)
    head = {"sc": lambda: nn.Linear(backbone.hidden_size, n_labels), "tc": lambda: nn.Linear(backbone.hidden_size, n_labels),
            "qa": lambda: nn.Linear(backbone.hidden_size, 2), "ir": lambda: nn.Identity()}[spec.type]().to(device)
    params = list(backbone.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=config.weight_decay)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def cap(rows):
        return rows[: config.max_eval_examples] if config.max_eval_examples else rows

    cache_key = (str(backbone_path), limit, config.doc_stride, config.max_eval_examples)
    train = features.get(task, (*cache_key, "train"), counts,
                         lambda recorded: _train_features(backbone, task, config, limit, recorded))
    if not train:
        raise ConfigError(f"task {spec.name!r}: the train split is empty")
    steps = min(config.max_steps, math.ceil(len(train) / config.batch_size))
    warmup = max(1, int(config.warmup_ratio * steps))
    started = time.perf_counter()
    status, step = "ok", 0
    backbone.train()
    for step, batch in enumerate(_batches(train, config.batch_size, rng)):
        if step >= steps:
            break
        for group in optimizer.param_groups:
            group["lr"] = lr * _schedule(step, steps, warmup)
        with autocast:
            loss = _loss(spec.type, backbone, head, batch, device, config)
        if not torch.isfinite(loss):
            status = "diverged"
            break
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    train_seconds = time.perf_counter() - started
    if status == "diverged":
        return [RunResult("diverged", math.nan, math.nan, {}, None, step, train_seconds, 0.0, dict(counts))
                for _ in test_tasks]
    started = time.perf_counter()
    backbone.eval()
    scale = 1.0 if spec.type == "qa" else 100.0  # every main score on the paper's 0-100 scale (SQuAD already is)
    with torch.no_grad(), autocast:
        validation = _evaluate(spec.type, backbone, head, task, "validation", config, limit, counts, cap, device,
                               features, cache_key)
        validation_seconds = time.perf_counter() - started
        results = []
        for test_task in test_tasks:
            started, run_counts = time.perf_counter(), dict(counts)
            test = _evaluate(spec.type, backbone, head, test_task, "test", config, limit, run_counts, cap, device,
                             features, cache_key)
            metrics = ({f"validation/{k}": v for k, v in validation[0].items()}
                       | {f"test/{k}": v for k, v in test[0].items()})
            results.append(RunResult("ok", scale * validation[0][spec.metric], scale * test[0][test_task.spec.metric],
                                     metrics, test[1], steps, train_seconds,
                                     validation_seconds + time.perf_counter() - started, run_counts))
    return results


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
        return {"accuracy": M.accuracy(predictions, labels)}, items
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
        return M.entity_scores(gold_tags, pred_tags), items
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
        return scores, items
    # retrieval: rank the whole corpus for the split's queries by cosine similarity
    queries = [(q["_id"], q["text"]) for q in task.queries[split] if q["_id"] in task.qrels[split]]
    queries = cap(queries)

    def framed(texts, recorded):
        return [backbone.frame(_truncate(backbone.encode(t), limit - 2, recorded)) for t in texts]

    def embed(sequences):
        out = []
        for batch in _batches(sequences, size, None):
            ids, mask = pad_batch(batch, backbone.pad_id, device)
            out.append(F.normalize(mean_pool(backbone(ids, mask), mask).float(), dim=-1))
        return torch.cat(out)

    query_ids = cache.get(task, key, counts, lambda recorded: framed([t for _, t in queries], recorded))
    query_emb = embed(query_ids)
    pool = {d for rel in (r for s in task.qrels.values() for r in s.values()) for d in rel}
    run, pool_run = _rank_corpus(task.corpus, query_emb, [q for q, _ in queries], pool,
                                 lambda texts: embed(framed(texts, counts)), config.retrieval_chunk_docs)
    qrels = {qid: task.qrels[split][qid] for qid, _ in queries}
    result = M.retrieval_scores(run, qrels) | M.retrieval_scores(pool_run, qrels, judged_pool=pool)
    import ir_measures
    from ir_measures import nDCG

    per_query = {m.query_id: m.value for m in ir_measures.iter_calc([nDCG @ 10], qrels, run)}
    return result, [float(per_query.get(qid, 0.0)) for qid, _ in queries]


RETRIEVAL_DEPTH = 100  # documents kept per query: enough for NDCG@10, MRR@10 and Recall@100


def _rank_corpus(corpus: list[dict], query_emb: torch.Tensor, query_ids: list[str], pool: set[str], embed,
                 chunk_docs: int) -> tuple[dict, dict]:
    """Top documents per query over the whole corpus, and over its judged pool only.

    The corpus is tokenized, embedded and scored ``chunk_docs`` documents at a time, keeping a
    running top-``RETRIEVAL_DEPTH`` per query, so memory does not grow with the corpus (MS MARCO:
    8.8M passages, whose full query x document score matrix would not fit anywhere). The pool
    ranking is exact too: pool documents compete only with each other, not cut by the full top-100.
    """
    depth = min(RETRIEVAL_DEPTH, len(corpus))
    device = query_emb.device
    empty = (torch.empty(len(query_ids), 0, device=device), torch.empty(len(query_ids), 0, dtype=torch.long,
                                                                          device=device))
    best, best_pool = empty, empty
    for start in range(0, len(corpus), chunk_docs):
        rows = corpus[start : start + chunk_docs]
        doc_emb = embed([(d.get("title", "") + " " + d["text"]).strip() for d in rows])
        scores = query_emb @ doc_emb.T
        index = torch.arange(start, start + len(rows), device=device).expand_as(scores)
        in_pool = torch.tensor([d["_id"] in pool for d in rows], device=device)
        best = _merge_top(best, scores, index, depth)
        best_pool = _merge_top(best_pool, scores.masked_fill(~in_pool, -math.inf), index, depth)

    def as_run(top):
        values, positions = (t.cpu().tolist() for t in top)
        return {qid: {corpus[i]["_id"]: v for v, i in zip(vs, ps) if v != -math.inf}
                for qid, vs, ps in zip(query_ids, values, positions)}

    return as_run(best), as_run(best_pool)


def _merge_top(top: tuple[torch.Tensor, torch.Tensor], scores: torch.Tensor, index: torch.Tensor, k: int):
    values = torch.cat([top[0], scores], dim=1)
    positions = torch.cat([top[1], index], dim=1)
    kept = values.topk(min(k, values.shape[1]), dim=1)
    return kept.values, positions.gather(1, kept.indices)
