"""Training checkpoints: everything needed to continue a run exactly, written atomically.

``<run>/checkpoints/step-000100/`` holds
- ``config.json`` + ``model.safetensors``: an encoderlab model checkpoint (exportable as is);
- ``optimizer.pt``: AdamW state (tensors and plain types only; read with ``weights_only=True``);
- ``rng.pt``: torch (and CUDA) RNG states;
- ``trainer_state.json``: step, samples and tokens seen, phase, resolved run config, versions.
``<run>/checkpoints/latest`` names the newest complete checkpoint; it is replaced by rename
after the checkpoint directory itself was renamed into place, so it never points at a partial one.
A ``latest`` that names a missing or incomplete checkpoint (a copied or hand-edited run) falls back
to the newest complete one. A write that fails (disk full) leaves neither its temporary directory
nor a changed ``latest``; temporary directories left by a killed process (``.step-N.tmp-*``) are
removed when the run starts again.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

import encoderlab
from encoderlab.config import ConfigError
from encoderlab.io import atomic_directory, atomic_write_text, git_revision
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
COMPLETE_FILES = (CONFIG_FILE, WEIGHTS_FILE, OPTIMIZER_FILE, RNG_FILE, STATE_FILE)
_STEP_NAME = re.compile(r"step-(\d+)")
# What encoderlab.io's atomic writers leave behind when killed: ``.step-000100.tmp-k3j2x9``
# (tempfile.mkdtemp / mkstemp suffixes) and ``.step-000100.old-1234`` (the replaced directory).
_STALE_NAME = re.compile(r"\.(step-\d+|latest)\.(tmp-[A-Za-z0-9_]+|old-\d+)")


class CheckpointWriteError(OSError):
    """Writing a checkpoint failed (disk full, quota, I/O error); nothing of it was kept."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


@dataclass
class TrainingState:
    step: int  # optimizer steps completed
    samples_seen: int
    tokens_seen: int
    run_config: dict
    kept: bool = False  # a configured checkpoint step (never rotated away)


def checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


def save_training_checkpoint(
    directory: Path, model_state: dict[str, torch.Tensor], model_config: ModelConfig, optimizer_state: dict,
    state: TrainingState, tokenizer_dir: Path | None = None, tokenizer: dict | None = None,
) -> Path:
    """Writes checkpoint ``step-N`` atomically, then points ``latest`` at it.

    Any failure (typically ENOSPC) raises :class:`CheckpointWriteError`, an OSError: the temporary
    directory is gone, ``latest`` still names the previous checkpoint.
    """
    target = directory / checkpoint_name(state.step)
    meta = {"format": CHECKPOINT_FORMAT, "encoderlab_version": encoderlab.__version__, "model": model_config.to_dict()}
    if tokenizer_dir is not None and tokenizer is not None:  # the identity of the tokenizer files it carries
        meta["tokenizer"] = {k: tokenizer.get(k) for k in ("name", "fingerprint", "vocab_size")}
    from safetensors.torch import save_file

    previous = latest_checkpoint(directory)
    try:
        # overwrite: a same-named directory here is an incomplete leftover or a checkpoint this
        # (deterministic) run is re-writing after a resume from an older one.
        with atomic_directory(target, overwrite=True, owns=lambda name: True) as tmp:
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
    except CheckpointError:
        raise
    except Exception as err:  # torch.save and safetensors report I/O failures as RuntimeError / SafetensorError
        if not isinstance(err, OSError) and not _looks_like_io(err):
            raise
        raise _write_error(err, target, previous) from err
    return target


def _looks_like_io(err: BaseException) -> bool:
    text = str(err).lower()
    hints = ("no space", "os error", "errno", "file write failed", "unexpected pos", "i/o", "quota")
    return type(err).__name__ == "SafetensorError" or any(hint in text for hint in hints)


def _write_error(err: BaseException, target: Path, previous: Path | None) -> CheckpointWriteError:
    code = getattr(err, "errno", None)
    text = str(err).lower()
    if code is None:
        code = errno.ENOSPC if ("no space" in text or "os error 28" in text) else errno.EIO
    reason = getattr(err, "strerror", None) or " ".join(str(err).split())[:300] or type(err).__name__
    kept = f"{LATEST} still names {previous.name}" if previous is not None else "the run has no checkpoint yet"
    return CheckpointWriteError(
        code, f"{target}: writing the checkpoint failed ({reason}); nothing of it was kept and {kept}. "
              "Free space (or point --output elsewhere) and resume with --resume")


