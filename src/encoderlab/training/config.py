"""Typed configuration of a pretraining run, loaded from YAML or a named preset.

A run is a list of phases (objective, masking ratio, length in steps) under one Warmup-Stable-
Decay schedule over the whole run. Two-stage CLM->MLM is two phases; a decay branch starts from
a stable-phase checkpoint (``branch_from``) with a shorter total; continued pretraining starts
from the weights of a converged checkpoint (``init_from``) with a schedule of its own.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from encoderlab.config import ConfigError, check_keys, from_dict
from encoderlab.model import ModelConfig
from encoderlab.validate import safe_name


@dataclass(kw_only=True)
class PhaseConfig:
    # mntp: LLM2Vec's masked next-token prediction; mixture: each sample CLM with probability clm_fraction,
    # else masked_objective (GPT-BERT)
    objective: Literal["clm", "mlm", "mntp", "mixture"]
    steps: int
    mask_ratio: float | None = None  # MLM/MNTP/mixture only: selection probability p in (0, 1)
    mask_fraction: float = 1.0  # of selected tokens: replaced by the mask token (authors' default 100%)
    random_fraction: float = 0.0  # ... by a random regular token
    keep_fraction: float = 0.0  # ... left unchanged
    # a masking-ratio schedule over the phase (mmBERT lowers it 30% -> 5%): the ratio moves from mask_ratio
    # at the phase's first step to mask_ratio_end at its last, linearly, or in mask_ratio_stages equal
    # constant stages; None: mask_ratio throughout
    mask_ratio_end: float | None = None
    mask_ratio_stages: int | None = None
    # weights left untouched by this phase: layer indices (0-based), "a-b" ranges, "embeddings", "head"
    freeze: list[int | str] = field(default_factory=list)
    clm_fraction: float | None = None  # mixture only: the share of samples trained with CLM
    masked_objective: Literal["mlm", "mntp"] = "mlm"  # mixture only: the objective of the other samples

    def __post_init__(self) -> None:
        if self.steps <= 0:
            raise ConfigError(f"phase: steps must be positive, got {self.steps}")
        if self.objective == "mixture":
            if self.clm_fraction is None or isinstance(self.clm_fraction, bool) or not 0.0 < self.clm_fraction < 1.0:
                raise ConfigError(f"phase (mixture): clm_fraction must be in (0, 1), got {self.clm_fraction!r}")
        elif self.clm_fraction is not None or self.masked_objective != "mlm":
            raise ConfigError(f"phase ({self.objective}): clm_fraction and masked_objective belong to mixture phases")
        if self.objective in ("mlm", "mntp", "mixture"):
            if self.mask_ratio is None or not 0.0 < self.mask_ratio < 1.0:
                raise ConfigError(f"phase ({self.objective}): mask_ratio must be in (0, 1), got {self.mask_ratio}")
            if self.mask_ratio_end is not None and not 0.0 < self.mask_ratio_end < 1.0:
                raise ConfigError(f"phase ({self.objective}): mask_ratio_end must be in (0, 1), got {self.mask_ratio_end}")
        elif self.mask_ratio is not None or self.mask_ratio_end is not None:
            raise ConfigError("phase (clm): mask_ratio and mask_ratio_end are only meaningful for mlm/mntp phases")
        if self.mask_ratio_stages is not None:
            if self.mask_ratio_end is None:
                raise ConfigError("phase: mask_ratio_stages needs mask_ratio_end (the ratio of the last stage)")
            if isinstance(self.mask_ratio_stages, bool) or not 2 <= self.mask_ratio_stages <= self.steps:
                raise ConfigError(f"phase: mask_ratio_stages must be a whole number from 2 to the phase's {self.steps} "
                                  f"steps, got {self.mask_ratio_stages!r}")
        freeze_spec(self.freeze)  # a malformed entry fails here; indices are checked against the model by the run
        fractions = {"mask_fraction": self.mask_fraction, "random_fraction": self.random_fraction,
                     "keep_fraction": self.keep_fraction}
        bad = {k: v for k, v in fractions.items() if not 0.0 <= v <= 1.0}
        if bad:
            raise ConfigError(f"phase: {', '.join(f'{k} {v}' for k, v in bad.items())}: expected a fraction in [0, 1]")
        if not math.isclose(sum(fractions.values()), 1.0, abs_tol=1e-6):
            raise ConfigError(
                f"phase: mask_fraction + random_fraction + keep_fraction must be 1, got "
                f"{self.mask_fraction} + {self.random_fraction} + {self.keep_fraction} = {sum(fractions.values()):g}"
            )

    @property
    def label(self) -> str:
        if self.objective == "clm":
            return "clm"
        masked = self.masked_objective if self.objective == "mixture" else self.objective
        label = f"{masked}{round(self.mask_ratio * 100)}"
        label = label if self.mask_ratio_end is None else f"{label}to{round(self.mask_ratio_end * 100)}"
        return f"mix{round(self.clm_fraction * 100)}clm-{label}" if self.objective == "mixture" else label

    def ratio_at(self, step_in_phase: int) -> float | None:
        """The masking ratio in force at step ``step_in_phase`` (0-based) of this phase (None: CLM)."""
        if self.mask_ratio_end is None:
            return self.mask_ratio
        if self.mask_ratio_stages:
            stage = min(self.mask_ratio_stages - 1, step_in_phase * self.mask_ratio_stages // self.steps)
            position = stage / (self.mask_ratio_stages - 1)
        else:
            position = step_in_phase / (self.steps - 1) if self.steps > 1 else 0.0
        return self.mask_ratio + (self.mask_ratio_end - self.mask_ratio) * position

    @property
    def mean_mask_ratio(self) -> float | None:
        """The masking ratio averaged over the phase's steps (FLOPs projections)."""
        if self.mask_ratio_end is None:
            return self.mask_ratio
        return math.fsum(self.ratio_at(s) for s in range(self.steps)) / self.steps


