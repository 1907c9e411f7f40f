"""Token shards: ``encoderlab data prepare`` writes them, :class:`~encoderlab.data.packed.PackedDataset`
reads them (``packed.py``).

A shard is two ``.npy`` files, memory-mapped when read: the concatenated tokens of its documents
(uint16 when the vocabulary fits, else uint32) and the document start offsets (int64, one more
than the documents). ``manifest.json`` records the source, the tokenizer (with a fingerprint),
the settings the shards were made with, per-shard and total counts; ``tokenizer/`` holds the
tokenizer the shards were made with (checkpoints copy it from there).

A preparation is one transaction. Everything is written to a staging folder beside the output
(``.<name>.prepare``) and renamed to the output only when complete, so the output folder is only
ever absent, the previous preparation, or the new complete one: shards, manifest and tokenizer
always belong together. An interrupted preparation (Ctrl-C, a lost connection) resumes from the
staging folder at shard granularity when it is run again with the same settings; a preparation
that failed on its input (a bad file, no documents) or ran out of disk space removes it.

The settings of a preparation (every setting that changes its output: the source's identity,
max documents, text column, txt mode, the local files' sizes and times, the tokenizer's
fingerprint, dtype, shard size) are recorded; a complete folder is reused only when they are the
same, refused when they differ, and rebuilt only with ``overwrite``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np

import encoderlab
from encoderlab.config import ConfigError
from encoderlab.data.manifest import (FORMAT, MANIFEST, VERSION, existing_preparation, read_manifest,
                                      staging_dir)
from encoderlab.data.sources import SourceConfig, iter_documents
from encoderlab.data.tokenizer import encode_documents, tokenizer_info
from encoderlab.io import atomic_write_text, check_replaceable, lock_file
from encoderlab.validate import count

# What a failed `data prepare` of encoderlab < 0.2 could leave in its output folder (no manifest):
# the tokenizer saved before the source was read, the first shard's files, temporary files.
_LEFTOVER = re.compile(r"tokenizer|shard-\d{5,}\.(tokens|offsets)\.npy|\..*\.tmp.*")
_OWNED = re.compile(r"manifest\.json")  # with _LEFTOVER: what a preparation writes in its folder
_DISCARD_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG}


def token_dtype(vocab_size: int, requested: str | None = None) -> np.dtype:
    needed = np.uint16 if vocab_size <= 2**16 else np.uint32
    if requested is None:
        return np.dtype(needed)
    try:
        dtype = np.dtype(requested)
    except TypeError:
        dtype = None
    if dtype not in (np.dtype(np.uint16), np.dtype(np.uint32)):
        raise ConfigError(f"token dtype {requested!r}: expected uint16 or uint32")
    if vocab_size > np.iinfo(dtype).max + 1:
        raise ConfigError(f"token dtype {requested}: a vocabulary of {vocab_size} tokens does not fit; use uint32")
    return dtype


def _save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as handle:
            np.save(handle, array)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _check_output(output_dir: Path) -> dict | None:
    """The manifest of an existing output folder, None if there is nothing of value there (absent,
    empty, or what a failed prepare of an older encoderlab left); refuses anything else."""
    if not output_dir.exists():
        return None
    if not output_dir.is_dir():
        raise ConfigError(f"{output_dir}: exists and is not a directory; expected a shard output directory")
    if (output_dir / MANIFEST).exists():
        return read_manifest(output_dir)
    try:
        foreign = sorted(entry.name for entry in output_dir.iterdir() if not _LEFTOVER.fullmatch(entry.name))
    except OSError as err:
        raise ConfigError(f"{output_dir}: cannot list ({err.strerror or err})") from None
    if foreign:
        raise ConfigError(f"{output_dir}: exists and holds files that are not token shards ({', '.join(foreign[:3])}"
                          f"{', ...' if len(foreign) > 3 else ''}); choose another output directory")
    return None


def _check_outside_source(source: SourceConfig, output_dir: Path) -> None:
    if source.kind != "files":
        return
    corpus, output = Path(source.path).resolve(), output_dir.resolve()
    if corpus.is_dir() and (output == corpus or corpus in output.parents):
        raise ConfigError(f"{output_dir}: inside the corpus folder {source.path}; its files would be read as corpus "
                          "on the next prepare. Choose an output directory outside it")
    if output == corpus or output in corpus.parents:
        raise ConfigError(f"{output_dir}: holds the corpus {source.path}; choose another output directory")


def _differences(previous: dict, settings: dict, info: dict, describe: str) -> list[str]:
    """What differs between the settings a complete folder was made with and the requested ones."""
    diffs = []
    made_with = previous["tokenizer"]
    if made_with["fingerprint"] != info["fingerprint"]:
        diffs.append(f"shards were made with tokenizer {made_with['name']!r} (fingerprint {made_with['fingerprint']}), "
                     f"not {info['name']!r} ({info['fingerprint']})")
    old = previous.get("settings")
    if not isinstance(old, dict):
        version = previous.get("encoderlab_version", "?")
        return [*diffs, (f"it was prepared by encoderlab {version}, which did not record its settings (max documents, "
                         "text column, ...), so they cannot be checked")]
    old_source, new_source = old.get("source") or {}, settings["source"]
    if any(old_source.get(key) != new_source.get(key) for key in ("kind", "path", "id")):
        diffs.append(f"shards were made from {previous.get('source')!r}, not {describe!r}")
        old_source = new_source = {}
    for key in sorted(set(old_source) | set(new_source)):
        if key == "files" or old_source.get(key) == new_source.get(key):
            continue
        diffs.append("the corpus files changed since (names, sizes or modification times)" if key == "files_digest"
                     else f"source {key.replace('_', ' ')} was {old_source.get(key)!r}, now {new_source.get(key)!r}")
    for key in ("dtype", "shard_tokens"):
        if old.get(key) != settings[key]:
            diffs.append(f"{key.replace('_', ' ')} was {old.get(key)!r}, now {settings[key]!r}")
    return diffs


def _commit(staging: Path, output_dir: Path) -> None:
    """Renames the complete staging folder to the output (replacing what was there)."""
    target = staging.with_name(output_dir.resolve().name)
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        if old.exists():
            shutil.rmtree(old)
        os.replace(target, old)
    try:
        os.replace(staging, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _remove_temporaries(staging: Path) -> None:
    with contextlib.suppress(OSError):
        for entry in staging.iterdir():
            if entry.name.startswith("."):
                shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)


def _discards_staging(err: BaseException) -> bool:
    """A failure on the input (to be fixed before a rerun) or out of disk space (free it): no resume point."""
    return isinstance(err, ValueError) or (isinstance(err, OSError) and err.errno in _DISCARD_ERRNOS)


@contextlib.contextmanager
def preparation_lock(output_dir: Path, wait: bool = False):
    """One ``data prepare`` per output folder at a time: a ``flock`` on ``.<name>.prepare.lock``
    beside it (released by the kernel when the process dies). A second preparation would resume
    from the first's staged manifest while the first still writes it, or delete its staging
    folder. ``wait``: block until the holder is done (a study); else refuse, naming the holder."""
    target = Path(output_dir).resolve()
    created = [d for d in (target.parent, *target.parent.parents) if not d.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    path = target.with_name(f".{target.name}.prepare.lock")
    try:
        fd = lock_file(path, wait=wait)
    except BlockingIOError:
        holder = path.read_text(errors="replace").strip() if path.is_file() else ""
        raise ConfigError(f"{output_dir}: another `encoderlab data prepare` is writing it ({holder or 'another process'}); "
                          "wait for it to finish (its result is then reused) or stop it") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on host {os.uname().nodename}\n".encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)
        for directory in created:  # folders made only for the lock, left empty by a refused preparation
            with contextlib.suppress(OSError):
                directory.rmdir()


def prepare(source: SourceConfig, tokenizer, tokenizer_name: str, output_dir: str | Path, *, wait: bool = False,
            **options) -> dict:
    """:func:`prepare_unlocked` under :func:`preparation_lock` (``wait``: for a running preparation
    of the same folder to end, then reuse or resume it)."""
    with preparation_lock(Path(output_dir), wait=wait):
        return prepare_unlocked(source, tokenizer, tokenizer_name, output_dir, **options)


def _resumable(staging: Path, settings: dict, info: dict, overwrite: bool) -> dict | None:
    """The staged manifest of an interrupted preparation with the same settings (resumed after its
    last complete shard); any other staging folder is removed and None returned."""
    if not staging.exists():
        return None
    staged = existing_preparation(staging, staged=True)
    if (not overwrite and staged is not None and staged.get("settings") == settings and not staged["complete"]
            and (staging / "tokenizer").is_dir()):
        staged["tokenizer"] = info
        return staged
    shutil.rmtree(staging)
    return None


def prepare_unlocked(
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
    overwrite: bool = False,
) -> dict:
    """Tokenizes ``source`` into shards under ``output_dir``, with ``tokenizer`` saved beside them.

    All or nothing (see the module docstring): returns the manifest of a complete folder made with
    the same settings without reading the source, refuses one made with other settings unless
    ``overwrite``, resumes an interrupted preparation with the same settings.
    """
    output_dir = Path(output_dir)
    shard_tokens = count(shard_tokens, "shard tokens", 1)
    batch_documents = count(batch_documents, "batch documents", 1)
    info = tokenizer_info(tokenizer, tokenizer_name, mask_origin)
    trained = getattr(tokenizer, "encoderlab_trained", None)
    if trained:
        info["trained"] = dict(trained)
    array_dtype = token_dtype(info["vocab_size"], dtype)
    settings = {"source": source.identity(), "tokenizer": info["fingerprint"], "dtype": array_dtype.name,
                "shard_tokens": shard_tokens}
    _check_outside_source(source, output_dir)
    previous = _check_output(output_dir)
    if previous is not None and overwrite:  # a rebuild replaces the shards, never files put beside them
        check_replaceable(output_dir, owns=lambda name: bool(_OWNED.fullmatch(name) or _LEFTOVER.fullmatch(name)))
    if previous is not None and previous["complete"] and not overwrite:
        differences = _differences(previous, settings, info, source.describe())
        if not differences:
            return previous
        raise ConfigError(f"{output_dir}: already prepared with other settings: {'; '.join(differences)}. "
                          "Pass --overwrite to rebuild it, or choose another output directory")

    staging = staging_dir(output_dir)
    manifest = _resumable(staging, settings, info, overwrite)
    bar = None
    created = staging  # the topmost folder this call creates: removed again when the preparation is discarded
    while not created.parent.exists():
        created = created.parent
    try:
        if manifest is None:
            staging.mkdir(parents=True)
            tokenizer.save_pretrained(staging / ".tokenizer.tmp")
            os.replace(staging / ".tokenizer.tmp", staging / "tokenizer")
            manifest = {
                "format": FORMAT, "version": VERSION, "encoderlab_version": encoderlab.__version__,
                "source": source.describe(), "settings": settings, "tokenizer": info, "dtype": array_dtype.name,
                "shards": [], "total_tokens": 0, "total_documents": 0, "documents_consumed": 0,
                "empty_documents_skipped": 0, "complete": False,
            }
            atomic_write_text(staging / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        if progress:
            from tqdm import tqdm

            bar = tqdm(desc=f"prepare {output_dir.name}", unit="tok", unit_scale=True, dynamic_ncols=True)
        _tokenize_into(staging, manifest, source, tokenizer, array_dtype, shard_tokens, batch_documents, bar)
        manifest["complete"] = True
        atomic_write_text(staging / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        _commit(staging, output_dir)
    except BaseException as err:
        _remove_temporaries(staging)
        discarded = _discards_staging(err)
        if discarded:
            shutil.rmtree(created, ignore_errors=True)
        if isinstance(err, OSError) and err.filename is None:  # numpy/tokenizer writes name no file: name the output
            raise OSError(err.errno, f"{err.strerror or err} while writing the shards of {output_dir}"
                          + ("; nothing was kept" if discarded else "; rerun to resume"), str(staging)) from err
        raise
    finally:
        if bar is not None:
            bar.close()
    return manifest


def _tokenize_into(staging: Path, manifest: dict, source: SourceConfig, tokenizer, array_dtype: np.dtype,
                   shard_tokens: int, batch_documents: int, bar) -> None:
    """Appends the shards of the source's documents after ``manifest['documents_consumed']``; each
    complete shard is recorded in the staged manifest (the resume point)."""
    skip = manifest["documents_consumed"]
    pending_tokens: list[np.ndarray] = []
    pending_lengths: list[int] = []
    state = {"tokens": 0, "consumed": 0, "empty": 0}
    started = time.perf_counter()

    def flush() -> None:
        nonlocal pending_tokens, pending_lengths
        if not pending_lengths:
            return
        name = f"shard-{len(manifest['shards']):05d}"
        tokens = np.concatenate(pending_tokens)
        offsets = np.zeros(len(pending_lengths) + 1, dtype=np.int64)
        np.cumsum(pending_lengths, out=offsets[1:])
        _save_npy(staging / f"{name}.tokens.npy", tokens)
        _save_npy(staging / f"{name}.offsets.npy", offsets)
        manifest["shards"].append({"name": name, "tokens": int(tokens.size), "documents": len(pending_lengths)})
        manifest["total_tokens"] += int(tokens.size)
        manifest["total_documents"] += len(pending_lengths)
        manifest["documents_consumed"] += state["consumed"]
        manifest["empty_documents_skipped"] += state["empty"]
        atomic_write_text(staging / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        pending_tokens, pending_lengths = [], []
        state.update(tokens=0, consumed=0, empty=0)

    def encode(batch: list[str]) -> None:
        texts = [t for t in batch if t.strip()]
        encoded = iter(encode_documents(tokenizer, texts) if texts else ())
        for text in batch:  # a shard ends after the document that fills it, whatever the batch size
            state["consumed"] += 1
            if not text.strip():
                state["empty"] += 1
                continue
            ids = np.asarray(next(encoded), dtype=array_dtype)
            pending_tokens.append(ids)
            pending_lengths.append(int(ids.size))
            state["tokens"] += int(ids.size)
            if bar is not None:
                bar.update(int(ids.size))
            if state["tokens"] >= shard_tokens:
                flush()

    batch: list[str] = []
    read = 0
    for index, text in enumerate(iter_documents(source)):
        read = index + 1
        if index < skip:
            continue
        if not isinstance(text, str):
            raise ConfigError(f"{source.describe()}: document {index} is {type(text).__name__}, expected text")
        batch.append(text)
        if len(batch) >= batch_documents:
            encode(batch)
            batch = []
    if batch:
        encode(batch)
    flush()
    manifest["documents_consumed"] += state["consumed"]  # trailing empty documents (no shard of their own)
    manifest["empty_documents_skipped"] += state["empty"]
    if read < skip:
        raise ConfigError(f"{source.describe()}: now yields {read} documents, fewer than the {skip} an interrupted "
                          "preparation had read; the source changed, prepare again with --overwrite")
    if manifest["total_documents"] == 0:
        raise ConfigError(f"{source.describe()}: no non-empty documents found ({read} read, all empty); expected text")
    manifest["prepare_seconds"] = round(manifest.get("prepare_seconds", 0) + time.perf_counter() - started, 3)
