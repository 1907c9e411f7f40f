"""The manifest of a shard directory (``manifest.json``, written by ``encoderlab data prepare``): its
format, how it is read and checked, and where an unfinished preparation is staged. Both the shard
writer (``shards.py``) and the tokenizer choice (``tokenizer.py``) read it, so it sits below both."""

from __future__ import annotations

import json
import re
from pathlib import Path

from encoderlab.config import ConfigError

MANIFEST = "manifest.json"
FORMAT = "encoderlab-shards"
VERSION = 2
_SHARD_NAME = re.compile(r"shard-\d{5,}")


def _manifest_error(manifest_path: Path, what: str) -> ConfigError:
    return ConfigError(f"{manifest_path}: {what}; expected the manifest written by `encoderlab data prepare`")


def _validate_manifest(manifest, manifest_path: Path) -> dict:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ConfigError(f"{manifest_path}: not an encoderlab shard manifest")
    fields = {"shards": list, "tokenizer": dict, "complete": bool, "total_tokens": int, "total_documents": int,
              "dtype": str}
    for key, kind in fields.items():
        if not isinstance(manifest.get(key), kind) or (kind is int and isinstance(manifest[key], bool)):
            raise _manifest_error(manifest_path, f"field {key!r} missing or not {kind.__name__}")
    for key in ("name", "fingerprint", "vocab_size"):
        if key not in manifest["tokenizer"]:
            raise _manifest_error(manifest_path, f"field 'tokenizer.{key}' missing")
    for number, shard in enumerate(manifest["shards"]):
        if (not isinstance(shard, dict) or not isinstance(shard.get("name"), str)
                or not _SHARD_NAME.fullmatch(shard["name"])
                or any(not isinstance(shard.get(k), int) or isinstance(shard[k], bool) or shard[k] < 0
                       for k in ("tokens", "documents"))):
            raise _manifest_error(manifest_path, f"shard entry {number} is not {{name: shard-NNNNN, tokens, documents}}")
    return manifest


def read_manifest(path: Path) -> dict:
    path = Path(path)
    manifest_path = path / MANIFEST
    if not path.exists():
        raise ConfigError(f"{path}: not found; expected a directory written by `encoderlab data prepare`")
    if not manifest_path.is_file():
        raise ConfigError(f"{path}: no {MANIFEST}; expected a directory written by `encoderlab data prepare`")
    try:
        text = manifest_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise _manifest_error(manifest_path, f"cannot read ({getattr(err, 'strerror', None) or err})") from None
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{manifest_path}:{err.lineno}: not valid JSON ({err.msg} at column {err.colno}); "
                          "expected the manifest written by `encoderlab data prepare`") from None
    return _validate_manifest(manifest, manifest_path)


def staging_dir(output_dir: str | Path) -> Path:
    """Where the preparation of ``output_dir`` is written until it completes (beside it)."""
    target = Path(output_dir).resolve()
    return target.with_name(f".{target.name}.prepare")


def existing_preparation(path: str | Path, staged: bool = False) -> dict | None:
    """The manifest of ``path`` (None when there is none). A broken staged manifest counts as none
    (the staging folder is then started afresh); a broken output manifest is an error."""
    path = Path(path)
    if not (path / MANIFEST).is_file():
        return None
    if not staged:
        return read_manifest(path)
    try:
        return read_manifest(path)
    except ConfigError:
        return None
