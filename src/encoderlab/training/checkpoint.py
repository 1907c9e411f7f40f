"""Training checkpoints: everything needed to continue a run exactly, written atomically.

``<run>/checkpoints/step-000100/`` holds
- ``config.json`` + ``model.safetensors``: an encoderlab model checkpoint (exportable as is);
- ``optimizer.pt``: AdamW state (tensors and plain types only; read with ``weights_only=True``);
- ``rng.pt``: torch (and CUDA) RNG states;
- ``trainer_state.json``: step, samples and tokens seen, phase, resolved run config, versions.
``<run>/checkpoints/latest`` names the newest complete checkpoint; it is replaced by rename
after the checkpoint directory itself was renamed into place, so it never points at a partial one.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import torch

import encoderlab
from encoderlab.io import atomic_directory, atomic_write_text
from encoderlab.model import CheckpointError, ModelConfig
from encoderlab.model.checkpoint import (
    CHECKPOINT_FORMAT,
    CONFIG_FILE,
    WEIGHTS_FILE,
    copy_tokenizer_files,
    read_checkpoint_meta,
)

STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.pt"
RNG_FILE = "rng.pt"
LATEST = "latest"


@dataclass
class TrainingState:
    step: int  # optimizer steps completed
    samples_seen: int
    tokens_seen: int
    run_config: dict
    kept: bool = False  # a configured checkpoint step (never rotated away)


def git_revision() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


def save_training_checkpoint(
    directory: Path, model_state: dict[str, torch.Tensor], model_config: ModelConfig, optimizer_state: dict,
    state: TrainingState, tokenizer_dir: Path | None = None,
) -> Path:
    target = directory / checkpoint_name(state.step)
    meta = {"format": CHECKPOINT_FORMAT, "encoderlab_version": encoderlab.__version__, "model": model_config.to_dict()}
    from safetensors.torch import save_file

    with atomic_directory(target, overwrite=True) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in model_state.items()}, str(tmp / WEIGHTS_FILE),
                  metadata={"format": "pt"})
        (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        torch.save(optimizer_state, tmp / OPTIMIZER_FILE)
        if tokenizer_dir is not None:  # the checkpoint is then self-contained for evaluation and export
            copy_tokenizer_files(tokenizer_dir, tmp)
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        torch.save(rng, tmp / RNG_FILE)
        (tmp / STATE_FILE).write_text(json.dumps({
            "step": state.step, "samples_seen": state.samples_seen, "tokens_seen": state.tokens_seen,
            "kept": state.kept, "run_config": state.run_config, "encoderlab_version": encoderlab.__version__,
            "git_revision": git_revision(), "torch_version": torch.__version__,
        }, indent=2) + "\n")
    atomic_write_text(directory / LATEST, target.name + "\n")
    return target


def latest_checkpoint(directory: Path) -> Path | None:
    pointer = directory / LATEST
    if not pointer.is_file():
        return None
    target = directory / pointer.read_text().strip()
    return target if target.is_dir() else None


def rotate_checkpoints(directory: Path, keep_last: int) -> None:
    """Deletes rolling checkpoints beyond the newest ``keep_last``; kept ones stay."""
    rolling = []
    for path in sorted(directory.glob("step-*")):
        state_file = path / STATE_FILE
        if state_file.is_file() and not json.loads(state_file.read_text()).get("kept"):
            rolling.append(path)
    latest = latest_checkpoint(directory)
    for path in rolling[: max(0, len(rolling) - keep_last)]:
        if path != latest:
            shutil.rmtree(path, ignore_errors=True)


def read_training_state(path: Path) -> dict:
    """The trainer state of checkpoint ``path``; a clear error if it is not a training checkpoint."""
    read_checkpoint_meta(path)  # raises CheckpointError for non-checkpoints
    state_file = path / STATE_FILE
    if not state_file.is_file() or not (path / OPTIMIZER_FILE).is_file():
        raise CheckpointError(
            f"{path}: a model checkpoint without training state ({STATE_FILE}, {OPTIMIZER_FILE}); "
            "it can initialise a run (init_from) but not resume or branch one"
        )
    return json.loads(state_file.read_text())


def load_optimizer_state(path: Path) -> dict:
    return torch.load(path / OPTIMIZER_FILE, map_location="cpu", weights_only=True)


def load_rng_state(path: Path) -> None:
    rng = torch.load(path / RNG_FILE, map_location="cpu", weights_only=True)
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
