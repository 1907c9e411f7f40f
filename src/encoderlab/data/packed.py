"""The packed loader: fixed-length samples over the token shards that ``shards.py`` writes, in a
seeded, deterministic global order with O(1) memory and access."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from encoderlab.config import ConfigError
from encoderlab.data.manifest import MANIFEST, read_manifest
from encoderlab.validate import count

__all__ = ["PackedDataset"]


class _Permutation:
    """A seeded bijection of [0, n) with O(1) memory and access (Feistel network + cycle walking)."""

    def __init__(self, n: int, seed: int):
        self.n = n
        self.half_bits = max(1, (max(n - 1, 1).bit_length() + 1) // 2)
        self.mask = (1 << self.half_bits) - 1
        self.keys = [int(k) for k in np.random.default_rng([seed, 1234]).integers(0, 2**31, size=4)]

    def _round(self, value: int, key: int) -> int:
        x = (value * 0x9E3779B1 + key) & 0xFFFFFFFF
        x ^= x >> 15
        x = (x * 0x85EBCA6B) & 0xFFFFFFFF
        x ^= x >> 13
        return x & self.mask

    def __call__(self, index: int) -> int:
        value = index
        while True:
            left, right = value >> self.half_bits, value & self.mask
            for key in self.keys:
                left, right = right, left ^ self._round(right, key)
            value = (left << self.half_bits) | right
            if value < self.n:
                return value


class PackedDataset:
    """Samples of ``seq_len`` tokens packed from the documents of a shard directory.

    The token stream (all documents, in shard order) is cut into consecutive sequences of
    ``seq_len`` tokens; a document that crosses a boundary continues as its own segment in the
    next sequence (nothing is dropped; the final partial sequence is padded). ``sample(i)`` reads
    sequence ``permutation(i)``: a seeded, O(1), deterministic global order. With
    ``variable_length`` each sequence is cut in two at a position uniform in [12, seq_len - 12)
    (the paper's ~1,024-token mean sample length), the rest of each sample being padding.
    Document ids of padding are -1.
    """

    def __init__(self, path: str | Path, seq_len: int, seed: int = 0, shuffle: bool = True,
                 variable_length: bool = False):
        self.path = Path(path)
        seq_len = count(seq_len, "seq_len", 25 if variable_length else 1)  # variable length: cut in [12, seq_len-12)
        seed = count(seed, "seed", 0)
        self.manifest = read_manifest(self.path)
        if not self.manifest["complete"]:
            raise ConfigError(f"{self.path}: preparation did not complete; run `encoderlab data prepare` again to finish")
        self.seq_len = seq_len
        self.seed = seed
        tokenizer = self.manifest["tokenizer"]
        pad = tokenizer.get("pad_token_id")
        self.pad_id = pad if pad is not None else (tokenizer.get("eos_token_id") or 0)
        self.variable_length = variable_length
        self.tokens, self.offsets = [], []
        longer = 0
        for shard in self.manifest["shards"]:
            tokens, offsets, shard_longer = self._open_shard(shard, seq_len)
            self.tokens.append(tokens)
            self.offsets.append(offsets)
            longer += shard_longer
        self.shard_starts = np.zeros(len(self.tokens) + 1, dtype=np.int64)
        np.cumsum([t.size for t in self.tokens], out=self.shard_starts[1:])
        self.total_tokens = int(self.shard_starts[-1])
        if self.total_tokens == 0:
            raise ConfigError(f"{self.path / MANIFEST}: lists no tokens; expected a prepared corpus")
        self.num_sequences = -(-self.total_tokens // seq_len)
        self.num_samples = self.num_sequences * (2 if variable_length else 1)
        self._order = _Permutation(self.num_samples, seed) if shuffle else None
        self.stats = {
            "tokens": self.total_tokens, "documents": self.manifest["total_documents"], "sequences": self.num_sequences,
            "samples": self.num_samples, "documents_longer_than_seq_len": longer,
            "padding_in_last_sequence": self.num_sequences * seq_len - self.total_tokens,
        }

    def _open_shard(self, shard: dict, seq_len: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Memory-maps one shard's files, each checked against the manifest (errors name the file)."""
        listed = f"listed in {self.path / MANIFEST}"
        arrays = []
        for kind in ("tokens", "offsets"):
            file = self.path / f"{shard['name']}.{kind}.npy"
            try:
                arrays.append(np.load(file, mmap_mode="r", allow_pickle=False))
            except FileNotFoundError:
                raise ConfigError(f"{file}: missing ({listed}); prepare the corpus again") from None
            except (OSError, ValueError) as err:
                raise ConfigError(f"{file}: unreadable or truncated shard ({err})") from None
        tokens, offsets = arrays
        tokens_file = self.path / f"{shard['name']}.tokens.npy"
        offsets_file = self.path / f"{shard['name']}.offsets.npy"
        if tokens.ndim != 1 or tokens.dtype != np.dtype(self.manifest["dtype"]):
            raise ConfigError(f"{tokens_file}: holds {tokens.dtype} of shape {tokens.shape}, expected 1-D "
                              f"{self.manifest['dtype']} ({listed})")
        if tokens.size != shard["tokens"]:
            raise ConfigError(f"{tokens_file}: holds {tokens.size} tokens, the manifest says {shard['tokens']} "
                              "(truncated or replaced shard)")
        if offsets.ndim != 1 or offsets.dtype != np.int64:
            raise ConfigError(f"{offsets_file}: holds {offsets.dtype} of shape {offsets.shape}, expected 1-D int64 "
                              f"document offsets ({listed})")
        if offsets.size != shard["documents"] + 1:
            raise ConfigError(f"{offsets_file}: holds {offsets.size - 1} documents, the manifest says "
                              f"{shard['documents']} (truncated or replaced shard)")
        lengths = np.diff(offsets)
        if int(offsets[0]) != 0 or int(offsets[-1]) != tokens.size or (lengths < 0).any():
            raise ConfigError(f"{offsets_file}: not the document offsets of {tokens_file.name} (expected 0 ... "
                              f"{tokens.size}, increasing); replaced or corrupted shard")
        return tokens, offsets, int((lengths > seq_len).sum())

    def __len__(self) -> int:
        return self.num_samples

    def _window(self, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        """Tokens and document ids of global token range [start, end)."""
        ids = np.empty(end - start, dtype=np.int64)
        starts = []  # positions (relative to start) where a document begins
        shard = int(np.searchsorted(self.shard_starts, start, side="right")) - 1
        position = start
        while position < end:
            local_start = position - int(self.shard_starts[shard])
            local_end = min(end, int(self.shard_starts[shard + 1])) - int(self.shard_starts[shard])
            ids[position - start : position - start + local_end - local_start] = self.tokens[shard][local_start:local_end]
            offsets = self.offsets[shard]
            first = int(np.searchsorted(offsets, local_start, side="left"))
            last = int(np.searchsorted(offsets, local_end, side="left"))
            starts.extend(int(o) + int(self.shard_starts[shard]) - start for o in offsets[first:last])
            position += local_end - local_start
            shard += 1
        boundaries = np.zeros(end - start, dtype=np.int64)
        boundaries[0] = 1  # a continued document is its own segment in this sample
        boundaries[[s for s in starts if 0 <= s < end - start]] = 1
        return ids, np.cumsum(boundaries) - 1

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= index:
            raise IndexError(f"sample index {index} is negative")
        # Past the end, the order wraps around (a new epoch): runs longer than the data repeat it.
        index %= self.num_samples
        position = self._order(index) if self._order is not None else index
        sequence, part = (position // 2, position % 2) if self.variable_length else (position, 0)
        start = sequence * self.seq_len
        end = min(start + self.seq_len, self.total_tokens)
        if self.variable_length:
            cut = int(np.random.default_rng([self.seed, sequence]).integers(12, self.seq_len - 12))
            start, end = (start, min(start + cut, end)) if part == 0 else (start + cut, end)
        ids = np.full(self.seq_len, self.pad_id, dtype=np.int64)
        docs = np.full(self.seq_len, -1, dtype=np.int64)
        if end > start:
            window_ids, window_docs = self._window(start, end)
            ids[: end - start] = window_ids
            docs[: end - start] = window_docs
        return ids, docs
