"""Fine-tune one backbone on one task with one (LR, seed), the paper's protocol, and score it.

Protocol (``protocol.py``): bidirectional attention for every model; up to
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

import torch
from torch import nn

from encoderlab.config import ConfigError
from encoderlab.evaluation.backbone import Backbone
from encoderlab.evaluation.features import FeatureCache, qa_features, sc_features, tc_features
from encoderlab.evaluation.protocol import PROTOCOL_VERSION, FinetuneConfig, precision_of
from encoderlab.evaluation.registry import TaskData
from encoderlab.evaluation.retrieval import RETRIEVAL_DEPTH
from encoderlab.evaluation.task_types import task_type
from encoderlab.evaluation.task_types.base import batches

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


def training_steps(kind: str, examples: int, config: FinetuneConfig) -> int:
    """The steps of a run of task type ``kind`` on ``examples`` (the type decides: min(max_steps,
    one epoch); TC one full epoch when ``tc_full_epoch``, the paper's EncodEval)."""
    return task_type(kind).training_steps(examples, config)


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
    kind = task_type(spec.type)
    limit = min(config.max_length, backbone.max_positions)
    kind.check_protocol(config, limit)
    counts: dict = {}
    head = kind.head(spec, backbone.hidden_size).to(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def cap(rows):
        return rows[: config.max_eval_examples] if config.max_eval_examples else rows

    cache_key = (str(backbone_path), limit, json.dumps(config.settings(), sort_keys=True))
    train = features.get(task, (*cache_key, "train"), counts,
                         lambda recorded: kind.train_features(backbone, task, config, limit, recorded))
    if not train:
        raise ConfigError(f"task {spec.name!r}: the train split is empty")
    steps = kind.training_steps(len(train), config)
    optimizer, scheduler, warmup = build_optimizer([backbone, head], lr, config, steps, fused=device.type == "cuda")
    effective = {"max_length": limit, "steps": steps, "warmup_steps": warmup, "train_examples": len(train),
                 "backbone": backbone.kind, "attention": config.attention, "precision": precision_of(device.type),
                 "device": device.type}
    started = time.perf_counter()
    status, step, losses = _train(kind, backbone, head, train, steps, optimizer, scheduler, rng, autocast, device,
                                  config, effective)
    train_seconds = time.perf_counter() - started
    if status == "ok" and (rise := loss_exploded(losses)):
        status, effective["diverged"] = "diverged", rise
    effective["loss_first_last"] = _loss_ends(losses)
    if status == "diverged":
        return [RunResult("diverged", math.nan, math.nan, {}, None, step, train_seconds, 0.0, dict(counts), effective)
                for _ in test_tasks]
    backbone.eval()
    scale = kind.scale  # every main score on the paper's 0-100 scale
    wanted = [(task, "validation"), *[(t, "test") for t in test_tasks]]
    with torch.no_grad(), autocast:
        scored = kind.score(backbone, head, wanted, config, limit, cap, device, features, cache_key)
    validation = scored[(id(task), "validation")]
    settings = config.settings()
    return [_result(validation, scored[(id(test_task), "test")], scale, kind.main_metric(spec, settings),
                    task_type(test_task.spec.type).main_metric(test_task.spec, settings), steps, train_seconds, counts,
                    effective) for test_task in test_tasks]


def _train(kind, backbone, head, train: list, steps: int, optimizer, scheduler, rng, autocast, device, config,
           effective: dict) -> tuple[str, int, list[float]]:
    """At most ``steps`` optimizer steps over one shuffled pass of ``train``; (status, steps, losses).
    A non-finite loss stops the run as diverged (said in ``effective``)."""
    params = list(backbone.parameters()) + list(head.parameters())
    status, step, losses = "ok", 0, []
    backbone.train()
    for batch in batches(train, config.batch_size, rng):  # steps <= one epoch: a single pass
        if step >= steps:
            break
        with autocast:
            loss = kind.loss(backbone, head, batch, device, config)
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
    return status, step, losses


def _result(validation, test, scale: float, metric: str, test_metric: str, steps: int, train_seconds: float,
            counts: dict, effective: dict) -> RunResult:
    """One test task's result of a run: its scores, metrics and what its passes counted."""
    passes = {validation.pass_id: validation, test.pass_id: test}  # a pass shared by both counts once
    run_counts = dict(counts)
    for scoring in passes.values():
        for name, value in scoring.counts.items():
            run_counts[name] = run_counts.get(name, 0) + value
    # per-item lists (held-out mask, entity counts) are kept for the test split only: nothing reads them
    # for validation, which selects the LR by its score
    metrics = ({f"validation/{k}": v for k, v in validation.metrics.items() if not isinstance(v, list)}
               | {f"test/{k}": v for k, v in test.metrics.items()})
    return RunResult("ok", scale * validation.metrics[metric], scale * test.metrics[test_metric], metrics, test.items,
                     steps, train_seconds, sum(p.seconds for p in passes.values()), run_counts, effective)


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
    have = task_type(task.spec.type).splits_of(task)
    if not have or split not in have:
        raise ConfigError(f"task {task.spec.name!r}: no {split!r} split (it has {sorted(have or {})}); the protocol "
                          f"needs train and validation of the trained task and test of each scored task")
