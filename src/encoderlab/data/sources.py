"""Corpus sources: iterate over the documents (strings) of a corpus, in a fixed order.

- ``hf``: any Hugging Face dataset by id / config / split, streamed (``datasets``, ``streaming=True``);
  presets ``fineweb-edu-10BT`` and ``fineweb-edu-100BT``. Needs the network (or a local mirror).
- ``files``: a local file or folder of ``.txt`` (one document per file, or per line / blank-line
  separated paragraph), ``.jsonl`` (one JSON object per line), ``.json`` (JSON lines, or an array
  of objects), ``.parquet``, ``.tsv`` / ``.csv`` (with a header) files. Files are read as UTF-8 (a
  byte-order mark is dropped); in a folder, hidden files and folders (``.name``) are skipped.
- ``toyworld``: the built-in synthetic corpus (no download).

Every settings value is checked when a :class:`SourceConfig` is made, and every input error names
the file (and line or row) and what was expected.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from encoderlab.config import ConfigError
from encoderlab import validate
from encoderlab.data.toyworld import CORPUS_VERSION, World

FILE_SUFFIXES = (".txt", ".jsonl", ".json", ".parquet", ".tsv", ".csv")
TXT_MODES = ("file", "line", "paragraph")

HF_PRESETS = {
    "fineweb-edu-10BT": dict(hf_id="HuggingFaceFW/fineweb-edu", hf_config="sample-10BT", split="train"),
    "fineweb-edu-100BT": dict(hf_id="HuggingFaceFW/fineweb-edu", hf_config="sample-100BT", split="train"),
}


@dataclass(kw_only=True)
class SourceConfig:
    kind: Literal["hf", "files", "toyworld"]
    path: str | None = None  # files
    hf_id: str | None = None  # hf
    hf_config: str | None = None
    split: str = "train"
    text_column: str = "text"
    txt_mode: Literal["file", "line", "paragraph"] = "file"
    toyworld_seed: int = 0
    toyworld_documents: int = 10_000
    max_documents: int | None = None  # at most this many source documents (empty ones included)

    def __post_init__(self) -> None:
        if self.kind not in ("hf", "files", "toyworld"):
            raise ConfigError(f"source kind {self.kind!r}: expected hf, files or toyworld")
        if self.max_documents is not None:
            validate.count(self.max_documents, "max documents", 1)
        if self.kind == "toyworld":
            validate.count(self.toyworld_documents, "toyworld documents", 1)
            validate.count(self.toyworld_seed, "toyworld seed", 0)
        if self.kind == "files" and not self.path:
            raise ConfigError("files source: a path is needed")
        if self.kind == "hf":
            if not self.hf_id:
                raise ConfigError("hf source: a dataset id is needed (hf:ID[:CONFIG[:SPLIT]])")
            if not self.split:
                raise ConfigError(f"hf:{self.hf_id}: the split is empty (hf:ID[:CONFIG[:SPLIT]])")
        if self.kind != "toyworld" and (not isinstance(self.text_column, str) or not self.text_column):
            raise ConfigError(f"text column {self.text_column!r}: expected a column name")
        if self.txt_mode not in TXT_MODES:
            raise ConfigError(f"txt mode {self.txt_mode!r}: expected one of {', '.join(TXT_MODES)}")

    def describe(self) -> str:
        if self.kind == "hf":
            return f"hf:{self.hf_id}" + (f"/{self.hf_config}" if self.hf_config else "") + f":{self.split}"
        if self.kind == "files":
            return f"files:{self.path}"
        return f"toyworld:seed={self.toyworld_seed},documents={self.toyworld_documents}"

    def identity(self) -> dict:
        """Every setting that changes the documents this source yields (recorded in shard manifests).

        For local files it includes their count and a digest of their names, sizes and modification
        times, so edited files are not taken for the corpus a folder was prepared from. Raises
        :class:`ConfigError` when the corpus path does not exist or holds no corpus files.
        """
        identity: dict = {"kind": self.kind, "max_documents": self.max_documents}
        if self.kind == "toyworld":
            # the generator's version: shards of an older toyworld corpus are not taken for this one
            identity.update(seed=self.toyworld_seed, documents=self.toyworld_documents, corpus_version=CORPUS_VERSION)
        elif self.kind == "hf":
            identity.update(id=self.hf_id, config=self.hf_config, split=self.split, text_column=self.text_column)
        else:
            root = Path(self.path)
            files = list_files(root)
            base = root.resolve() if root.is_dir() else root.resolve().parent
            digest = hashlib.sha256()
            for file in files:
                try:
                    stat = file.stat()
                except OSError as err:
                    raise ConfigError(f"{file}: cannot read ({err.strerror or err})") from None
                digest.update(f"{file.resolve().relative_to(base)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
            identity.update(path=str(root.resolve()), text_column=self.text_column, txt_mode=self.txt_mode,
                            files=len(files), files_digest=digest.hexdigest()[:16])
        return identity


def parse_source(spec: str, **options) -> SourceConfig:
    """``toyworld``, a preset (``fineweb-edu-10BT``), ``hf:ID[:CONFIG[:SPLIT]]`` or a local path."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError("source: empty; expected toyworld, a preset, hf:ID[:CONFIG[:SPLIT]] or a local path")
    if spec == "toyworld":
        return SourceConfig(kind="toyworld", **options)
    if spec in HF_PRESETS:
        return SourceConfig(kind="hf", **HF_PRESETS[spec], **options)
    if spec.startswith("hf:"):
        parts = spec[3:].split(":")
        if len(parts) > 3 or not parts[0]:
            raise ConfigError(f"source {spec!r}: expected hf:ID[:CONFIG[:SPLIT]]")
        return SourceConfig(kind="hf", hf_id=parts[0], hf_config=parts[1] if len(parts) > 1 and parts[1] else None,
                            split=parts[2] if len(parts) > 2 else "train", **options)
    return SourceConfig(kind="files", path=spec, **options)


