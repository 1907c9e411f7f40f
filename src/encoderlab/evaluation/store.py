"""The results store: one SQLite row per fine-tuning run (stdlib ``sqlite3``).

A run is identified by everything that produced it: the model (weights, tokenizer and
architecture config: :func:`model_fingerprint`), the dataset name and the content of its data as
loaded (:func:`data_fingerprint`; for a zero-shot task, the training task's data too), the LR, the
seed and the protocol (every fine-tuning setting, the protocol version and the precision:
``protocol.protocol_identity``); its key is the hash of those. A cached run is reused only when
all of them are equal. A sweep asks :meth:`ResultsStore.has` before running and writes each
finished run in its own transaction, so an interrupted sweep resumes with nothing lost or
repeated. Rows keep per-split scores, the per-item test scores (for paired tests), the protocol
settings, timings and provenance. Summaries group runs by (protocol, data) and never pool groups.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

SCHEMA_VERSION = 2
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_key TEXT PRIMARY KEY,
    model_fingerprint TEXT NOT NULL,
    model_name TEXT NOT NULL,
    dataset TEXT NOT NULL,
    lr REAL NOT NULL,
    seed INTEGER NOT NULL,
    protocol_version TEXT NOT NULL,
    data_fingerprint TEXT NOT NULL,
    protocol TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'diverged')),
    validation_score REAL,
    test_score REAL,
    metrics TEXT NOT NULL,
    test_items TEXT,
    steps INTEGER,
    train_seconds REAL,
    eval_seconds REAL,
    provenance TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_model_dataset ON runs (model_fingerprint, dataset);
"""


def run_key(model_fingerprint: str, dataset: str, lr: float, seed: int, protocol_version: str,
            data_fingerprint: str) -> str:
    identity = json.dumps([model_fingerprint, dataset, repr(float(lr)), int(seed), protocol_version, data_fingerprint])
    return hashlib.sha256(identity.encode()).hexdigest()[:32]


@dataclass
class RunRecord:
    model_fingerprint: str
    model_name: str
    dataset: str
    lr: float
    seed: int
    protocol_version: str  # protocol id: hash of every setting (protocol.protocol_id)
    data_fingerprint: str
    status: str  # "ok" or "diverged"
    validation_score: float | None
    test_score: float | None
    metrics: dict = field(default_factory=dict)
    test_items: list[float] | None = None
    steps: int | None = None
    train_seconds: float | None = None
    eval_seconds: float | None = None
    provenance: dict = field(default_factory=dict)
    protocol: dict = field(default_factory=dict)  # the settings behind protocol_version

    @property
    def key(self) -> str:
        return run_key(self.model_fingerprint, self.dataset, self.lr, self.seed, self.protocol_version,
                       self.data_fingerprint)

    @property
    def group(self) -> tuple[str, str]:
        """Runs of one group may be summarised together; runs of different groups never are."""
        return self.protocol_version, self.data_fingerprint


def _check_owned(path: Path) -> None:
    """Read-only look at an existing file: an encoderlab results database of this schema version, or
    an empty SQLite file; anything else is refused before a single byte is written."""
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=60)
        try:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            version = None
            if "meta" in tables:
                found = connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                version = found[0] if found else None
        finally:
            connection.close()
    except sqlite3.DatabaseError as err:
        raise ValueError(f"{path}: not a usable encoderlab results database ({err})") from None
    if not tables:
        return
    if version is None or not tables <= {"meta", "runs"}:
        raise ValueError(f"{path}: not an encoderlab results database (it holds tables {', '.join(sorted(tables))}); "
                         "left unchanged; give --results a new file")
    if version != str(SCHEMA_VERSION):
        raise ValueError(f"{path}: results schema version {version}, this encoderlab reads version {SCHEMA_VERSION}; "
                         "left unchanged; use a new results file or an encoderlab of that version (version 1 rows have "
                         "no data fingerprint and no protocol settings, so they cannot be matched to a run safely)")


