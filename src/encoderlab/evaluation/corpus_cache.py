"""A retrieval corpus tokenized once: framed token ids on disk, memory-mapped, shared by every run.

Every run of a sweep ranks its task's whole corpus (MS MARCO: 8.8M passages). The documents' token
ids depend on the corpus, the tokenizer, the document format and the length limit, never on the
run's weights, LR or seed; so they are computed once per (corpus, tokenizer, format, limit) and
every run, every worker process and every checkpoint of a study with the same tokenizer reads them.

On disk, one directory per key under the cache directory (``corpus-<key hash>/``):

- ``ids.npy``: every document's framed ids (``[start] ids [sep]``, truncated as the protocol
  truncates) end to end, int32;
- ``offsets.npy``: int64, ``documents + 1`` entries; document ``i`` is ``ids[offsets[i]:offsets[i+1]]``;
- ``meta.json``: the key (what the ids were made from), the counts the tokenization recorded
  (truncated documents, replayed into every run's counts), sizes and the SHA-256 of both arrays.

The directory is written beside its final name and renamed into place (atomic: a reader sees a
whole cache or none); builders of the same key take a file lock, so one builds and the others read
its result. A cache is checked when a process first opens it: the key it was made from, the
arrays' shapes and offsets, and their checksums; a cache that fails a check is refused with its
path (delete it to rebuild). The embedding pass streams the documents from the memory map chunk by
chunk (``retrieval.rank_corpus``), so no process holds the corpus's tokens as Python lists.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from encoderlab.config import ConfigError
from encoderlab.io import atomic_directory, lock_file

FORMAT = "encoderlab-corpus-tokens-1"
TOKENIZE_BATCH = 8192  # documents per tokenizer call while building (bounds the Python lists alive at once)
_VERIFIED: set[tuple] = set()  # caches this process has checked: (path, size, mtime) of their arrays


class CorpusTokens:
    """The framed ids of a corpus's documents: ``len()`` documents, :meth:`rows` a slice as lists."""

    def __init__(self, ids: np.ndarray, offsets: np.ndarray, counts: dict, path: Path | None = None):
        self.ids, self.offsets, self.counts, self.path = ids, offsets, dict(counts), path

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def rows(self, start: int, stop: int) -> list[list[int]]:
        """Documents ``start`` .. ``stop - 1`` as lists of ids."""
        stop = min(stop, len(self))
        bounds = self.offsets[start : stop + 1]
        flat = np.asarray(self.ids[bounds[0] : bounds[-1]]).tolist()
        base = int(bounds[0])
        return [flat[int(a) - base : int(b) - base] for a, b in zip(bounds[:-1], bounds[1:])]

    @property
    def tokens(self) -> int:
        return int(self.offsets[-1])


def tokenizer_fingerprint(tokenizer) -> str:
    """What decides a tokenizer's ids: a fast tokenizer's whole serialised state (vocabulary, merges,
    normaliser, pre-tokeniser, added tokens), else its vocabulary and class; with the library version."""
    import tokenizers
    import transformers

    backend = getattr(tokenizer, "backend_tokenizer", None)
    state = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    digest = hashlib.sha256(state.encode())
    digest.update(f"{type(tokenizer).__name__} tokenizers {tokenizers.__version__} transformers "
                  f"{transformers.__version__}".encode())
    return digest.hexdigest()[:24]