def expand_phases(phases: list, where: str = "phases") -> list:
    """The phase list with every alternation block written out: ``{alternate: [PHASE, ...], cycles: N}``
    is its phases N times in order (AntLM's CLM/MLM alternation: ``{alternate: [{objective: clm,
    steps: 100}, {objective: mlm, mask_ratio: 0.4, steps: 100}], cycles: 5}``). Resolved once, when a
    config is read: a run's config.yaml holds the phases written out."""
    out = []
    for index, item in enumerate(phases):
        if not (isinstance(item, dict) and "alternate" in item):
            out.append(item)
            continue
        unknown = sorted(set(item) - {"alternate", "cycles"})
        block, cycles = item.get("alternate"), item.get("cycles")
        if unknown:
            raise ConfigError(f"{where}[{index}]: unknown key(s) {unknown} in an alternation block (expected "
                              "alternate: [phases] and cycles: N)")
        if not isinstance(block, list) or not block or any(isinstance(p, dict) and "alternate" in p for p in block):
            raise ConfigError(f"{where}[{index}].alternate: expected a non-empty list of phases (no nested blocks)")
        if isinstance(cycles, bool) or not isinstance(cycles, int) or cycles < 1:
            raise ConfigError(f"{where}[{index}].cycles: expected a whole number >= 1, got {cycles!r}")
        out += [dict(p) if isinstance(p, dict) else p for _ in range(cycles) for p in block]
    return out


def freeze_spec(entries: list) -> tuple[set[int], set[str]]:
    """A phase's ``freeze`` list as (layer indices, named parts); ConfigError on a malformed entry."""
    layers, parts = set(), set()
    for entry in entries:
        if isinstance(entry, bool):
            raise ConfigError(f"phase: freeze entry {entry!r}: expected a layer index, 'a-b', 'embeddings' or 'head'")
        if isinstance(entry, int):
            if entry < 0:
                raise ConfigError(f"phase: freeze entry {entry}: layer indices start at 0")
            layers.add(entry)
        elif isinstance(entry, str) and entry in ("embeddings", "head"):
            parts.add(entry)
        elif isinstance(entry, str) and entry.count("-") == 1 and all(p.strip().isdigit() for p in entry.split("-")):
            low, high = (int(p) for p in entry.split("-"))
            if low > high:
                raise ConfigError(f"phase: freeze range {entry!r}: the first layer comes after the last")
            layers.update(range(low, high + 1))
        else:
            raise ConfigError(f"phase: freeze entry {entry!r}: expected a layer index, a range 'a-b' (inclusive), "
                              "'embeddings' or 'head'")
    return layers, parts