def _nullable(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


class ResultsStore:
    """An encoderlab results database. An existing file is checked before anything is written to it:
    a file of another application, or of another schema version, is refused and left unchanged.
    ``create=False`` opens only an existing database (readers such as ``report`` never create one)."""

    def __init__(self, path: str | Path, create: bool = True):
        self.path = Path(path)
        exists = self.path.is_file() and self.path.stat().st_size > 0
        if exists:
            _check_owned(self.path)
        elif not create:
            raise FileNotFoundError(f"{self.path}: no results database (nothing has been evaluated into it yet)")
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._connection = sqlite3.connect(self.path, timeout=60)
            self._connection.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
            self._connection.executescript(SCHEMA)
            with self._connection:
                self._connection.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                self._connection.execute("INSERT OR IGNORE INTO meta VALUES ('application', 'encoderlab')")
        except sqlite3.OperationalError as err:  # a read-only file or folder, a missing folder, a full disk
            folder = self.path.parent
            raise OSError(f"{self.path}: cannot write the results database here ({err}); SQLite writes the file and "
                          f"{self.path.name}-wal / -shm beside it, so {folder} must be a writable folder; give "
                          "--results a writable location") from None
        except sqlite3.DatabaseError as err:
            raise ValueError(f"{self.path}: not a usable encoderlab results database ({err})") from None

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connection:  # commits on success, rolls back on error
            yield self._connection

    def has(self, key: str) -> bool:
        return self._connection.execute("SELECT 1 FROM runs WHERE run_key = ?", (key,)).fetchone() is not None

    def add(self, record: RunRecord) -> bool:
        """Stores ``record``; returns False (and changes nothing) if the run is already there."""
        if record.status not in ("ok", "diverged"):
            raise ValueError(f"run status: expected 'ok' or 'diverged', got {record.status!r}")
        try:
            with self._transaction() as db:
                cursor = self._insert(db, record)
        except sqlite3.OperationalError as err:  # disk full, database locked too long, read-only file
            raise OSError(f"{self.path}: could not record the run of {record.dataset} (lr {record.lr:g}, seed "
                          f"{record.seed}): {err}; nothing of it was written") from None
        return cursor.rowcount == 1

    def _insert(self, db: sqlite3.Connection, record: RunRecord) -> sqlite3.Cursor:
        return db.execute(
            "INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (record.key, record.model_fingerprint, record.model_name, record.dataset, float(record.lr),
             int(record.seed), record.protocol_version, record.data_fingerprint,
             json.dumps(record.protocol, sort_keys=True), record.status, _nullable(record.validation_score),
             _nullable(record.test_score), json.dumps(record.metrics),
             json.dumps(record.test_items) if record.test_items is not None else None, record.steps,
             record.train_seconds, record.eval_seconds, json.dumps(record.provenance),
             datetime.now(timezone.utc).isoformat()),
        )

    def records(self, model_fingerprint: str | None = None, dataset: str | None = None) -> list[RunRecord]:
        query, args = "SELECT * FROM runs WHERE 1=1", []
        if model_fingerprint is not None:
            query, args = query + " AND model_fingerprint = ?", [*args, model_fingerprint]
        if dataset is not None:
            query, args = query + " AND dataset = ?", [*args, dataset]
        rows = self._connection.execute(query + " ORDER BY dataset, lr, seed", args).fetchall()
        names = [c[0] for c in self._connection.execute("SELECT * FROM runs LIMIT 0").description]
        out = []
        for row in rows:
            data = dict(zip(names, row))
            out.append(RunRecord(
                model_fingerprint=data["model_fingerprint"], model_name=data["model_name"], dataset=data["dataset"],
                lr=data["lr"], seed=data["seed"], protocol_version=data["protocol_version"],
                data_fingerprint=data["data_fingerprint"], protocol=json.loads(data["protocol"]), status=data["status"],
                validation_score=data["validation_score"] if data["validation_score"] is not None else math.nan,
                test_score=data["test_score"] if data["test_score"] is not None else math.nan,
                metrics=json.loads(data["metrics"]),
                test_items=json.loads(data["test_items"]) if data["test_items"] else None, steps=data["steps"],
                train_seconds=data["train_seconds"], eval_seconds=data["eval_seconds"],
                provenance=json.loads(data["provenance"]),
            ))
        return out

    def count(self) -> int:
        return self._connection.execute("SELECT COUNT(*) FROM runs").fetchone()[0]


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                    "vocab.json", "vocab.txt", "merges.txt", "spiece.model", "sentencepiece.bpe.model",
                    "added_tokens.json")
_CONFIG_NOISE = ("_name_or_path", "transformers_version", "torch_dtype", "dtype")


def model_fingerprint(model_dir: str | Path) -> str:
    """Hash of what makes a model's outputs: its weight files (safetensors), its tokenizer files and
    its architecture config (an encoderlab checkpoint's ``model`` section; a transformers
    ``config.json`` without its bookkeeping keys), so results follow the model, not the path."""
    model_dir = Path(model_dir)
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise ValueError(f"{model_dir}: no safetensors weights to fingerprint")
    digest = hashlib.sha256()
    for path in files + [model_dir / name for name in _TOKENIZER_FILES if (model_dir / name).is_file()]:
        digest.update(path.name.encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 24), b""):
                digest.update(block)
    config_file = model_dir / "config.json"
    if config_file.is_file():
        try:
            config = json.loads(config_file.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{config_file}: not valid JSON ({err})") from None
        config = config["model"] if config.get("format") == "encoderlab-model" else {
            k: v for k, v in config.items() if k not in _CONFIG_NOISE}
        digest.update(b"config.json" + json.dumps(config, sort_keys=True).encode())
    return digest.hexdigest()[:24]


def data_fingerprint(task) -> str:
    """Content hash of a task's data as loaded (``TaskData``): every split's rows, and for retrieval
    the corpus, queries and qrels. Rows are hashed as canonical JSON, so the same data read from
    the hub, from Parquet or from the official files gives the same fingerprint, and any change to
    a row, a split or the loader's output gives another."""
    digest = hashlib.sha256()

    def feed(name: str, rows) -> None:
        digest.update(f"\x00{name}\x00".encode())
        for row in rows:
            digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False, default=str).encode())
            digest.update(b"\n")

    for split in sorted(task.splits or {}):
        feed(f"split:{split}", task.splits[split])
    if task.corpus is not None:
        feed("corpus", task.corpus)
    for split in sorted(task.queries or {}):
        feed(f"queries:{split}", task.queries[split])
    for split in sorted(task.qrels or {}):
        feed(f"qrels:{split}", sorted(task.qrels[split].items()))
    return digest.hexdigest()[:24]


def combined_fingerprint(train_fingerprint: str, test_fingerprint: str) -> str:
    """A zero-shot run depends on the data it was trained and validated on and the data it was tested on."""
    if train_fingerprint == test_fingerprint:
        return train_fingerprint
    return hashlib.sha256(f"{train_fingerprint}+{test_fingerprint}".encode()).hexdigest()[:24]


__all__ = ["ResultsStore", "RunRecord", "combined_fingerprint", "data_fingerprint", "model_fingerprint", "run_key"]