def is_complete_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a whole training checkpoint: every file there and a readable trainer state."""
    if not (_STEP_NAME.fullmatch(path.name) and path.is_dir()):
        return False
    if not all((path / name).is_file() for name in COMPLETE_FILES):
        return False
    try:
        state = json.loads((path / STATE_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and isinstance(state.get("step"), int)


def complete_checkpoints(directory: Path) -> list[Path]:
    """The complete training checkpoints of ``directory``, oldest first."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if is_complete_checkpoint(p)]
    return sorted(found, key=lambda p: int(_STEP_NAME.fullmatch(p.name).group(1)))


def resolve_latest(directory: Path) -> tuple[Path | None, str | None]:
    """The checkpoint to resume from, and a note when it is not the one ``latest`` names.

    ``latest`` when it names a complete checkpoint; otherwise (missing, dangling or naming an
    incomplete one) the newest complete checkpoint, with a note saying so; None when there is none.
    """
    pointer = directory / LATEST
    named = None
    if pointer.is_file():
        try:
            named = pointer.read_text().strip()
        except (OSError, UnicodeDecodeError):
            named = "(unreadable)"
        if _STEP_NAME.fullmatch(named) and is_complete_checkpoint(directory / named):
            return directory / named, None
    complete = complete_checkpoints(directory)
    if not complete:
        return None, None
    why = f"{LATEST} names {named!r}, which is missing or incomplete" if named is not None else f"there is no {LATEST}"
    return complete[-1], f"{directory}: {why}; using the newest complete checkpoint, {complete[-1].name}"


def latest_checkpoint(directory: Path) -> Path | None:
    return resolve_latest(directory)[0]


def clean_stale_temporaries(directory: Path) -> list[str]:
    """Removes what killed checkpoint writes left in ``directory`` (only encoderlab's own temporary
    names: ``.step-N.tmp-*``, ``.step-N.old-PID``, ``.latest.tmp-*``); returns their names."""
    if not directory.is_dir():
        return []
    removed = []
    for path in sorted(directory.iterdir()):
        if not _STALE_NAME.fullmatch(path.name):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path.name)
    return removed


def rotate_checkpoints(directory: Path, keep_last: int) -> None:
    """Deletes rolling checkpoints beyond the newest ``keep_last``; kept ones stay."""
    rolling = []
    for path in complete_checkpoints(directory):
        if not json.loads((path / STATE_FILE).read_text()).get("kept"):
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
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{state_file}: unreadable or truncated trainer state ({err})") from None
    if not isinstance(state, dict) or not isinstance(state.get("step"), int) or not isinstance(
            state.get("run_config"), dict):
        raise CheckpointError(f"{state_file}: not a trainer state (expected a mapping with 'step' and 'run_config')")
    return state


def _load_pickled_state(file: Path, what: str):
    """A ``torch.save`` file of tensors and plain types, read with ``weights_only=True``."""
    import pickle

    if not file.is_file():
        raise CheckpointError(f"{file}: missing; the checkpoint has no {what}")
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message suggests turning the weights-only check off, i.e. running whatever code the
        # file holds: never repeated here.
        raise CheckpointError(
            f"{file}: refused: the {what} holds Python objects other than tensors and plain types, which encoderlab "
            "never unpickles; this is not a checkpoint encoderlab wrote"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CheckpointError(f"{file}: unreadable or truncated {what} ({first})") from None


def load_optimizer_state(path: Path) -> dict:
    state = _load_pickled_state(path / OPTIMIZER_FILE, "optimizer state")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path / OPTIMIZER_FILE}: not an optimizer state (a {type(state).__name__})")
    return state


def load_rng_state(path: Path) -> None:
    rng = _load_pickled_state(path / RNG_FILE, "RNG state")
    if not isinstance(rng, dict) or not isinstance(rng.get("torch"), torch.Tensor):
        raise CheckpointError(f"{path / RNG_FILE}: not an RNG state (expected a mapping with a 'torch' tensor)")
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


# What a branch shares with its parent up to the branch point: everything that shapes the first k steps.
BRANCH_SHARED_KEYS = ("global_batch_tokens", "seed", "data", "optimizer", "isolate_documents", "loss_chunk_size")


