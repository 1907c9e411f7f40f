"""Task rows -> token features for each task type, and the cache a sweep shares.

- SC: ``[start] text [sep]`` (pairs through the task's template), the label.
- TC: words tokenized one by one; only a word's first sub-token carries its label.
- QA: ``[start] question [sep] context-window [sep]``, sliding windows sharing ``doc_stride``
  tokens (as HF ``run_qa``); an answer counts for a window only if the window holds all of it,
  else the window points at position 0 (no answer).
- IR: ``query_prefix + query`` and ``document_prefix + "title. text"`` (the paper's formats).
"""

from __future__ import annotations

import json
from pathlib import Path

from encoderlab.config import ConfigError
from encoderlab.evaluation.backbone import Backbone
from encoderlab.evaluation.corpus_cache import (CorpusTokens, cached_corpus, corpus_fingerprint, corpus_key,
                                               tokenize_corpus)
from encoderlab.evaluation.protocol import FinetuneConfig
from encoderlab.evaluation.registry import TaskData


def truncate(ids: list[int], limit: int, counter: dict) -> list[int]:
    if len(ids) > limit:
        counter["truncated"] = counter.get("truncated", 0) + 1
        return ids[:limit]
    return ids


def sc_features(backbone: Backbone, task: TaskData, rows: list[dict], limit: int, counter: dict) -> list[dict]:
    spec = task.spec
    out = []
    for row in rows:
        text = spec.pair_template.format(**row) if spec.pair_template else row[spec.text_fields[0]]
        out.append({"ids": backbone.frame(truncate(backbone.encode(text), limit - 2, counter)), "label": int(row["label"])})
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
    config.check_qa_windows(limit)
    out = []
    for index, row in enumerate(rows):
        question = truncate(backbone.encode(row["question"]), config.max_question_tokens, counter)
        encoded = backbone.tokenizer(row["context"], add_special_tokens=False, return_offsets_mapping=True)
        context_ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
        prefix = backbone.frame(question)
        room = limit - len(prefix) - 1
        step = room - config.doc_stride  # >= room / 4 (check_qa_windows): each token in at most four windows
        if step <= 0:  # a tokenizer that frames with more than one start/sep token
            raise ConfigError(f"QA window: {room} context tokens per window with doc_stride {config.doc_stride} "
                              "(lower doc_stride or raise max_length)")
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


def query_text(text: str, config: FinetuneConfig) -> str:
    return config.query_prefix + text


def document_text(doc: dict, config: FinetuneConfig) -> str:
    """The paper's document format: ``"Document: {title}. {text}"`` (no title: ``"Document: {text}"``)."""
    title = (doc.get("title") or "").strip()
    return config.document_prefix + (f"{title}. {doc['text']}" if title else doc["text"])


def ir_framed(backbone: Backbone, texts: list[str], limit: int, counter: dict) -> list[list[int]]:
    return [backbone.frame(truncate(ids, limit - 2, counter)) for ids in backbone.encode_many(texts)]


class FeatureCache:
    """Tokenized task features shared by the runs of one sweep.

    Features depend on the tokenizer, the rows and the input settings, never on the run's LR or
    seed, so the runs of a sweep (one model: tasks x LRs x seeds) build each (task, split) once.
    What was counted while building (truncated inputs, windowed contexts) is replayed on every
    use, so each run reports the same counts as if it had built the features itself. Callers
    must not modify the returned features.

    A retrieval corpus is kept as framed ids (:mod:`corpus_cache`), keyed by its content, the
    tokenizer, the document format and the length limit; with ``corpus_dir`` on disk, where every
    worker process and every later sweep with the same key reads it, else in this process's memory.
    """

    def __init__(self, corpus_dir: str | Path | None = None):
        self.corpus_dir = Path(corpus_dir) if corpus_dir is not None else None
        self._entries: dict[tuple, tuple[object, dict]] = {}
        self._tasks: dict[int, TaskData] = {}  # keeps keyed tasks alive, so their ids are never reused
        self._corpus_fingerprints: dict[int, str] = {}
        self._document_ids: dict[int, list[str]] = {}

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

    def document_ids(self, task: TaskData) -> list[str]:
        """The corpus's document ids, in order."""
        self._tasks.setdefault(id(task), task)
        if id(task) not in self._document_ids:
            self._document_ids[id(task)] = [d["_id"] for d in task.corpus]
        return self._document_ids[id(task)]

    def corpus(self, task: TaskData, backbone: Backbone, limit: int, config: FinetuneConfig,
               counts: dict) -> CorpusTokens:
        """The framed ids of ``task``'s corpus documents (the protocol's document format, truncated to
        ``limit``), tokenized once and shared; what tokenizing counted is replayed into ``counts``."""
        self._tasks.setdefault(id(task), task)
        if id(task) not in self._corpus_fingerprints:
            self._corpus_fingerprints[id(task)] = corpus_fingerprint(task.corpus)
        key = corpus_key(self._corpus_fingerprints[id(task)], backbone, limit, config.document_prefix)

        def texts():
            return (document_text(d, config) for d in task.corpus)

        def frame(batch, recorded):
            return ir_framed(backbone, batch, limit, recorded)

        return self.get(task, ("corpus", json.dumps(key, sort_keys=True)), counts,
                        lambda recorded: _recorded(cached_corpus(self.corpus_dir, key, texts, frame)
                                                   if self.corpus_dir is not None else tokenize_corpus(texts(), frame),
                                                   recorded))


def _recorded(tokens: CorpusTokens, recorded: dict) -> CorpusTokens:
    recorded.update(tokens.counts)
    return tokens
