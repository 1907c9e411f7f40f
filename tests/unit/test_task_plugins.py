"""Task types are plug-ins: a fifth type (sentence regression, STS-B style: a score per sentence, a
linear head on mean-pooled tokens, mean squared error, Pearson correlation) is defined and
registered here, in the test file alone, and runs through the same loader checks and the same
fine-tuning loop as the four built-in types, with no change to encoderlab."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from encoderlab.config import ConfigError
from encoderlab.evaluation.backbone import mean_pool, pad_batch
from encoderlab.evaluation.features import truncate
from encoderlab.evaluation.finetune import FinetuneConfig, finetune
from encoderlab.evaluation.registry import TaskData, TaskSpec
from encoderlab.evaluation.task_types import TASK_TYPES, TaskType, register, task_type
from encoderlab.evaluation.task_types.base import batches, with_subsets
from encoderlab.evaluation.tasks import _check_rows


class SentenceRegression(TaskType):
    name = "regression"

    def required_fields(self, spec):
        return ("sentence", "score")

    def check_row(self, spec, row, where):
        if isinstance(row["score"], bool) or not isinstance(row["score"], (int, float)) or not math.isfinite(row["score"]):
            raise ConfigError(f"{where}: score {row['score']!r} is not a finite number")

    def head(self, spec, hidden_size):
        return nn.Linear(hidden_size, 1)

    def _features(self, backbone, rows, limit, counts):
        encoded = backbone.encode_many([r["sentence"] for r in rows])
        return [{"ids": backbone.frame(truncate(ids, limit - 2, counts)), "score": float(r["score"])}
                for ids, r in zip(encoded, rows)]

    def train_features(self, backbone, task, config, limit, counts):
        return self._features(backbone, task.splits["train"], limit, counts)

    def _predict(self, backbone, head, batch, device):
        ids, mask = pad_batch([b["ids"] for b in batch], backbone.pad_id, device)
        return head(mean_pool(backbone(ids, mask), mask)).float().squeeze(-1)

    def loss(self, backbone, head, batch, device, config):
        target = torch.tensor([b["score"] for b in batch], device=device)
        return F.mse_loss(self._predict(backbone, head, batch, device), target)

    def evaluate(self, backbone, head, task, split, rows, config, limit, counts, device, cache, key):
        features = cache.get(task, key, counts, lambda recorded: self._features(backbone, rows, limit, recorded))
        predicted = [p for batch in batches(features, config.eval_batch_size, None)
                     for p in self._predict(backbone, head, batch, device).tolist()]
        gold = [f["score"] for f in features]
        pearson = float(np.corrcoef(predicted, gold)[0, 1]) if np.std(predicted) > 0 else 0.0
        items = [-(p - g) ** 2 for p, g in zip(predicted, gold)]
        return with_subsets({"pearson": pearson, "mse": -float(np.mean(items))}, "pearson", items, None, rows), items


SENTENCES = [("the plot was superb", 0.9), ("the acting was dull", 0.1), ("a fine and moving film", 0.8),
             ("a tedious mess", 0.0), ("quite good overall", 0.7), ("rather poor", 0.2),
             ("the music was wonderful", 1.0), ("the dialogue was awful", 0.05)]


@pytest.fixture(scope="module")
def regression_task():
    register(SentenceRegression())
    spec = TaskSpec(name="toy-regression", type="regression", metric="pearson")
    rows = [{"sentence": s, "score": y} for s, y in SENTENCES]
    task = TaskData(spec)
    task.splits = {name: _check_rows(spec, name, [dict(r) for r in rows * copies], f"toy-regression:{name}")
                   for name, copies in (("train", 8), ("validation", 2), ("test", 2))}
    yield task
    TASK_TYPES.pop("regression")


def test_a_fifth_task_type_registers_from_this_file_and_fine_tunes(tiny_checkpoint, regression_task):
    assert isinstance(task_type("regression"), SentenceRegression) and list(TASK_TYPES)[-1] == "regression"
    assert regression_task.spec.category == "REGRESSION"  # the report's category: the type's name
    config = FinetuneConfig(max_steps=30, batch_size=8, max_length=64)
    result = finetune(str(tiny_checkpoint), regression_task, 1e-3, 0, config)
    assert result.status == "ok" and result.steps == 8  # one epoch of 64 rows: min(max_steps, 8 batches)
    first, last = result.effective["loss_first_last"]
    assert last < first  # the regression head and the backbone learnt through the plug-in's loss
    assert result.validation == pytest.approx(100 * result.metrics["validation/pearson"])
    assert -100.0 <= result.test <= 100.0 and result.metrics["test/mse"] >= 0.0
    assert len(result.test_items) == len(regression_task.splits["test"])


def test_the_loader_checks_rows_through_the_plug_in(regression_task):
    spec = regression_task.spec
    with pytest.raises(ConfigError, match=r"toy:train: row 2: score 'high' is not a finite number"):
        _check_rows(spec, "train", [{"sentence": "a", "score": 0.5}, {"sentence": "b", "score": "high"}], "toy:train")
    with pytest.raises(ConfigError, match=r"lack \['score'\]"):
        _check_rows(spec, "train", [{"sentence": "a"}], "toy:train")


def test_an_unknown_task_type_is_named():
    with pytest.raises(ConfigError, match="unknown task type 'ranking'; known: sc, tc, qa, ir"):
        task_type("ranking")