def _phase_prefix(phases: list[dict], steps: int) -> list[tuple]:
    """The phases (objective, masking settings and schedule, frozen weights) that run the first ``steps`` steps."""
    out, done = [], 0
    for phase in phases:
        if done >= steps:
            break
        take = min(phase["steps"], steps - done)
        scheduled = phase.get("mask_ratio_end") is not None  # its ratios depend on the phase's length too
        out.append((phase.get("objective"), phase.get("mask_ratio"), phase.get("mask_fraction", 1.0),
                    phase.get("random_fraction", 0.0), phase.get("keep_fraction", 0.0), take,
                    phase.get("mask_ratio_end"), phase.get("mask_ratio_stages"), tuple(phase.get("freeze") or ()),
                    phase["steps"] if scheduled else None, phase.get("clm_fraction"),
                    phase.get("masked_objective", "mlm")))
        done += take
    return out


def check_branch_point(child: dict, parent: dict, step: int, where: str) -> None:
    """Refuses a branch (``branch_from``) of run config ``child`` from step ``step`` of run config
    ``parent`` unless the branch is the parent's own trajectory up to ``step``: a stable-phase
    (non-decayed) checkpoint of the parent, the same data, batch, seed, optimizer, warmup and peak LR,
    and the same phases (objective, masking) for the first ``step`` steps. ``where`` names the
    branch (run and step) in the ConfigError."""
    name, parent_name = child.get("name"), parent.get("name")
    parent_total = sum(p["steps"] for p in parent["phases"])
    child_total = sum(p["steps"] for p in child["phases"])
    decay_start = parent_total - parent["schedule"]["decay_steps"]
    if not 0 < step <= parent_total:
        raise ConfigError(f"{where}: run {name!r} branches from step {step} of run {parent_name!r}, which has "
                          f"{parent_total} steps")
    if step > decay_start:
        raise ConfigError(
            f"{where}: run {name!r} branches from step {step} of run {parent_name!r}, a decayed checkpoint (its LR "
            f"decays from step {decay_start}); a branch needs a stable-phase (non-decayed) checkpoint at or before "
            f"step {decay_start}")
    if not step < child_total - child["schedule"]["decay_steps"] + 1:
        raise ConfigError(f"{where}: run {name!r}: branch point step {step} is not before the decay of this "
                          f"{child_total}-step run (decay starts at step {child_total - child['schedule']['decay_steps']})")
    for key in BRANCH_SHARED_KEYS:
        if parent.get(key) != child.get(key):
            raise ConfigError(f"{where}: run {name!r} differs from its parent {parent_name!r} in {key!r}, so the "
                              f"branch would not continue the parent's first {step} steps")
    for key in ("lr", "warmup_steps"):
        if parent["schedule"].get(key) != child["schedule"].get(key):
            raise ConfigError(f"{where}: run {name!r} differs from its parent {parent_name!r} in schedule.{key}: the "
                              f"LR of its first {step} steps would not be the parent's")
    if _phase_prefix(parent["phases"], step) != _phase_prefix(child["phases"], step):
        raise ConfigError(f"{where}: run {name!r}'s first {step} steps are not the phases of its parent "
                          f"{parent_name!r} (objective or masking differ before the branch point)")


def resolve_data_start(config):
    """Continued pretraining (``init_from`` a training checkpoint) with ``data.start: continue``
    reads on from where its parent stopped: ``data.offset`` becomes the parent's offset plus the
    samples it consumed (recorded in config.yaml and every checkpoint). A parent trained on other
    data is refused (set ``data.start=zero``); a plain model checkpoint (no trainer state) records no
    data position, so the run reads from ``data.offset`` as configured."""
    if not config.init_from or config.data.start != "continue":
        return config

    source = Path(config.init_from)
    if not (source / STATE_FILE).is_file():
        return config
    state = read_training_state(source)
    parent = dict(state["run_config"].get("data") or {})
    ours = dataclasses.asdict(config.data)
    same = ("source", "seq_len", "seed", "shuffle", "variable_length", "pack", "mean_document_length")
    diff = [k for k in same if k in parent and parent[k] != ours[k]]
    if diff:
        details = ", ".join(f"{k}: parent {parent[k]!r} vs run {ours[k]!r}" for k in diff)
        raise ConfigError(
            f"run {config.name!r}: init_from {source} (run {state['run_config'].get('name')!r}, step {state['step']}) "
            f"was trained on other data ({details}), so there is no position to continue from; set data.start=zero "
            "to read this data from its first sample, or use the parent's data")
    offset = int(parent.get("offset", 0)) + int(state.get("samples_seen", state["step"] * config.global_batch_samples))
    return dataclasses.replace(config, data=dataclasses.replace(config.data, offset=offset))