def _supported(path: Path) -> bool:
    return path.suffix.lower() in FILE_SUFFIXES


def list_files(path: Path) -> list[Path]:
    """The corpus files of a file or folder, in a fixed (sorted) order; hidden entries of a folder skipped."""
    if not path.exists():
        raise ConfigError(f"{path}: corpus path not found")
    if path.is_file():
        if not _supported(path):
            raise ConfigError(f"{path}: unsupported file type; expected one of {', '.join(FILE_SUFFIXES)}")
        return [path]
    if not path.is_dir():
        raise ConfigError(f"{path}: not a file or folder")
    try:
        files = sorted(p for p in path.rglob("*")
                       if not any(part.startswith(".") for part in p.relative_to(path).parts)
                       and _supported(p) and p.is_file())
    except OSError as err:
        raise ConfigError(f"{getattr(err, 'filename', None) or path}: cannot list ({err.strerror or err})") from None
    if not files:
        raise ConfigError(f"{path}: no corpus files ({', '.join(FILE_SUFFIXES)}) found")
    return files


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror or err})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        start = err.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        raise ConfigError(
            f"{path}: not valid UTF-8 at byte {start} ({data[start:start + 4]!r}); re-encode the file"
        ) from None


def _column(row, column: str, where: str) -> str:
    if not isinstance(row, dict):
        raise ConfigError(f"{where}: expected a JSON object with a {column!r} field, got {type(row).__name__}")
    if column not in row:
        raise ConfigError(f"{where}: no text column {column!r}; columns are {', '.join(map(str, row)) or '(none)'}")
    value = row[column]
    if value is None:
        raise ConfigError(f"{where}: column {column!r} is empty (null), expected text")
    if not isinstance(value, str):
        raise ConfigError(f"{where}: column {column!r} holds {type(value).__name__}, expected text")
    return value


def _json_error(path: Path, number: int, err: json.JSONDecodeError) -> ConfigError:
    return ConfigError(f"{path}:{number}: not valid JSON ({err.msg} at column {err.colno})")


def _iter_json_lines(path: Path, text: str, column: str) -> Iterator[str]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise _json_error(path, number, err) from None
        yield _column(row, column, f"{path}:{number}")


def _iter_json(path: Path, text: str, column: str) -> Iterator[str]:
    """A ``.json`` file: an array of objects, or JSON lines."""
    if not text.lstrip().startswith("["):
        yield from _iter_json_lines(path, text, column)
        return
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as err:
        raise _json_error(path, err.lineno, err) from None
    if not isinstance(rows, list):
        raise ConfigError(f"{path}: expected a JSON array of objects or JSON lines")
    for number, row in enumerate(rows, start=1):
        yield _column(row, column, f"{path}: item {number}")


