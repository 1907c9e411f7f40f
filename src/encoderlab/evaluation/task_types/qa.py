"""Extractive QA (SQuAD, SQuAD v2, ReCoRD, toy-qa): start/end logits over sliding windows of the
context, the best span of at most ``max_answer_tokens``, SQuAD-v2 no-answer at the first position,
EM/F1 by the official scripts' rules."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from encoderlab.evaluation import metrics as M
from encoderlab.evaluation.backbone import pad_batch
from encoderlab.evaluation.features import qa_features
from encoderlab.evaluation.formats import check_answers, check_unique
from encoderlab.evaluation.task_types.base import TaskType, batches, register, with_subsets


class ExtractiveQA(TaskType):
    name = "qa"
    scale = 1.0  # SQuAD's scores are on the 0-100 scale already

    def required_fields(self, spec) -> tuple[str, ...]:
        return ("context", "question", "answers")

    def check_row(self, spec, row: dict, where: str) -> None:
        check_answers(spec, row, where)

    def check_rows(self, spec, rows: list[dict], where: str) -> None:
        check_unique([str(row.get("id", number)) for number, row in enumerate(rows, start=1)], "question id", where)

    def check_protocol(self, config, limit: int) -> None:
        config.check_qa_windows(limit)

    def head(self, spec, hidden_size: int):
        return nn.Linear(hidden_size, 2)

    def train_features(self, backbone, task, config, limit, counts):
        return qa_features(backbone, task.splits["train"], config, limit, counts)

    def loss(self, backbone, head, batch, device, config):
        ids, mask = pad_batch([b["ids"] for b in batch], backbone.pad_id, device)
        logits = head(backbone(ids, mask)).float().masked_fill(~mask.bool().unsqueeze(-1), -1e4)
        start = torch.tensor([b["start"] for b in batch], device=device)
        end = torch.tensor([b["end"] for b in batch], device=device)
        return (F.cross_entropy(logits[..., 0], start) + F.cross_entropy(logits[..., 1], end)) / 2

    def evaluate(self, backbone, head, task, split, rows, config, limit, counts, device, cache, key):
        spec = task.spec
        features = cache.get(task, key, counts, lambda recorded: qa_features(backbone, rows, config, limit, recorded))
        best: dict[int, tuple[float, str]] = {}
        null: dict[int, float] = {}
        for batch in batches(features, config.eval_batch_size, None):
            ids, mask = pad_batch([b["ids"] for b in batch], backbone.pad_id, device)
            logits = head(backbone(ids, mask)).float()
            for b, row_logits in zip(batch, logits):
                self._best_span(b, row_logits, rows, config, best, null)
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
        return with_subsets(scores, spec.metric, items, None, rows), items

    @staticmethod
    def _best_span(b: dict, row_logits, rows: list[dict], config, best: dict, null: dict) -> None:
        """Updates the example's best span (score, text) and lowest no-answer score with one window."""
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


register(ExtractiveQA())
