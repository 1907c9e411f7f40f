"""Token shards: ``encoderlab data prepare`` writes them, :class:`PackedDataset` reads them.

A shard is two ``.npy`` files, memory-mapped when read: the concatenated tokens of its documents
(uint16 when the vocabulary fits, else uint32) and the document start offsets (int64, one more
than the documents). ``manifest.json`` records the source, the tokenizer (with a fingerprint),
per-shard and total counts, and whether preparation completed. Preparation is resumable at shard
granularity: a restart skips the documents of the shards already listed in the manifest.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

import encoderlab
from encoderlab.config import ConfigError
from encoderlab.data.sources import SourceConfig, iter_documents
from encoderlab.data.tokenizer import encode_documents, tokenizer_info
from encoderlab.io import atomic_write_text

MANIFEST = "manifest.json"
FORMAT = "encoderlab-shards"


def token_dtype(vocab_size: int, requested: str | None = None) -> np.dtype:
    needed = np.uint16 if vocab_size <= 2**16 else np.uint32
    if requested is None:
        return np.dtype(needed)
    dtype = np.dtype(requested)
    if dtype not in (np.dtype(np.uint16), np.dtype(np.uint32)):
        raise ConfigError(f"token dtype {requested!r}: expected uint16 or uint32")
    if vocab_size > np.iinfo(dtype).max + 1:
        raise ConfigError(f"token dtype {requested}: a vocabulary of {vocab_size} tokens does not fit; use uint32")
    return dtype


def read_manifest(path: Path) -> dict:
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise ConfigError(f"{path}: no {MANIFEST}; expected a directory written by `encoderlab data prepare`")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != FORMAT:
        raise ConfigError(f"{manifest_path}: not an encoderlab shard manifest")
    return manifest


def _save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        np.save(handle, array)
    os.replace(tmp, path)


def prepare(
    source: SourceConfig,
    tokenizer,
    tokenizer_name: str,
    output_dir: str | Path,
    *,
    shard_tokens: int = 64 * 2**20,
    batch_documents: int = 1000,
    dtype: str | None = None,
    mask_origin: str = "existing",
    progress: bool = True,
) -> dict:
    """Tokenizes ``source`` into shards under ``output_dir``; resumes an interrupted preparation."""
    output_dir = Path(output_dir)
    info = tokenizer_info(tokenizer, tokenizer_name, mask_origin)
    array_dtype = token_dtype(info["vocab_size"], dtype)
    manifest = {
        "format": FORMAT, "version": 1, "encoderlab_version": encoderlab.__version__, "source": source.describe(),
        "tokenizer": info, "dtype": array_dtype.name, "shards": [], "total_tokens": 0, "total_documents": 0,
        "documents_consumed": 0, "empty_documents_skipped": 0, "complete": False,
    }
    if (output_dir / MANIFEST).is_file():
        previous = read_manifest(output_dir)
        if previous["tokenizer"]["fingerprint"] != info["fingerprint"]:
            raise ConfigError(
                f"{output_dir}: shards were made with tokenizer {previous['tokenizer']['name']!r} (fingerprint "
                f"{previous['tokenizer']['fingerprint']}), not {tokenizer_name!r} ({info['fingerprint']}); "
                "use another output directory"
            )
        if previous["source"] != manifest["source"]:
            raise ConfigError(f"{output_dir}: shards were made from {previous['source']!r}, not {manifest['source']!r}")
        if previous["complete"]:
            return previous
        manifest = previous  # resume after the last complete shard
    output_dir.mkdir(parents=True, exist_ok=True)
    skip = manifest["documents_consumed"]

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(desc=f"prepare {output_dir.name}", unit="tok", unit_scale=True, dynamic_ncols=True)
    pending_tokens: list[np.ndarray] = []
    pending_lengths: list[int] = []
    pending_tokens_count = 0
    consumed_in_shard = 0
    started = time.perf_counter()

    def flush() -> None:
        nonlocal pending_tokens, pending_lengths, pending_tokens_count, consumed_in_shard
        if not pending_lengths and not consumed_in_shard:
            return
        name = f"shard-{len(manifest['shards']):05d}"
        tokens = np.concatenate(pending_tokens) if pending_tokens else np.zeros(0, dtype=array_dtype)
        offsets = np.zeros(len(pending_lengths) + 1, dtype=np.int64)
        np.cumsum(pending_lengths, out=offsets[1:])
        _save_npy(output_dir / f"{name}.tokens.npy", tokens)
        _save_npy(output_dir / f"{name}.offsets.npy", offsets)
        manifest["shards"].append({"name": name, "tokens": int(tokens.size), "documents": len(pending_lengths)})
        manifest["total_tokens"] += int(tokens.size)
        manifest["total_documents"] += len(pending_lengths)
        manifest["documents_consumed"] += consumed_in_shard
        atomic_write_text(output_dir / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        pending_tokens, pending_lengths, pending_tokens_count, consumed_in_shard = [], [], 0, 0

    def encode(batch: list[str]) -> None:
        nonlocal pending_tokens_count, consumed_in_shard
        texts = [t for t in batch if t.strip()]
        manifest["empty_documents_skipped"] += len(batch) - len(texts)
        consumed_in_shard += len(batch)
        for ids in encode_documents(tokenizer, texts) if texts else []:
            pending_tokens.append(np.asarray(ids, dtype=array_dtype))
            pending_lengths.append(len(ids))
            pending_tokens_count += len(ids)
            if bar is not None:
                bar.update(len(ids))
        if pending_tokens_count >= shard_tokens:
            flush()

    batch: list[str] = []
    for index, text in enumerate(iter_documents(source)):
        if index < skip:
            continue
        batch.append(text)
        if len(batch) >= batch_documents:
            encode(batch)
            batch = []
    if batch:
        encode(batch)
    flush()
    if manifest["total_documents"] == 0:
        raise ConfigError(f"{source.describe()}: no non-empty documents found")
    manifest["complete"] = True
    manifest["prepare_seconds"] = round(time.perf_counter() - started, 3)
    atomic_write_text(output_dir / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    if bar is not None:
        bar.close()
    return manifest


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
        for shard in self.manifest["shards"]:
            tokens_file = self.path / f"{shard['name']}.tokens.npy"
            offsets_file = self.path / f"{shard['name']}.offsets.npy"
            try:
                tokens = np.load(tokens_file, mmap_mode="r")
                offsets = np.load(offsets_file, mmap_mode="r")
            except (OSError, ValueError) as err:
                raise ConfigError(f"{tokens_file}: unreadable or truncated shard ({err})") from None
            if tokens.size != shard["tokens"] or offsets.size != shard["documents"] + 1:
                raise ConfigError(
                    f"{tokens_file}: holds {tokens.size} tokens / {offsets.size - 1} documents, the manifest says "
                    f"{shard['tokens']} / {shard['documents']} (truncated or replaced shard)"
                )
            self.tokens.append(tokens)
            self.offsets.append(offsets)
        self.shard_starts = np.zeros(len(self.tokens) + 1, dtype=np.int64)
        np.cumsum([t.size for t in self.tokens], out=self.shard_starts[1:])
        self.total_tokens = int(self.shard_starts[-1])
        self.num_sequences = -(-self.total_tokens // seq_len)
        self.num_samples = self.num_sequences * (2 if variable_length else 1)
        self._order = _Permutation(self.num_samples, seed) if shuffle else None
        longer = sum(int((np.diff(o) > seq_len).sum()) for o in self.offsets)
        self.stats = {
            "tokens": self.total_tokens, "documents": self.manifest["total_documents"], "sequences": self.num_sequences,
            "samples": self.num_samples, "documents_longer_than_seq_len": longer,
            "padding_in_last_sequence": self.num_sequences * seq_len - self.total_tokens,
        }

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