def corpus_fingerprint(corpus: list[dict]) -> str:
    """Content hash of the documents' ids, titles and texts, in order."""
    digest = hashlib.sha256()
    for doc in corpus:
        digest.update(json.dumps([doc["_id"], doc.get("title") or "", doc["text"]], ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()[:24]


def corpus_key(corpus_fp: str, backbone, limit: int, document_prefix: str) -> dict:
    """Everything the framed ids depend on."""
    return {"format": FORMAT, "corpus": corpus_fp, "tokenizer": tokenizer_fingerprint(backbone.tokenizer),
            "start_id": backbone.start_id, "sep_id": backbone.sep_id, "limit": int(limit),
            "document_prefix": document_prefix}


def tokenize_corpus(texts, frame) -> CorpusTokens:
    """The framed ids of ``texts`` (an iterable of document texts); ``frame(batch, counts)`` frames a
    batch of texts as the protocol does (``features.ir_framed``), recording what it truncates."""
    counts: dict = {}
    pieces, lengths = [], []
    batch: list[str] = []

    def flush() -> None:
        for framed in frame(batch, counts):
            pieces.append(np.asarray(framed, dtype=np.int32))
            lengths.append(len(framed))
        batch.clear()

    for text in texts:
        batch.append(text)
        if len(batch) == TOKENIZE_BATCH:
            flush()
    flush()
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    ids = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32)
    return CorpusTokens(ids, offsets, counts)


def _sha256(array: np.ndarray) -> str:
    digest = hashlib.sha256()
    flat = array.reshape(-1).view(np.uint8)
    step = 1 << 26
    for start in range(0, len(flat), step):
        digest.update(flat[start : start + step])
    return digest.hexdigest()


def _directory(cache_dir: Path, key: dict) -> Path:
    return cache_dir / ("corpus-" + hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20])


def cached_corpus(cache_dir: str | Path, key: dict, texts, frame) -> CorpusTokens:
    """The framed ids of the corpus under ``key``: read from ``cache_dir`` if there, else built from
    ``texts`` (a callable returning the documents' texts) with ``frame`` and written there atomically."""
    cache_dir = Path(cache_dir)
    target = _directory(cache_dir, key)
    if not (target / "meta.json").is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        descriptor = lock_file(cache_dir / f"{target.name}.lock", wait=True)
        try:
            if not (target / "meta.json").is_file():  # another builder may have finished while this one waited
                built = tokenize_corpus(texts(), frame)
                with atomic_directory(target) as tmp:
                    np.save(tmp / "ids.npy", built.ids)
                    np.save(tmp / "offsets.npy", built.offsets)
                    meta = {"key": key, "documents": len(built), "tokens": built.tokens, "counts": built.counts,
                            "sha256": {"ids": _sha256(built.ids), "offsets": _sha256(built.offsets)}}
                    (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
        finally:
            os.close(descriptor)
    return open_cached(target, key)


def open_cached(path: Path, key: dict) -> CorpusTokens:
    """A cache directory memory-mapped and checked (once per process): its key, shapes and checksums."""
    def refuse(why: str) -> ConfigError:
        return ConfigError(f"corpus cache {path}: {why}; delete the directory and the next run rebuilds it")

    try:
        meta = json.loads((path / "meta.json").read_text())
        ids = np.load(path / "ids.npy", mmap_mode="r")
        offsets = np.load(path / "offsets.npy", mmap_mode="r")
    except (OSError, ValueError) as err:
        raise refuse(f"unreadable ({err})") from None
    if meta.get("key") != key:
        raise refuse("made from other inputs than its name says (key differs)")
    if (ids.dtype != np.int32 or offsets.dtype != np.int64 or len(offsets) != meta.get("documents", -1) + 1
            or int(offsets[0]) != 0 or int(offsets[-1]) != len(ids) or len(ids) != meta.get("tokens")):
        raise refuse("its arrays do not have the shapes its meta.json records")
    stamp = tuple((str(path / name), os.stat(path / name).st_size, os.stat(path / name).st_mtime_ns)
                  for name in ("ids.npy", "offsets.npy"))
    if stamp not in _VERIFIED:
        if bool(np.any(np.diff(offsets) < 0)):
            raise refuse("its offsets decrease")
        for name, array in (("ids", ids), ("offsets", offsets)):
            if _sha256(np.asarray(array)) != meta["sha256"][name]:
                raise refuse(f"{name}.npy does not match its checksum (damaged)")
        _VERIFIED.add(stamp)
    return CorpusTokens(ids, offsets, meta.get("counts", {}), path)
