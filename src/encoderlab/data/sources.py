"""Corpus sources: iterate over the documents (strings) of a corpus, in a fixed order.

- ``hf``: any Hugging Face dataset by id / config / split, streamed (``datasets``, ``streaming=True``);
  presets ``fineweb-edu-10BT`` and ``fineweb-edu-100BT``. Needs the network (or a local mirror).
- ``files``: a local file or folder of ``.txt`` (one document per file, or per line / blank-line
  separated paragraph), ``.jsonl``, ``.parquet``, ``.tsv`` / ``.csv`` (with a header) files.
- ``toyworld``: the built-in synthetic corpus (no download).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from encoderlab.config import ConfigError

FILE_SUFFIXES = (".txt", ".jsonl", ".json", ".parquet", ".tsv", ".csv")

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
    max_documents: int | None = None

    def describe(self) -> str:
        if self.kind == "hf":
            return f"hf:{self.hf_id}" + (f"/{self.hf_config}" if self.hf_config else "") + f":{self.split}"
        if self.kind == "files":
            return f"files:{self.path}"
        return f"toyworld:seed={self.toyworld_seed},documents={self.toyworld_documents}"


def parse_source(spec: str, **options) -> SourceConfig:
    """``toyworld``, a preset (``fineweb-edu-10BT``), ``hf:ID[:CONFIG[:SPLIT]]`` or a local path."""
    if spec == "toyworld":
        return SourceConfig(kind="toyworld", **options)
    if spec in HF_PRESETS:
        return SourceConfig(kind="hf", **HF_PRESETS[spec], **options)
    if spec.startswith("hf:"):
        parts = spec[3:].split(":")
        return SourceConfig(kind="hf", hf_id=parts[0], hf_config=parts[1] if len(parts) > 1 and parts[1] else None,
                            split=parts[2] if len(parts) > 2 else "train", **options)
    return SourceConfig(kind="files", path=spec, **options)


def list_files(path: Path) -> list[Path]:
    if not path.exists():
        raise ConfigError(f"{path}: corpus path not found")
    if path.is_file():
        files = [path]
    else:
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in FILE_SUFFIXES)
    unsupported = [p for p in files if p.suffix not in FILE_SUFFIXES]
    if unsupported:
        raise ConfigError(f"{unsupported[0]}: unsupported file type; expected one of {', '.join(FILE_SUFFIXES)}")
    if not files:
        raise ConfigError(f"{path}: no corpus files ({', '.join(FILE_SUFFIXES)}) found")
    return files


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{path}: not valid UTF-8 at byte {err.start} ({data[err.start:err.start + 4]!r}); re-encode the file"
        ) from None


def _column(row: dict, column: str, where: str) -> str:
    if column not in row:
        raise ConfigError(f"{where}: no text column {column!r}; columns are {', '.join(map(str, row))}")
    value = row[column]
    if not isinstance(value, str):
        raise ConfigError(f"{where}: column {column!r} holds {type(value).__name__}, expected text")
    return value


def _iter_file(path: Path, config: SourceConfig) -> Iterator[str]:
    suffix = path.suffix
    if suffix == ".txt":
        text = _read_text(path)
        if config.txt_mode == "file":
            yield text
        elif config.txt_mode == "line":
            yield from (line for line in text.splitlines() if line.strip())
        else:
            yield from (block.strip() for block in text.split("\n\n") if block.strip())
    elif suffix in (".jsonl", ".json"):
        for number, line in enumerate(_read_text(path).splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ConfigError(f"{path}:{number}: not a JSON object per line ({err.msg})") from None
            yield _column(row, config.text_column, f"{path}:{number}")
    elif suffix in (".tsv", ".csv"):
        reader = csv.DictReader(_read_text(path).splitlines(), delimiter="\t" if suffix == ".tsv" else ",",
                                quoting=csv.QUOTE_NONE if suffix == ".tsv" else csv.QUOTE_MINIMAL)
        for number, row in enumerate(reader, start=2):
            yield _column(row, config.text_column, f"{path}:{number}")
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.ParquetFile(path)
        if config.text_column not in table.schema_arrow.names:
            raise ConfigError(f"{path}: no text column {config.text_column!r}; columns are "
                              f"{', '.join(table.schema_arrow.names)}")
        for batch in table.iter_batches(columns=[config.text_column], batch_size=1024):
            yield from batch.column(0).to_pylist()


def iter_documents(config: SourceConfig) -> Iterator[str]:
    """The documents of the source, in its fixed order (at most ``max_documents``)."""
    count = 0
    for text in _iter_all(config):
        if config.max_documents is not None and count >= config.max_documents:
            return
        yield text
        count += 1


def _iter_all(config: SourceConfig) -> Iterator[str]:
    if config.kind == "toyworld":
        from encoderlab.data.toyworld import World

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
