"""Sequence classification (SST-2, MNLI, QQP, toy-sentiment, toy-nli): a linear head on the
mean-pooled tokens, cross-entropy, accuracy."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from encoderlab.config import ConfigError
from encoderlab.evaluation import metrics as M
from encoderlab.evaluation.backbone import mean_pool, pad_batch
from encoderlab.evaluation.features import sc_features
from encoderlab.evaluation.formats import parse_label
from encoderlab.evaluation.task_types.base import TaskType, batches, register, with_subsets


class SequenceClassification(TaskType):
    name = "sc"

    def required_fields(self, spec) -> tuple[str, ...]:
        return (*spec.text_fields, "label")

    def check_row(self, spec, row: dict, where: str) -> None:
        names = spec.label_names
        label = parse_label(row["label"], names, where)
        if not 0 <= label < len(names):
            raise ConfigError(f"{where}: label {label} outside {list(names)} (task {spec.name!r})")
        row["label"] = label

    def head(self, spec, hidden_size: int):
        return nn.Linear(hidden_size, len(spec.label_names))

    def train_features(self, backbone, task, config, limit, counts):
        return sc_features(backbone, task, task.splits["train"], limit, counts)

    def loss(self, backbone, head, batch, device, config):
        ids, mask = pad_batch([b["ids"] for b in batch], backbone.pad_id, device)
        logits = head(mean_pool(backbone(ids, mask), mask)).float()
        return F.cross_entropy(logits, torch.tensor([b["label"] for b in batch], device=device))

    def evaluate(self, backbone, head, task, split, rows, config, limit, counts, device, cache, key):
        features = cache.get(task, key, counts, lambda recorded: sc_features(backbone, task, rows, limit, recorded))
        predictions = []
        for batch in batches(features, config.eval_batch_size, None):
            ids, mask = pad_batch([b["ids"] for b in batch], backbone.pad_id, device)
            predictions += head(mean_pool(backbone(ids, mask), mask)).argmax(-1).tolist()
        labels = [f["label"] for f in features]
        items = [float(p == y) for p, y in zip(predictions, labels)]
        return with_subsets({"accuracy": M.accuracy(predictions, labels)}, "accuracy", items, None, rows), items


register(SequenceClassification())
