"""Token classification (CoNLL-2003, OntoNotes 5, UNER, toy-ner): a per-token linear head trained on
each word's first sub-token, IOB2 tags, seqeval entity F1; one full epoch by default (the paper's
EncodEval)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from encoderlab.config import ConfigError
from encoderlab.evaluation import metrics as M
from encoderlab.evaluation.backbone import pad_batch
from encoderlab.evaluation.features import tc_features
from encoderlab.evaluation.formats import IOB1_HINT, iob2_error, parse_label
from encoderlab.evaluation.items import entity_counts
from encoderlab.evaluation.task_types.base import TaskType, batches, register, with_subsets


class TokenClassification(TaskType):
    name = "tc"

    def required_fields(self, spec) -> tuple[str, ...]:
        return ("tokens", "ner_tags")

    def normalise(self, spec, rows: list[dict], where: str) -> list[dict]:
        """Tags under ``ner_tags`` (tner/ontonotes5 calls the column ``tags``)."""
        for number, row in enumerate(rows, start=1):
            if "ner_tags" not in row:
                if spec.tags_field not in row:
                    names = " or ".join(dict.fromkeys(("ner_tags", spec.tags_field)))
                    raise ConfigError(f"{where}: row {number} of task {spec.name!r} has no {names} field; "
                                      f"fields are {sorted(row)}")
                row["ner_tags"] = row.pop(spec.tags_field)
        return rows

    def check_row(self, spec, row: dict, where: str) -> None:
        names = spec.label_names
        tags = [parse_label(t, names, where) for t in row["ner_tags"]]
        if any(not 0 <= t < len(names) for t in tags) or len(tags) != len(row["tokens"]):
            raise ConfigError(f"{where}: a tag id outside the {len(names)} labels of {spec.name!r}, or not one tag "
                              "per token")
        bad = iob2_error([names[t] for t in tags])
        if bad is not None:
            raise ConfigError(f"{where}, token {bad + 1} ({row['tokens'][bad]!r}): tag {names[tags[bad]]} follows "
                              f"{names[tags[bad - 1]] if bad else 'the sentence start'}, which IOB2 does not allow "
                              f"(an entity starts with B-){IOB1_HINT}")
        row["ner_tags"] = tags

    def training_steps(self, examples: int, config) -> int:
        epoch = math.ceil(examples / config.batch_size)
        return epoch if config.tc_full_epoch else min(config.max_steps, epoch)

    def head(self, spec, hidden_size: int):
        return nn.Linear(hidden_size, len(spec.label_names))

    def train_features(self, backbone, task, config, limit, counts):
        return tc_features(backbone, task.splits["train"], limit, counts)

    def loss(self, backbone, head, batch, device, config):
        ids, mask = pad_batch([b["ids"] for b in batch], backbone.pad_id, device)
        hidden = backbone(ids, mask)
        labels = torch.full(ids.shape, -100, dtype=torch.long)
        for i, b in enumerate(batch):
            labels[i, : len(b["labels"])] = torch.tensor(b["labels"])
        return F.cross_entropy(head(hidden).float().flatten(0, 1), labels.to(device).flatten(), ignore_index=-100)

    def evaluate(self, backbone, head, task, split, rows, config, limit, counts, device, cache, key):
        features = cache.get(task, key, counts, lambda recorded: tc_features(backbone, rows, limit, recorded))
        names = task.spec.label_names
        gold_tags, pred_tags, items = [], [], []
        for batch in batches(features, config.eval_batch_size, None):
            ids, mask = pad_batch([b["ids"] for b in batch], backbone.pad_id, device)
            best = head(backbone(ids, mask)).argmax(-1).tolist()
            for b, row in zip(batch, best):
                words = [names[row[f]] for f in b["first"]] + ["O"] * (b["words"] - len(b["first"]))  # truncated: O
                gold = [names[t] for t in b["gold"]]
                gold_tags.append(gold)
                pred_tags.append(words)
                items.append(sum(g == p for g, p in zip(gold, words)) / len(gold))
        counts_per_item = entity_counts(gold_tags, pred_tags)
        scores = M.entity_scores(gold_tags, pred_tags) | {"entity_counts": counts_per_item}
        return with_subsets(scores, task.spec.metric, items, counts_per_item, rows), items


register(TokenClassification())
