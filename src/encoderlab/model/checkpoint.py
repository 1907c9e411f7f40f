"""encoderlab's native model checkpoint: ``config.json`` + ``model.safetensors`` (+ tokenizer files).

Weights are only ever read from safetensors; pickled files are refused with a clear error.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

import encoderlab
from encoderlab.io import atomic_directory
from encoderlab.model.config import ModelConfig
from encoderlab.model.encoder import Encoder

CHECKPOINT_FORMAT = "encoderlab-model"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
    "vocab.json", "merges.txt", "chat_template.jinja",
)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


class CheckpointError(ValueError):
    """A checkpoint that is missing, malformed, or of another architecture."""


def save_checkpoint(
    model: Encoder,
    path: str | Path,
    *,
    tokenizer_dir: str | Path | None = None,
    overwrite: bool = False,
    extra: dict | None = None,
) -> Path:
    """Writes ``model`` to directory ``path`` atomically (temp dir, then rename)."""
    path = Path(path)
    state = {name: tensor.detach().contiguous().cpu() for name, tensor in model.state_dict().items()}
    meta = {
        "format": CHECKPOINT_FORMAT,
        "encoderlab_version": encoderlab.__version__,
        "model": model.config.to_dict(),
        **(extra or {}),
    }
    with atomic_directory(path, overwrite=overwrite) as tmp:
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        if tokenizer_dir is not None:
            copy_tokenizer_files(tokenizer_dir, tmp)
    return path


def copy_tokenizer_files(source: str | Path, target: Path) -> list[str]:
    source = Path(source)
    if not source.is_dir():
        raise CheckpointError(f"{source}: tokenizer directory not found")
    copied = [name for name in TOKENIZER_FILES if (source / name).is_file()]
    if not copied:
        raise CheckpointError(f"{source}: no tokenizer files found (expected one of {', '.join(TOKENIZER_FILES)})")
    for name in copied:
        shutil.copy2(source / name, target / name)
    return copied


def read_checkpoint_meta(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: checkpoint directory not found")
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        raise CheckpointError(f"{path}: no {CONFIG_FILE}; expected an encoderlab checkpoint directory")
    try:
        meta = json.loads(config_path.read_text())
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        raise CheckpointError(f"{config_path}: not valid JSON ({err})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{config_path}: expected a JSON object, got {type(meta).__name__}")
    if meta.get("format") != CHECKPOINT_FORMAT:
        model_type = meta.get("model_type")
        hint = (
            f" It looks like a Hugging Face checkpoint (model_type {model_type!r}); "
            "convert it with `encoderlab import`."
            if model_type
            else ""
        )
        raise CheckpointError(f"{config_path}: not an encoderlab checkpoint (format {meta.get('format')!r}).{hint}")
    if not isinstance(meta.get("model"), dict):
        raise CheckpointError(f"{config_path}: no 'model' mapping (the model config); the file is damaged")
    return meta


def require_safetensors(path: Path, name: str = WEIGHTS_FILE) -> Path:
    weights = path / name
    if weights.is_file():
        return weights
    pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise CheckpointError(
            f"{path}: weights are in pickle files ({', '.join(pickles)}); encoderlab only loads safetensors "
            f"(expected {name})"
        )
    raise CheckpointError(f"{path}: no {name} found")


def read_safetensors(file: str | Path, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Every tensor of safetensors ``file``; a CheckpointError naming the file when it is missing,
    truncated or not safetensors (instead of safetensors' bare SafetensorError)."""
    file = Path(file)
    if not file.is_file():
        raise CheckpointError(f"{file}: weights file not found")
    tensors = {}
    try:
        with safe_open(str(file), framework="pt", device=str(device)) as handle:
            for name in handle.keys():  # noqa: SIM118 (a safetensors handle, not a dict)
                tensors[name] = handle.get_tensor(name)
    except (SafetensorError, OSError, RuntimeError, ValueError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CheckpointError(
            f"{file}: unreadable, truncated or not a safetensors file ({reason}); copy or write it again"
        ) from None
    return tensors


def load_state_into(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Copies ``tensors`` into ``model``, refusing missing, unexpected or mis-shaped entries."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: weights do not match the architecture; missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    for name, tensor in tensors.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise CheckpointError(
                f"{source}: tensor {name!r} has shape {tuple(tensor.shape)}, expected {tuple(expected[name].shape)}"
            )
    model.load_state_dict(tensors, strict=True)


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu", **config_overrides) -> Encoder:
    """Loads an encoderlab checkpoint; ``config_overrides`` may change runtime fields (attn_backend)."""
    path = Path(path)
    meta = read_checkpoint_meta(path)
    config = ModelConfig.from_dict(meta["model"], where=str(path / CONFIG_FILE))
    if config_overrides:
        config = config.replace(**config_overrides)
    weights = require_safetensors(path)
    with torch.device("meta"):
        model = Encoder(config)
    model = model.to_empty(device=device)
    model.reset_rope()
    tensors = read_safetensors(weights, device)
    load_state_into(model, tensors, str(weights))
    return model