def _iter_delimited(path: Path, text: str, config: SourceConfig) -> Iterator[str]:
    tsv = path.suffix.lower() == ".tsv"
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # documents are longer than the 128 KiB default
    # newline="": a quoted field keeps its line breaks (splitting into lines first joined them away)
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if tsv else ",",
                            quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL)
    try:
        header = reader.fieldnames
        if header is None:
            return  # an empty file: no documents
        if config.text_column not in header:
            raise ConfigError(f"{path}:1: no text column {config.text_column!r}; columns are {', '.join(header)}")
        for row in reader:
            value = row[config.text_column]
            if value is None:
                raise ConfigError(f"{path}:{reader.line_num}: fewer fields than the {len(header)} of the header "
                                  f"(no {config.text_column!r} value)")
            yield value
    except csv.Error as err:
        raise ConfigError(f"{path}:{reader.line_num}: not valid {'TSV' if tsv else 'CSV'} ({err})") from None


def _iter_parquet(path: Path, column: str) -> Iterator[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
        schema = table.schema_arrow
    except (OSError, pa.ArrowException, ValueError) as err:
        raise ConfigError(f"{path}: not a readable Parquet file ({err})") from None
    if column not in schema.names:
        raise ConfigError(f"{path}: no text column {column!r}; columns are {', '.join(schema.names)}")
    kind = schema.field(column).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)
            or (hasattr(pa.types, "is_string_view") and pa.types.is_string_view(kind))):
        raise ConfigError(f"{path}: column {column!r} holds {kind}, expected text (string)")
    row = 0
    try:
        for batch in table.iter_batches(columns=[column], batch_size=1024):
            values = batch.column(0).to_pylist()
            for offset, value in enumerate(values):
                if value is None:
                    raise ConfigError(f"{path}: row {row + offset}: column {column!r} is empty (null), expected text")
            yield from values
            row += len(values)
    except (OSError, pa.ArrowException) as err:
        raise ConfigError(f"{path}: row {row}: unreadable Parquet data ({err})") from None


def _iter_file(path: Path, config: SourceConfig) -> Iterator[str]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        yield from _iter_parquet(path, config.text_column)
        return
    text = _read_text(path)
    if suffix == ".txt":
        if config.txt_mode == "file":
            yield text
        elif config.txt_mode == "line":
            yield from (line for line in text.splitlines() if line.strip())
        else:  # paragraphs: separated by a blank (or whitespace-only) line, any line ending
            text = text.replace("\r\n", "\n").replace("\r", "\n")
            yield from (block.strip() for block in re.split(r"\n[ \t\f\v]*\n", text) if block.strip())
    elif suffix == ".jsonl":
        yield from _iter_json_lines(path, text, config.text_column)
    elif suffix == ".json":
        yield from _iter_json(path, text, config.text_column)
    elif suffix in (".tsv", ".csv"):
        yield from _iter_delimited(path, text, config)
    else:
        raise ConfigError(f"{path}: unsupported file type; expected one of {', '.join(FILE_SUFFIXES)}")


def iter_documents(config: SourceConfig) -> Iterator[str]:
    """The documents of the source, in its fixed order (at most ``max_documents``; nothing past them is read)."""
    if config.max_documents is None:
        yield from _iter_all(config)
        return
    for count, text in enumerate(_iter_all(config), start=1):
        yield text
        if count >= config.max_documents:
            return


def _iter_all(config: SourceConfig) -> Iterator[str]:
    if config.kind == "toyworld":
        yield from World(seed=config.toyworld_seed).corpus(config.toyworld_documents)
    elif config.kind == "files":
        if not config.path:
            raise ConfigError("files source: a path is needed")
        for path in list_files(Path(config.path)):
            yield from _iter_file(path, config)
    elif config.kind == "hf":
        from datasets import load_dataset

        try:
            dataset = load_dataset(config.hf_id, config.hf_config, split=config.split, streaming=True)
        except Exception as err:  # hub unreachable, unknown id, ...: say what and how to go offline
            raise ConfigError(
                f"hf:{config.hf_id}: could not open the dataset ({type(err).__name__}: {err}). Without network "
                "access, download its files elsewhere and point the source at the local folder instead"
            ) from None
        for number, row in enumerate(dataset):
            yield _column(row, config.text_column, f"hf:{config.hf_id} row {number}")
    else:
        raise ConfigError(f"source kind {config.kind!r}: expected hf, files or toyworld")
