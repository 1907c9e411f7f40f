"""Sample sources for pretraining: random access by global sample index.

Every run reads samples in the fixed global order 0, 1, 2, ...; step ``s`` of a run with a global
batch of ``G`` samples consumes indices ``[s*G, (s+1)*G)``, split evenly across ranks and
micro-batches. Because a sample is a pure function of its index, a resumed, re-sharded or
branched run sees exactly the samples the original run would have seen at the same step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from encoderlab.config import ConfigError
from encoderlab.model import ModelConfig
from encoderlab.objectives import TokenBatch
from encoderlab.training.config import DataConfig

SYNTHETIC_SPECIAL = {"pad": 0, "bos": 1, "eos": 2, "mask": 3}
_FIRST_REGULAR = 4


class SampleSource(Protocol):
    seq_len: int

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(input ids, document ids) of length ``seq_len`` for global sample ``index``."""


class SyntheticSource:
    """A deterministic, learnable token stream for tests and smoke runs.

    Each document is ``bos``, a walk ``x -> (a * x + b) mod span`` whose rule (a, b) is one of a few
    "topics", and ``eos``. The next token is predictable from the previous one and the topic,
    which a model infers from context: CLM and MLM losses both fall quickly.
    """

    def __init__(self, vocab_size: int, seq_len: int, mean_document_length: int, seed: int, num_topics: int = 4):
        self.span = min(vocab_size - _FIRST_REGULAR, 256)
        if self.span < 8:
            raise ConfigError(f"synthetic data: vocab_size {vocab_size} is too small (need at least 12)")
        self.seq_len = seq_len
        self.mean_document_length = max(4, mean_document_length)
        self.seed = seed
        rules = np.random.default_rng([seed, 7]).integers(1, self.span, size=(num_topics, 2))
        rules[:, 0] |= 1  # odd multipliers keep the walk from collapsing
        self.rules = rules

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, index])
        ids = np.empty(self.seq_len, dtype=np.int64)
        docs = np.empty(self.seq_len, dtype=np.int64)
        position, doc = 0, 0
        while position < self.seq_len:
            length = int(rng.integers(4, 2 * self.mean_document_length))
            length = min(length, self.seq_len - position)
            a, b = self.rules[rng.integers(len(self.rules))]
            walk = np.empty(length, dtype=np.int64)
            x = int(rng.integers(self.span))
            for t in range(length):
                walk[t] = x
                x = (a * x + b) % self.span
            walk += _FIRST_REGULAR
            walk[0] = SYNTHETIC_SPECIAL["bos"]
            if length > 1:
                walk[-1] = SYNTHETIC_SPECIAL["eos"]
            ids[position : position + length] = walk
            docs[position : position + length] = doc
            position += length
            doc += 1
        return ids, docs


def build_source(config: DataConfig, model: ModelConfig) -> SampleSource:
    if config.source == "synthetic":
        return SyntheticSource(model.vocab_size, config.seq_len, config.mean_document_length, config.seed)
    from encoderlab.data.shards import MANIFEST, PackedDataset

    path = Path(config.source)
    if not (path / MANIFEST).is_file():
        raise ConfigError(
            f"data.source {config.source!r}: not a shard directory (no {MANIFEST}); prepare one with "
            "`encoderlab data prepare`, or use 'synthetic'"
        )
    dataset = PackedDataset(path, config.seq_len, seed=config.seed, shuffle=config.shuffle,
                            variable_length=config.variable_length)
    tokenizer = dataset.manifest["tokenizer"]
    if tokenizer["vocab_size"] > model.vocab_size:
        raise ConfigError(
            f"data.source {config.source!r}: tokenizer {tokenizer['name']!r} has {tokenizer['vocab_size']} tokens, "
            f"more than the model's vocab_size {model.vocab_size}"
        )
    for role in ("mask", "bos", "eos", "pad"):
        ours, theirs = getattr(model, f"{role}_token_id"), tokenizer.get(f"{role}_token_id")
        if ours is not None and theirs is not None and ours != theirs:
            raise ConfigError(
                f"data.source {config.source!r}: the tokenizer's {role} token is {theirs}, the model config says "
                f"{ours} (set model.{role}_token_id={theirs})"
            )
    return dataset


def micro_batches(
    source: SampleSource, step: int, global_batch: int, micro_batch: int, rank: int, world_size: int,
    device: torch.device,
) -> list[TokenBatch]:
    """The micro-batches of ``rank`` for optimizer step ``step``."""
    per_rank = global_batch // world_size
    first = step * global_batch + rank * per_rank
    batches = []
    for start in range(first, first + per_rank, micro_batch):
        indices = list(range(start, start + micro_batch))
        samples = [source.sample(i) for i in indices]
        ids = torch.from_numpy(np.stack([s[0] for s in samples]))
        docs = torch.from_numpy(np.stack([s[1] for s in samples]))
        batch = TokenBatch(ids, torch.tensor(indices, dtype=torch.int64), docs)
        batches.append(batch.to(device, non_blocking=True))
    return batches