@dataclass(kw_only=True)
class ScheduleConfig:
    """Warmup-Stable-Decay: linear warmup from 0, constant ``lr``, linear decay to ``final_lr``."""

    lr: float = 5e-4
    warmup_steps: int = 2000
    decay_steps: int = 2000
    final_lr: float = 0.0


@dataclass(kw_only=True)
class OptimizerConfig:
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-5
    weight_decay: float = 0.1  # applied to matrices (linear and embedding weights), not to norms
    grad_clip: float = 1.0


@dataclass(kw_only=True)
class DataConfig:
    """Where samples come from: a directory of token shards (``encoderlab data prepare``), or
    ``synthetic``, a deterministic learnable token stream for tests and smoke runs."""

    source: str = "synthetic"
    seq_len: int = 2048
    seed: int = 0  # the global sample order (shards) or the stream (synthetic)
    shuffle: bool = True  # shards: a seeded permutation of the packed sequences
    variable_length: bool = False  # shards: the paper's samples, each 2,048-token block cut in two
    # variable_length: both pieces of each cut block travel in one row (documents isolated by the
    # attention, so each piece sees only itself): every row holds seq_len real tokens, no padding.
    # false: one piece per row, the rest padding (~half the real tokens per step).
    pack: bool = True
    # continued pretraining (init_from a training checkpoint): "continue" reads on from the parent's data
    # position (unique tokens, as the paper); "zero" from sample 0 (the parent's own samples again)
    start: Literal["continue", "zero"] = "continue"
    offset: int = 0  # global sample index read by step 0; set from init_from when start is "continue"
    mean_document_length: int = 512  # synthetic source only


