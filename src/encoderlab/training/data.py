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
from encoderlab.data.manifest import MANIFEST
from encoderlab.data.packed import PackedDataset
from encoderlab.data.tokenizer import load_tokenizer, tokenizer_info

SYNTHETIC_SPECIAL = {"pad": 0, "bos": 1, "eos": 2, "mask": 3}
# Shard directories up to this many tokens have every token id checked against the model's vocabulary
# before training (one pass over the memory-mapped shards); larger ones are checked batch by batch.
SCAN_TOKENS_LIMIT = 1 << 28
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

    path = Path(config.source)
    if not (path / MANIFEST).is_file():
        raise ConfigError(
            f"data.source {config.source!r}: not a shard directory (no {MANIFEST}); prepare one with "
            "`encoderlab data prepare`, or use 'synthetic'"
        )
    packed = config.variable_length and config.pack
    dataset = PackedDataset(path, config.seq_len, seed=config.seed, shuffle=config.shuffle,
                            variable_length=config.variable_length and not packed)
    if packed:
        if config.seq_len <= 24:
            raise ConfigError(f"data.seq_len {config.seq_len}: variable_length cuts at a position in [12, seq_len - 12); "
                              "it must be more than 24")
        dataset = PackedCuts(dataset)
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
    check_token_range(dataset, model.vocab_size, config.source)
    return dataset


class PackedCuts:
    """Variable-length samples, packed: row ``i`` is packed sequence ``i`` of ``dataset`` (built
    without ``variable_length``) cut in two at the position the unpacked variable-length samples use
    (uniform in [12, seq_len - 12), seeded by the sequence), the cut being a document boundary. The
    attention isolates documents, so each piece is the sample it would be alone in a padded row,
    and a row carries ``seq_len`` real tokens instead of ~half."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.seq_len, self.seed = dataset.seq_len, dataset.seed
        self.manifest, self.path = dataset.manifest, dataset.path
        self.tokens, self.total_tokens = dataset.tokens, dataset.total_tokens

    def __len__(self) -> int:
        return len(self.dataset)

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        ids, docs = self.dataset.sample(index)
        index %= len(self.dataset)
        order = self.dataset._order
        sequence = order(index) if order is not None else index
        cut = int(np.random.default_rng([self.seed, sequence]).integers(12, self.seq_len - 12))
        if docs[cut] >= 0:  # a new segment from the cut on (padding, -1, stays padding)
            real = docs >= 0
            docs = docs.copy()
            docs[cut:][real[cut:]] += 1 + docs[cut - 1] - docs[cut]
        return ids, docs


def check_token_range(dataset, vocab_size: int, source: str) -> None:
    """Token ids of the shards must index the model's embedding (0 .. vocab_size - 1): checked from the
    manifest and, for shard directories up to ``SCAN_TOKENS_LIMIT`` tokens, on every token."""
    manifest = dataset.manifest
    hint = (f"the model's vocab_size is {vocab_size}; the shards' tokenizer {manifest['tokenizer'].get('name')!r} has "
            f"{manifest['tokenizer'].get('vocab_size')} tokens (set model.vocab_size, or prepare the shards again)")
    recorded = manifest.get("max_token_id")
    if isinstance(recorded, int) and recorded >= vocab_size:
        raise ConfigError(f"data.source {source!r}: the manifest's max_token_id {recorded} is beyond the model's "
                          f"vocabulary; {hint}")
    try:
        if np.iinfo(np.dtype(manifest.get("dtype", "uint32"))).max < vocab_size:
            return  # the shards' dtype cannot hold an id that large
    except TypeError:
        pass
    if dataset.total_tokens > SCAN_TOKENS_LIMIT:
        return  # checked batch by batch (micro_batches)
    for shard, tokens in zip(manifest["shards"], dataset.tokens):
        if tokens.size and (top := int(tokens.max())) >= vocab_size:
            raise ConfigError(f"data.source {source!r}: shard {shard['name']} holds token id {top}, beyond the "
                              f"model's vocabulary; {hint}")


def shard_tokenizer(config: DataConfig, dataset) -> Path | None:
    """The tokenizer directory training copies into checkpoints (``<data.source>/tokenizer``), after
    checking it is the tokenizer the shards were made with (the manifest's fingerprint)."""
    if config.source == "synthetic":
        return None
    tokenizer_dir = Path(config.source) / "tokenizer"
    if not (tokenizer_dir / "tokenizer_config.json").is_file():
        return None

    recorded = dataset.manifest["tokenizer"]
    if not recorded.get("fingerprint"):
        raise ConfigError(f"data.source {config.source!r}: the manifest records no tokenizer fingerprint, so "
                          f"{tokenizer_dir} cannot be checked against the shards; prepare the shards again")
    found = tokenizer_info(load_tokenizer(str(tokenizer_dir)), str(tokenizer_dir))
    if found["fingerprint"] != recorded["fingerprint"]:
        raise ConfigError(
            f"data.source {config.source!r}: the tokenizer in {tokenizer_dir} (fingerprint {found['fingerprint']}, "
            f"{found['vocab_size']} tokens) is not the one the shards were made with ({recorded.get('name')!r}, "
            f"fingerprint {recorded['fingerprint']}, {recorded.get('vocab_size')} tokens); checkpoints would carry a "
            "tokenizer that does not match their training data. Put the original tokenizer back, or prepare the "
            "shards again with this one"
        )
    return tokenizer_dir


def micro_batches(
    source: SampleSource, step: int, global_batch: int, micro_batch: int, rank: int, world_size: int,
    device: torch.device, vocab_size: int | None = None, offset: int = 0,
) -> list[TokenBatch]:
    """The micro-batches of ``rank`` for optimizer step ``step``, reading the global order from sample
    ``offset`` on (continued pretraining after its parent's data); with ``vocab_size``, a token id
    outside the vocabulary is a ConfigError naming the sample (not an IndexError in the embedding)."""
    per_rank = global_batch // world_size
    first = offset + step * global_batch + rank * per_rank
    batches = []
    for start in range(first, first + per_rank, micro_batch):
        indices = list(range(start, start + micro_batch))
        samples = [source.sample(i) for i in indices]
        stacked = np.stack([s[0] for s in samples])
        if vocab_size is not None and stacked.size and (stacked.max() >= vocab_size or stacked.min() < 0):
            row = int(np.flatnonzero((stacked >= vocab_size).any(axis=1) | (stacked < 0).any(axis=1))[0])
            bad = stacked[row][(stacked[row] >= vocab_size) | (stacked[row] < 0)][0]
            where = getattr(source, "path", type(source).__name__)
            raise ConfigError(f"data {where}: sample {indices[row]} (step {step}) holds token id {int(bad)}, outside "
                              f"the model's vocabulary 0..{vocab_size - 1}; set model.vocab_size or prepare the shards "
                              "again")
        ids = torch.from_numpy(stacked)
        docs = torch.from_numpy(np.stack([s[1] for s in samples]))
        batch = TokenBatch(ids, torch.tensor(indices, dtype=torch.int64), docs)
        batches.append(batch.to(device, non_blocking=True))
    return batches
