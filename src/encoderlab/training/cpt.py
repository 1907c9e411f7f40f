"""``encoderlab cpt``: continued MLM (or MNTP) pretraining from a Hugging Face decoder, in one command.

The paper's most practical finding is that MLM continued pretraining of a CLM-pretrained model
beats continuing MLM-only training. This module turns a local decoder checkpoint (any family of
``encoderlab.model.hf.IMPORTABLE_MODEL_TYPES``) into a continued-pretraining run:

1. import: every shape comes from the checkpoint's config.json (nothing typed by hand), written as
   an encoderlab checkpoint under ``<output>/init``;
2. mask token: the shards' tokenizer's (``encoderlab data prepare`` gives every tokenizer one:
   an existing mask, Llama-3's ``<|reserved_special_token_0|>``, or an added ``<mask>``); an id past
   the decoder's embedding grows the embedding and head by the missing rows (initialised to the
   mean embedding); the choice is recorded in ``<output>/cpt.json`` and the run config;
3. the run: the paper's CPT schedule (the ``*-dec42k-mlm40-*`` presets: lr 5e-4, 200 re-warmup
   steps, linear decay over the last min(2,000, steps / 2) steps; the warmup is capped at a tenth
   of the run for short runs), AdamW and batch as every paper run, the decoder's tokenizer (the
   shards') carried into every checkpoint. It is an ordinary run: torchrun/FSDP2, resume, studies.

``plan_cpt`` checks every input and imports the decoder in memory (writing nothing);
``write_cpt_start`` writes the start (under torchrun only the first process does, after every
process has planned). A study run with ``cpt: {decoder: DIR}`` (``study.spec.CptSpec``) is planned
by ``study_cpt_config`` from config.json alone (dry runs read no weights) and its start written once
by ``write_study_cpt_start``.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from encoderlab.config import ConfigError
from encoderlab.io import atomic_write_text
from encoderlab.model import CheckpointError, import_hf, load_checkpoint, save_checkpoint
from encoderlab.model.checkpoint import CHECKPOINT_FORMAT
from encoderlab.training.config import PretrainConfig, apply_overrides
from encoderlab.data.tokenizer import ensure_mask_token, load_tokenizer, tokenizer_info
from encoderlab.model import Encoder
from encoderlab.model.hf import _read_hf_config, model_config_from_hf
from encoderlab.training.checkpoint import complete_checkpoints
from encoderlab.training.lock import RunLock
from encoderlab.training.loop import preflight
from encoderlab.training.outputs import claim, remove_owned
from encoderlab.validate import open_fraction, positive_int

PAPER_CPT_LR = 5e-4
PAPER_CPT_WARMUP = 200
PAPER_CPT_DECAY = 2000
PAPER_BATCH_TOKENS = 2_359_296
OBJECTIVES = ("mlm", "mntp")


def cpt_schedule(steps: int) -> dict[str, Any]:
    """The paper's CPT schedule for a run of ``steps`` (see the module docstring)."""
    return {"lr": PAPER_CPT_LR, "warmup_steps": min(PAPER_CPT_WARMUP, steps // 10),
            "decay_steps": max(1, min(PAPER_CPT_DECAY, steps // 2))}


def _shard_mask(data: str) -> tuple[int | None, dict]:
    manifest_path = Path(data) / "manifest.json"
    if not manifest_path.is_file():
        raise ConfigError(f"--data {data}: no manifest.json; expected token shards from `encoderlab data prepare` "
                          "made with the decoder's tokenizer")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"{manifest_path}: not a readable shard manifest ({err}); prepare the shards again") from None
    tokenizer = manifest.get("tokenizer") if isinstance(manifest, dict) else None
    if not isinstance(tokenizer, dict):
        raise ConfigError(f"{manifest_path}: expected a 'tokenizer' mapping (name, fingerprint, mask_token_id, ...), "
                          f"got {tokenizer!r}; prepare the shards again with `encoderlab data prepare`")
    return tokenizer.get("mask_token_id"), tokenizer


def _grow_vocabulary(model, vocab_size: int):
    """The model with embedding and head grown to ``vocab_size`` rows (new rows: the mean embedding)."""
    old = model.config.vocab_size
    grown = Encoder(model.config.replace(vocab_size=vocab_size))
    state = model.state_dict()
    for name in ("embed.weight", "lm_head.weight"):
        rows = state[name]
        state[name] = torch.cat([rows, rows.mean(0, keepdim=True).expand(vocab_size - old, -1)])
    grown.load_state_dict(state)
    return grown


def _decoder_mask(hf_dir: Path) -> dict:
    """The tokenizer record ``encoderlab data prepare --tokenizer HF_DECODER_DIR`` will write (its mask
    token included): a study plans its cpt runs with it before its shards exist, and every cpt run
    compares its shards' fingerprint with it. Loaded once per process and decoder."""
    return dict(_decoder_record(str(Path(hf_dir).resolve())))


@functools.lru_cache(maxsize=8)
def _decoder_record(hf_dir: str) -> dict:
    tokenizer = load_tokenizer(hf_dir)
    return tokenizer_info(tokenizer, hf_dir, ensure_mask_token(tokenizer))


def _decoder_fingerprint(hf_dir: Path) -> tuple[str | None, str]:
    """(the fingerprint ``data prepare --tokenizer HF_DIR`` records for the decoder's tokenizer, or
    None with why it cannot be established)."""
    try:
        return _decoder_mask(hf_dir)["fingerprint"], ""
    except ConfigError as err:
        return None, f"{hf_dir} has no tokenizer that loads ({' '.join(str(err).split())[:160]})"


def _shard_vocabulary_check(hf_dir: Path, data: str, decoder_vocab: int, shard_tokenizer: dict,
                            check_tokenizer: bool = True) -> str:
    """Shards tokenized with another tokenizer than the decoder's are refused: their ids would index
    the wrong embedding rows (or none). The manifest's tokenizer fingerprint is compared with the
    decoder's tokenizer's; when either is unknown the run is refused unless ``check_tokenizer`` is
    off (the user's word, recorded). Returns how the identity was established."""
    recorded = shard_tokenizer.get("fingerprint")
    decoder, why = _decoder_fingerprint(hf_dir)
    if not recorded:
        why = f"the manifest of {data} records no tokenizer fingerprint"
    if decoder is not None and recorded and decoder != recorded:
        _vocabulary_difference(hf_dir, data, decoder_vocab, shard_tokenizer)
        raise ConfigError(f"--data {data}: the shards' tokenizer ({shard_tokenizer.get('name')!r}, fingerprint "
                          f"{recorded}, {shard_tokenizer.get('vocab_size')} tokens) is not the decoder's (fingerprint "
                          f"{decoder}); prepare the shards with `encoderlab data prepare ... --tokenizer {hf_dir}`")
    if decoder is None or not recorded:
        if check_tokenizer:
            raise ConfigError(f"--data {data}: cannot establish that the shards were made with {hf_dir}'s tokenizer "
                              f"({why}); give the decoder its tokenizer files, or pass --skip-tokenizer-check if you "
                              "know they match")
        _vocabulary_difference(hf_dir, data, decoder_vocab, shard_tokenizer)
        return f"not checked ({why}; --skip-tokenizer-check)"
    return f"fingerprint {decoder} (the decoder's tokenizer, as data prepare records it)"


def _vocabulary_difference(hf_dir: Path, data: str, decoder_vocab: int, shard_tokenizer: dict) -> None:
    """Refuses shards whose tokenizer visibly differs from the decoder's (more tokens than its
    embedding, ids moved or missing), naming the difference."""
    own = shard_tokenizer.get("vocab_size")
    if isinstance(own, int) and own - (1 if shard_tokenizer.get("mask_origin") == "added" else 0) > decoder_vocab:
        raise ConfigError(f"--data {data}: its tokenizer has {own} tokens, more than the {decoder_vocab}-row embedding "
                          f"of {hf_dir}; prepare the shards with the decoder's own tokenizer "
                          f"(`encoderlab data prepare ... --tokenizer {hf_dir}`)")
    ours, theirs = hf_dir / "tokenizer.json", Path(data) / "tokenizer" / "tokenizer.json"
    if not (ours.is_file() and theirs.is_file()):
        return
    from tokenizers import Tokenizer

    decoder = Tokenizer.from_file(str(ours)).get_vocab(with_added_tokens=True)
    shards = Tokenizer.from_file(str(theirs)).get_vocab(with_added_tokens=True)
    moved = [t for t, i in decoder.items() if t in shards and shards[t] != i]
    missing = [t for t in decoder if t not in shards]
    if moved or missing:
        example = (f"{moved[0]!r} is id {shards[moved[0]]} there, {decoder[moved[0]]} in the decoder" if moved
                   else f"{missing[0]!r} is missing there")
        raise ConfigError(f"--data {data}: the shards' tokenizer is not the decoder's ({len(moved)} token ids differ, "
                          f"{len(missing)} tokens missing; e.g. {example}); prepare the shards with "
                          f"`encoderlab data prepare ... --tokenizer {hf_dir}`")


def _with_mask(config, hf_dir: Path, data: str | None, shard_tokenizer: dict, check_tokenizer: bool = True):
    """(the decoder's model config with the shards' mask and special token ids, the mask choice)."""
    mask_id = shard_tokenizer.get("mask_token_id")
    if isinstance(mask_id, bool) or not isinstance(mask_id, int) or mask_id < 0:
        raise ConfigError(f"--data {data}: the shards' tokenizer records no usable mask token id (got {mask_id!r}); "
                          "prepare them again with `encoderlab data prepare` (it gives every tokenizer a mask token)")
    identity = "decoder's tokenizer (the shards are not prepared yet)"
    if data is not None:
        identity = _shard_vocabulary_check(hf_dir, data, config.vocab_size, shard_tokenizer, check_tokenizer)
    choice = {"mask_token_id": mask_id, "mask_token": shard_tokenizer.get("mask_token"),
              "origin": shard_tokenizer.get("mask_origin", "existing"), "decoder_vocab_size": config.vocab_size}
    changes: dict[str, Any] = {"mask_token_id": mask_id}
    if mask_id >= config.vocab_size:
        if mask_id - config.vocab_size >= 1024:
            raise ConfigError(
                f"{hf_dir}: the shards' mask token id {mask_id} lies {mask_id - config.vocab_size + 1} rows past the "
                f"decoder's {config.vocab_size}-row embedding; no free id for a mask token. Prepare the shards with "
                "the decoder's own tokenizer")
        changes["vocab_size"] = choice["grown_to"] = mask_id + 1
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):  # the tokenizer's: kept out of the masking
        if shard_tokenizer.get(key) is not None:
            changes[key] = shard_tokenizer[key]
    return config.replace(**changes), choice, identity


def _start_model(model, config):
    """The imported decoder as the run starts from it: embedding grown to ``config``'s vocabulary,
    the tokenizer's special ids."""
    if config.vocab_size > model.config.vocab_size:
        model = _grow_vocabulary(model, config.vocab_size)
    for key in ("mask_token_id", "bos_token_id", "eos_token_id", "pad_token_id"):
        setattr(model.config, key, getattr(config, key))
    return model


def _run(name: str, model_config, *, objective: str, mask_ratio: float, steps: int, data: str, output: Path,
         seq_len: int | None, global_batch_tokens: int | None) -> dict[str, Any]:
    """The run of a cpt (before overrides): the paper's CPT schedule and batch, the start in ``output/init``."""
    return {
        "name": name, "model": model_config.to_dict(),
        "phases": [{"objective": objective, "steps": steps, "mask_ratio": mask_ratio}],
        "global_batch_tokens": PAPER_BATCH_TOKENS if global_batch_tokens is None else global_batch_tokens,
        "micro_batch_size": 1,
        "data": {"source": str(data),
                 "seq_len": min(2048, model_config.max_position_embeddings) if seq_len is None else seq_len},
        "schedule": cpt_schedule(steps), "init_from": str(output / "init"),
        "checkpoint_every": max(1, min(1000, steps)), "log_every": max(1, min(10, steps // 10)),
        "output_dir": str(output),
    }


def _check_options(objective: str, steps, mask_ratio, seq_len=None, global_batch_tokens=None,
                   micro_batch_size=None) -> None:
    if objective not in OBJECTIVES:
        raise ConfigError(f"cpt --objective: expected one of {OBJECTIVES}, got {objective!r}")
    positive_int(steps, "cpt --steps")
    open_fraction(mask_ratio, "cpt --mask-ratio")
    for value, where in ((seq_len, "--seq-len"), (global_batch_tokens, "--batch-tokens"),
                         (micro_batch_size, "--micro-batch-size")):
        if value is not None:  # None: the default; 0 is not "unset"
            positive_int(value, f"cpt {where}")


def _configured(run: dict[str, Any], overrides: list[str] | None, where: str, micro_batch_size: int | None = None,
                world_size: int = 1) -> PretrainConfig:
    """The run with ``overrides`` (any field of the run, its defaults included: parallelism, precision,
    ...); without a micro batch size (given or overridden), the largest of 12, 8, 4, 2, 1 that divides
    each process's share of the global batch."""
    overrides = list(overrides or [])
    run = PretrainConfig.from_dict(run, where=where).to_dict()
    if overrides:
        run = apply_overrides(run, overrides, where="cpt override")
    if micro_batch_size is not None:
        run["micro_batch_size"] = micro_batch_size
    elif not any(o.split("=", 1)[0].strip() == "micro_batch_size" for o in overrides):
        samples = run["global_batch_tokens"] // run["data"]["seq_len"]
        run["micro_batch_size"] = next((m for m in (12, 8, 4, 2, 1) if samples % (m * world_size) == 0), 1)
    return PretrainConfig.from_dict(run, where=where)


def _cpt_record(hf_dir: Path, model_type: str | None, config: PretrainConfig, mask: dict, identity: str) -> str:
    phase = config.phases[0]
    return json.dumps(
        {"hf_dir": str(hf_dir), "model_type": model_type, "objective": phase.objective,
         "mask_ratio": phase.mask_ratio, "steps": config.total_steps,
         "phases": " -> ".join(f"{p.label} {p.steps}" for p in config.phases), "mask": mask, "tokenizer_identity": identity,
         "bidirectional_sliding_window": config.model.bidirectional_sliding_window,
         "schedule": config.schedule.__dict__, "init_from": config.init_from}, indent=2) + "\n"


@dataclass(kw_only=True)
class CptPlan:
    """A cpt run, validated and imported in memory; ``write_cpt_start`` writes its start."""

    hf_dir: Path
    data: str
    output: Path
    model: Any  # the imported Encoder (mask token set, embedding grown when needed)
    config: PretrainConfig
    mask: dict
    tokenizer_identity: str  # how the shards' tokenizer was found to be the decoder's
    model_type: str | None
    reuse_start: bool  # a resumed run keeps the start it was made from
    overwrite: bool

    @property
    def init_dir(self) -> Path:
        return self.output / "init"


def plan_cpt(hf_dir: str | Path, data: str, *, objective: str = "mlm", mask_ratio: float = 0.4,
             steps: int = 12_000, output: str | Path | None = None, seq_len: int | None = None,
             global_batch_tokens: int | None = None, micro_batch_size: int | None = None,
             overrides: list[str] | None = None, overwrite: bool = False, resume: bool = False,
             world_size: int = 1, check_tokenizer: bool = True) -> CptPlan:
    """Imports ``hf_dir`` in memory and returns the validated CPT run; writes nothing."""
    hf_dir = Path(hf_dir)
    _check_options(objective, steps, mask_ratio, seq_len, global_batch_tokens, micro_batch_size)
    if resume and overwrite:
        raise ConfigError("cpt: --resume and --overwrite are exclusive (continue the run, or replace it)")
    _, shard_tokenizer = _shard_mask(data)
    model = source_model(hf_dir)  # in memory: every shape from config.json, errors before anything is written
    config, mask_choice, identity = _with_mask(model.config, hf_dir, data, shard_tokenizer, check_tokenizer)
    model = _start_model(model, config)
    name = f"{hf_dir.resolve().name}-cpt-{objective}{round(mask_ratio * 100)}-{steps}"
    output = Path(output) if output is not None else Path("runs") / name
    init_dir = output / "init"
    reuse = resume and init_dir.is_dir()
    if output.exists() and not output.is_dir():
        raise ConfigError(f"--output {output}: exists and is not a directory")

    previous = complete_checkpoints(output / "checkpoints")
    is_cpt = (output / "cpt.json").is_file()
    if resume and not (previous and is_cpt):
        raise ConfigError(f"cpt --resume: nothing to resume in {output} ("
                          + ("no cpt.json: not a cpt run" if previous else "no complete checkpoint") +
                          "); run the command without --resume to start it")
    if previous and not resume and not (overwrite and is_cpt):
        what = "a cpt run; continue it with --resume or replace it with --overwrite" if is_cpt else (
            "a run that is not a cpt run; choose another --output")
        raise FileExistsError(f"{output}: already holds {what} ({len(previous)} checkpoint(s), up to "
                              f"{previous[-1].name})")
    if init_dir.exists() and not is_cpt:
        raise FileExistsError(f"{init_dir}: already exists and {output} has no cpt.json (not the start of a cpt run); "
                              "choose another --output")
    run = _run(name, model.config, objective=objective, mask_ratio=mask_ratio, steps=steps, data=data, output=output,
               seq_len=seq_len, global_batch_tokens=global_batch_tokens)
    run_config = _configured(run, overrides, f"cpt run {name!r}", micro_batch_size, world_size)

    preflight(run_config, world_size)  # what the run checks before its model: checked before the start is written
    return CptPlan(hf_dir=hf_dir, data=str(data), output=output, model=model, config=run_config, mask=mask_choice,
                   tokenizer_identity=identity, model_type=source_type(hf_dir), reuse_start=reuse, overwrite=overwrite)


def source_model(source: Path):
    """The model a cpt run starts from: an encoderlab checkpoint as it is (an encoder continued with any
    phase list, e.g. MLM -> CLM -> MLM), else a Hugging Face model imported (a decoder, or EuroBERT)."""
    if _read_hf_config(source).get("format") == CHECKPOINT_FORMAT:
        return load_checkpoint(source)
    return import_hf(source)


def source_type(source: Path) -> str | None:
    """What a cpt run started from: "encoderlab" or the Hugging Face model_type."""
    config = _read_hf_config(source)
    return "encoderlab" if config.get("format") == CHECKPOINT_FORMAT else config.get("model_type")


def write_cpt_start(plan: CptPlan) -> list[str]:
    """Writes the run's start: the imported checkpoint ``<output>/init`` (with the shards' tokenizer)
    and ``<output>/cpt.json``; returns what it removed first. The caller holds the run's lock
    (:class:`~encoderlab.training.lock.RunLock`). A previous cpt run there (``overwrite``), or a start
    that trained no checkpoint, is removed first: what it wrote (its ``outputs.json``), nothing else."""
    output = plan.output
    removed = []
    if not plan.reuse_start and (output / "cpt.json").is_file():
        removed = remove_owned(output)
    claim(output, "init", "cpt.json")
    tokenizer_dir = Path(plan.data) / "tokenizer"
    if not plan.reuse_start:
        save_checkpoint(plan.model, plan.init_dir, tokenizer_dir=tokenizer_dir if tokenizer_dir.is_dir() else None,
                        overwrite=plan.overwrite,
                        extra={"imported_from": str(plan.hf_dir), "cpt_mask": plan.mask})
    atomic_write_text(output / "cpt.json", _cpt_record(plan.hf_dir, plan.model_type, plan.config, plan.mask, plan.tokenizer_identity))
    return removed


# -- cpt runs of a study (``cpt:`` in a study's run, encoderlab.study.spec.CptSpec) -----------------------

def study_cpt_config(cpt, name: str, output_dir: str | Path, shards: Path | None,
                     overrides: list[str] | None = None) -> PretrainConfig:
    """The run config of a study run that continues pretraining from a Hugging Face decoder: as
    ``encoderlab cpt`` plans it, from the decoder's config.json alone (no weights are read), with
    the mask of the study's shards (or, before they exist, of the decoder's tokenizer as
    ``data prepare`` will give it). Without study data, a ``data.source=SHARDS`` override names them."""
    hf_dir = Path(cpt.decoder)
    _check_options(cpt.objective, cpt.steps, cpt.mask_ratio)
    if not hf_dir.is_dir():
        raise ConfigError(f"run {name!r}: cpt.decoder {hf_dir}: directory not found (a local Hugging Face decoder)")
    config = model_config_from_hf(_read_hf_config(hf_dir), str(hf_dir / "config.json"), name=hf_dir.name)
    data = str(shards) if shards is not None else next(
        (o.split("=", 1)[1] for o in reversed(overrides or []) if o.startswith("data.source=")), None)
    if data is not None and (Path(data) / "manifest.json").is_file():
        _, shard_tokenizer = _shard_mask(data)
    elif shards is not None:  # the study's data, not prepared yet (a dry run)
        data, shard_tokenizer = None, _decoder_mask(hf_dir)
    else:
        raise ConfigError(f"run {name!r}: a cpt run needs token shards made with {hf_dir}'s tokenizer: the study's "
                          f"data (data: {{tokenizer: {hf_dir}}}) or a data.source=SHARDS override")
    config, _, _ = _with_mask(config, hf_dir, data, shard_tokenizer)
    run = _run(name, config, objective=cpt.objective, mask_ratio=cpt.mask_ratio, steps=cpt.steps,
               data=str(shards) if shards is not None else data, output=Path(output_dir), seq_len=None,
               global_batch_tokens=None)
    return _configured(run, overrides, f"study cpt run {name!r}")


def write_study_cpt_start(cpt, config: PretrainConfig) -> None:
    """Imports the decoder of a study's cpt run into ``config.init_from`` (once: a complete start is
    kept), with the shards' tokenizer, and records ``cpt.json`` beside it."""
    init_dir = Path(config.init_from)
    if (init_dir / "model.safetensors").is_file():
        return
    with RunLock(init_dir.parent):  # no other process trains or writes there meanwhile
        claim(init_dir.parent, "init", "cpt.json")
        _write_study_start(cpt, config, init_dir)


def _write_study_start(cpt, config: PretrainConfig, init_dir: Path) -> None:
    hf_dir = Path(cpt.decoder)
    data = config.data.source
    _, shard_tokenizer = _shard_mask(data)
    model = import_hf(hf_dir)
    start, mask, identity = _with_mask(model.config, hf_dir, data, shard_tokenizer)
    model = _start_model(model, start)
    tokenizer_dir = Path(data) / "tokenizer"
    save_checkpoint(model, init_dir, tokenizer_dir=tokenizer_dir if tokenizer_dir.is_dir() else None, overwrite=True,
                    extra={"imported_from": str(hf_dir), "cpt_mask": mask})
    model_type = json.loads((hf_dir / "config.json").read_text()).get("model_type")
    atomic_write_text(init_dir.parent / "cpt.json", _cpt_record(hf_dir, model_type, config, mask, identity))


__all__ = ["CheckpointError", "CptPlan", "cpt_schedule", "plan_cpt", "study_cpt_config", "write_cpt_start",
           "write_study_cpt_start"]