@dataclass(kw_only=True)
class PretrainConfig:
    name: str
    model: ModelConfig
    phases: list[PhaseConfig]
    global_batch_tokens: int
    micro_batch_size: int
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    seed: int = 0
    init_from: str | None = None  # continued pretraining: weights of this checkpoint, fresh optimizer
    branch_from: str | None = None  # decay branch: full training state of this (stable-phase) checkpoint
    checkpoint_steps: list[int] = field(default_factory=list)  # kept for good (data-efficiency study)
    checkpoint_every: int = 1000  # rolling checkpoint for resume
    keep_last: int = 1
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 autocast on GPU, fp32 on CPU
    compile: bool = False
    parallelism: Literal["auto", "ddp", "fsdp"] = "auto"  # auto: DDP when several processes
    isolate_documents: bool = True
    # Rows of LM-head logits computed at a time by the fused linear + cross-entropy: memory vs
    # fewer, larger matmuls (benchmarks/pretrain_throughput.py --extra PRESET:RUN:ce_chunk=N).
    loss_chunk_size: int = 4096
    # MLM/MNTP: the LM head only at the selected positions (False: logits at every position, the
    # unselected ones ignored, as the authors' code does; same loss, more compute and memory)
    sparse_head: bool = True
    log_every: int = 10
    tensorboard: bool = False
    wandb: bool = False
    wandb_project: str = "encoderlab"
    output_dir: str | None = None  # default: runs/<name>

    def __post_init__(self) -> None:
        safe_name(self.name, "run name")  # it names runs/<name> when no output_dir is given
        if not self.phases:
            raise ConfigError(f"run {self.name!r}: at least one phase is needed")
        self._check_ranges()
        total = self.total_steps
        s = self.schedule
        if s.warmup_steps < 0 or s.decay_steps < 0:
            raise ConfigError(f"run {self.name!r}: warmup_steps and decay_steps must be >= 0")
        if s.warmup_steps + s.decay_steps > total:
            raise ConfigError(
                f"run {self.name!r}: schedule warmup {s.warmup_steps} + decay {s.decay_steps} steps exceed the "
                f"{total} steps of the phases ({' + '.join(str(p.steps) for p in self.phases)})"
            )
        if self.data.seq_len > self.model.max_position_embeddings:
            raise ConfigError(
                f"run {self.name!r}: data.seq_len {self.data.seq_len} exceeds the model's max_position_embeddings "
                f"{self.model.max_position_embeddings}"
            )
        if self.global_batch_tokens % self.data.seq_len:
            raise ConfigError(
                f"run {self.name!r}: global_batch_tokens {self.global_batch_tokens} is not a multiple of "
                f"data.seq_len {self.data.seq_len}"
            )
        if self.micro_batch_size <= 0 or self.global_batch_samples % self.micro_batch_size:
            raise ConfigError(
                f"run {self.name!r}: the global batch of {self.global_batch_samples} samples is not a multiple of "
                f"micro_batch_size {self.micro_batch_size}"
            )
        for index, phase in enumerate(self.phases):
            layers, _ = freeze_spec(phase.freeze)
            if layers and max(layers) >= self.model.num_layers:
                raise ConfigError(f"run {self.name!r}: phase {index} freezes layer {max(layers)}, but the model has "
                                  f"{self.model.num_layers} layers (0 to {self.model.num_layers - 1})")
            lowest = min(r for r in (phase.mask_ratio, phase.mask_ratio_end) if r is not None) \
                if phase.mask_ratio is not None else None
            if lowest is not None and lowest * self.data.seq_len < 1:
                raise ConfigError(
                    f"run {self.name!r}: phase {index} ({phase.objective}) mask_ratio {lowest:g} selects "
                    f"{lowest * self.data.seq_len:.2g} of the {self.data.seq_len} tokens of a sequence on "
                    f"average, so most sequences would have no target (loss 0); expected mask_ratio >= 1/seq_len = "
                    f"{1 / self.data.seq_len:.3g}")
        if any(p.objective != "clm" for p in self.phases) and self.model.mask_token_id is None:
            raise ConfigError(
                f"run {self.name!r}: MLM phases need a mask token, but the model/tokenizer has none "
                "(set model.mask_token_id)"
            )
        if self.init_from and self.branch_from:
            raise ConfigError(f"run {self.name!r}: init_from and branch_from are exclusive")
        bad = [k for k in self.checkpoint_steps if not 0 < k <= total]
        if bad:
            raise ConfigError(f"run {self.name!r}: checkpoint_steps {bad} are outside 1..{total}")

    def _check_ranges(self) -> None:
        """Counts, intervals and rates that must be positive (or in range): a ConfigError naming the
        field now, instead of a ZeroDivisionError (or a silent no-op) after the run directory is written."""
        where = f"run {self.name!r}"
        positive = {"global_batch_tokens": self.global_batch_tokens, "micro_batch_size": self.micro_batch_size,
                    "checkpoint_every": self.checkpoint_every, "log_every": self.log_every,
                    "keep_last": self.keep_last, "loss_chunk_size": self.loss_chunk_size,
                    "data.seq_len": self.data.seq_len, "data.mean_document_length": self.data.mean_document_length}
        for key, value in positive.items():
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{where}: {key} must be a positive integer, got {value!r}")
        for key, value in (("seed", self.seed), ("data.seed", self.data.seed), ("data.offset", self.data.offset)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{where}: {key} must be a non-negative integer (it seeds numpy), got {value!r}")
        if not self.sparse_head and any("mntp" in (p.objective, p.masked_objective) for p in self.phases):
            raise ConfigError(f"{where}: sparse_head=false applies to MLM phases only; MNTP computes the LM head "
                              "at its targets' previous positions only (set sparse_head=true)")
        if self.data.variable_length and self.data.seq_len <= 24:
            raise ConfigError(f"{where}: data.variable_length cuts each sequence at a position in [12, seq_len - 12); "
                              f"data.seq_len must be more than 24, got {self.data.seq_len}")
        s, o = self.schedule, self.optimizer
        numbers = {"schedule.lr": s.lr, "schedule.final_lr": s.final_lr, "optimizer.eps": o.eps,
                   "optimizer.weight_decay": o.weight_decay, "optimizer.grad_clip": o.grad_clip}
        for key, value in numbers.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or (
                    math.isinf(value) and key != "optimizer.grad_clip"):
                raise ConfigError(f"{where}: {key} must be a finite number, got {value!r}")
        for key, low, strict in (("schedule.lr", 0, True), ("schedule.final_lr", 0, False),
                                 ("optimizer.eps", 0, True), ("optimizer.weight_decay", 0, False),
                                 ("optimizer.grad_clip", 0, True)):
            value = numbers[key]
            if value < low or (strict and value == low):
                extra = " (.inf for no clipping)" if key == "optimizer.grad_clip" else ""
                raise ConfigError(f"{where}: {key} must be {'positive' if strict else '>= 0'}{extra}, got {value}")
        if len(o.betas) != 2 or not all(0.0 <= b < 1.0 for b in o.betas):
            raise ConfigError(f"{where}: optimizer.betas must be two numbers in [0, 1), got {o.betas}")

    @property
    def total_steps(self) -> int:
        return sum(p.steps for p in self.phases)

    @property
    def global_batch_samples(self) -> int:
        return self.global_batch_tokens // self.data.seq_len

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) if self.output_dir else Path("runs") / self.name

    def phase_start(self, index: int) -> int:
        """The first step (0-based) of phase ``index``."""
        return sum(p.steps for p in self.phases[:index])

    def mask_ratio_at(self, step: int) -> float | None:
        """The masking ratio in force at optimizer step ``step`` (None in a CLM phase)."""
        index, phase = self.phase_at(step)
        return phase.ratio_at(step - self.phase_start(index))

    def phase_at(self, step: int) -> tuple[int, PhaseConfig]:
        """Index and config of the phase that runs optimizer step ``step`` (0-based)."""
        end = 0
        for index, phase in enumerate(self.phases):
            end += phase.steps
            if step < end:
                return index, phase
        raise ValueError(f"step {step} is past the end of run {self.name!r} ({self.total_steps} steps)")

    # -- (de)serialisation -----------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "pretrain config") -> PretrainConfig:
        data = dict(data)
        check_keys(cls, data.keys(), where)
        if isinstance(data.get("phases"), list):
            data["phases"] = expand_phases(data["phases"], f"{where}.phases")
        if "model" not in data:
            raise ConfigError(f"{where}: missing 'model' (a preset name or a mapping)")
        model = data["model"]
        if isinstance(model, str):
            data["model"] = ModelConfig.from_name(model)
        elif isinstance(model, dict):
            data["model"] = ModelConfig.from_dict(model, where=f"{where}.model")
        return from_dict(cls, data, where=where)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def apply_overrides(data: dict[str, Any], overrides: list[str], where: str = "override") -> dict[str, Any]:
    """Applies ``key.sub=value`` overrides (YAML-parsed values; list items by index) to ``data``."""
    data = yaml.safe_load(yaml.safe_dump(data))  # deep copy through plain types
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"{where} {item!r}: expected KEY=VALUE (e.g. schedule.lr=1e-3)")
        key, raw = item.split("=", 1)
        if not raw.strip():
            raise ConfigError(f"{where} {item!r}: no value after '=' (write {key}=null to unset a setting)")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            raise ConfigError(f"{where} {item!r}: the value is not valid YAML ({' '.join(str(err).split())})") from None
        parts = key.split(".")
        node: Any = data
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            here = ".".join(parts[: depth + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"{where} {item!r}: {here} is not an index of a list of {len(node)}")
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if part not in node:
                    raise ConfigError(f"{where} {item!r}: unknown key {here!r}; valid here: {', '.join(node)}")
                if last:
                    node[part] = value
                else:
                    node = node[part]
            else:
                raise ConfigError(f"{where} {item!r}: {'.'.join(parts[:depth])} is not a mapping or list")
    return data
