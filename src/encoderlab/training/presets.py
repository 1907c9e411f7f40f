"""Named run presets: every pretraining run of arXiv 2507.00994, and small CPU runs.

Paper runs (arXiv 2507.00994, its pretraining setup):
- ``{size}-clm-42k`` and ``{size}-mlm{20,30,40,50}-42k`` for size in 210m, 610m, 1b;
- decay branches ``610m-{clm,mlm40}-{12k,22k}`` off the 42k runs' stable checkpoints;
- two-stage ``610m-clm{s}-mlm40-{B}`` for the budgets 12k / 22k / 42k and CLM shares 25/50/75%,
  ``1b-clm10k-mlm40-42k`` and ``610m-clm40k-mlm{20,30,40,50}-42k`` (masking ratio after CLM), each a
  branch from the CLM 42k run's stable checkpoint at the switch (the CLM prefix is not trained again);
- continued pretraining ``610m-{clm,mlm40}-dec42k-mlm40-{44k,54k,64k}`` (2k / 12k / 22k MLM-40
  steps from the decayed 42k checkpoints).
The paper's batch is 2,304 variable-length samples (mean ~1,024 tokens); with fixed 2,048-token
packing the same 2,359,296 tokens per step are 1,152 samples. The 42k runs keep the stable
checkpoints their branches start from. Paths of the checkpoints that
branches and CPT start from follow the default run directories (``runs/<name>``); override
``branch_from`` / ``init_from`` to point elsewhere.

The CPT schedule is not stated in the paper; ours re-warms up over 200 steps and decays over the
last 2,000 steps (1,000 for the 2k run).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

from encoderlab.config import ConfigError, load_yaml
from encoderlab.training.config import PretrainConfig, apply_overrides

PAPER_BATCH_TOKENS = 2_359_296  # 1,152 x 2,048 = 2,304 x 1,024
PAPER_CHECKPOINT_STEPS = [1000, 2000, 5000, 10000, 20000, 40000]
SIZES = ("210m", "610m", "1b")
MASK_RATIOS = (20, 30, 40, 50)
TWO_STAGE_SPLITS = {12_000: (3_000, 6_000, 9_000), 22_000: (5_000, 11_000, 17_000), 42_000: (10_000, 21_000, 32_000)}


def _k(steps: int) -> str:
    return f"{steps // 1000}k"


def _mlm(steps: int, ratio: int) -> dict[str, Any]:
    return {"objective": "mlm", "steps": steps, "mask_ratio": ratio / 100}


def _clm(steps: int) -> dict[str, Any]:
    return {"objective": "clm", "steps": steps}


def _ckpt(run: str, step: int) -> str:
    return f"runs/{run}/checkpoints/step-{step:06d}"


def _paper(name: str, size: str, phases: list[dict], **extra: Any) -> dict[str, Any]:
    return {
        "name": name, "model": size, "phases": phases, "global_batch_tokens": PAPER_BATCH_TOKENS,
        "micro_batch_size": 12, "data": {"source": "data/fineweb-edu-sample-100BT", "seq_len": 2048},
        "schedule": {"lr": 5e-4, "warmup_steps": 2000, "decay_steps": 2000},
        "checkpoint_every": 1000, "log_every": 10, **extra,
    }


SMALL_SHAPES = {  # preset: (samples per step, micro-batch, seq_len, synthetic mean document length)
    "tiny": (8, 4, 128, 48), "demo": (16, 16, 128, 48), "mini": (32, 16, 256, 96),
}


def _small(name: str, size: str, phases: list[dict], **extra: Any) -> dict[str, Any]:
    samples, micro, seq_len, mean_doc = SMALL_SHAPES[size]
    total = sum(p["steps"] for p in phases)
    return {
        "name": name,
        "model": {"preset": size, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, "mask_token_id": 3},
        "phases": phases,
        "global_batch_tokens": samples * seq_len,
        "micro_batch_size": micro,
        "data": {"source": "synthetic", "seq_len": seq_len, "mean_document_length": mean_doc},
        "schedule": {"lr": 3e-3 if size == "tiny" else 2e-3, "warmup_steps": max(1, total // 10),
                     "decay_steps": max(1, total // 5)},
        "checkpoint_every": max(1, total // 3), "log_every": max(1, total // 20), **extra,
    }


def _build_registry() -> dict[str, Callable[[], dict[str, Any]]]:
    registry: dict[str, Callable[[], dict[str, Any]]] = {}

    def add(name: str, factory: Callable[[], dict[str, Any]]) -> None:
        registry[name] = factory

    # pure runs, 42k steps, intermediate (non-decayed) checkpoints for the data-efficiency study
    for size in SIZES:
        add(f"{size}-clm-42k", lambda s=size: _paper(f"{s}-clm-42k", s, [_clm(42_000)],
                                                    checkpoint_steps=PAPER_CHECKPOINT_STEPS))
        for ratio in MASK_RATIOS:
            add(f"{size}-mlm{ratio}-42k", lambda s=size, r=ratio: _paper(
                f"{s}-mlm{r}-42k", s, [_mlm(42_000, r)], checkpoint_steps=PAPER_CHECKPOINT_STEPS))
    # decay branches: the last 2k steps only, from the 42k run's stable checkpoint at budget - 2k
    for label, phase in (("clm", _clm), ("mlm40", lambda n: _mlm(n, 40))):
        for budget in (12_000, 22_000):
            name = f"610m-{label}-{_k(budget)}"
            add(name, lambda n=name, lab=label, ph=phase, b=budget: _paper(
                n, "610m", [ph(b)], branch_from=_ckpt(f"610m-{lab}-42k", b - 2000)))
    # two-stage CLM -> MLM-40 under fixed budgets (MLM continues from the non-decayed CLM state)
    # Each branches from the CLM run's stable (non-decayed) checkpoint at the switch, with its optimizer
    # state: the same trajectory as training the CLM prefix again, without the cost (tests/unit/test_branching.py).
    for budget, splits in TWO_STAGE_SPLITS.items():
        for clm_steps in splits:
            name = f"610m-clm{_k(clm_steps)}-mlm40-{_k(budget)}"
            add(name, lambda n=name, b=budget, c=clm_steps: _paper(
                n, "610m", [_clm(c), _mlm(b - c, 40)], branch_from=_ckpt("610m-clm-42k", c)))
    add("1b-clm10k-mlm40-42k", lambda: _paper("1b-clm10k-mlm40-42k", "1b", [_clm(10_000), _mlm(32_000, 40)],
                                              branch_from=_ckpt("1b-clm-42k", 10_000)))
    for ratio in MASK_RATIOS:
        name = f"610m-clm40k-mlm{ratio}-42k"
        add(name, lambda n=name, r=ratio: _paper(n, "610m", [_clm(40_000), _mlm(2_000, r)],
                                                 branch_from=_ckpt("610m-clm-42k", 40_000)))
    # continued pretraining from the decayed 42k checkpoints
    for start in ("clm", "mlm40"):
        for extra_steps in (2_000, 12_000, 22_000):
            name = f"610m-{start}-dec42k-mlm40-{_k(42_000 + extra_steps)}"
            add(name, lambda n=name, s=start, e=extra_steps: _paper(
                n, "610m", [_mlm(e, 40)], init_from=_ckpt(f"610m-{s}-42k", 42_000),
                schedule={"lr": 5e-4, "warmup_steps": 200, "decay_steps": min(2000, e // 2)}))
    # small CPU runs: the same four setups in seconds (tiny) or minutes (mini)
    for size, steps in (("tiny", 60), ("demo", 400), ("mini", 300)):
        add(f"{size}-clm", lambda s=size, n=steps: _small(f"{s}-clm", s, [_clm(n)]))
        add(f"{size}-mlm40", lambda s=size, n=steps: _small(f"{s}-mlm40", s, [_mlm(n, 40)]))
        add(f"{size}-clm-mlm40", lambda s=size, n=steps: _small(f"{s}-clm-mlm40", s, [_clm(n // 2), _mlm(n - n // 2, 40)]))
        add(f"{size}-clm-dec-mlm40", lambda s=size, n=steps: _small(
            f"{s}-clm-dec-mlm40", s, [_mlm(n // 2, 40)], init_from=_ckpt(f"{s}-clm", n)))
    return _keep_branch_points(registry)


_BRANCH_PATH = re.compile(r"runs/([^/]+)/checkpoints/step-(\d+)/?")


def branch_points(presets: dict[str, dict[str, Any]]) -> dict[str, set[int]]:
    """For each preset, the steps other presets branch from (``branch_from`` runs/<name>/.../step-N)."""
    points: dict[str, set[int]] = {}
    for data in presets.values():
        match = _BRANCH_PATH.fullmatch(data.get("branch_from") or "")
        if match and match.group(1) in presets:
            points.setdefault(match.group(1), set()).add(int(match.group(2)))
    return points


def _keep_branch_points(registry: dict[str, Callable[[], dict[str, Any]]]) -> dict[str, Callable[[], dict[str, Any]]]:
    """Base runs keep (never rotate away) the stable checkpoints their branches start from."""
    points = branch_points({name: factory() for name, factory in registry.items()})

    def keeping(factory: Callable[[], dict[str, Any]], steps: set[int]) -> Callable[[], dict[str, Any]]:
        def build() -> dict[str, Any]:
            data = factory()
            data["checkpoint_steps"] = sorted(set(data.get("checkpoint_steps", [])) | steps)
            return data
        return build

    return {name: keeping(factory, points[name]) if name in points else factory for name, factory in registry.items()}


RUN_PRESETS = _build_registry()


def run_preset(name: str) -> PretrainConfig:
    if name not in RUN_PRESETS:
        raise ConfigError(f"unknown run preset {name!r}; see `encoderlab pretrain --list`")
    return PretrainConfig.from_dict(RUN_PRESETS[name](), where=f"preset {name!r}")


def load_pretrain_config(spec: str, overrides: list[str] | None = None) -> PretrainConfig:
    """A run config from a preset name or a YAML file, with dotted ``key=value`` overrides."""
    path = Path(spec)
    if spec.endswith((".yaml", ".yml")) or path.is_file():
        raw = load_yaml(path)
        where = str(path)
        if "preset" in raw:  # a YAML file may start from a run preset
            base = run_preset(raw.pop("preset")).to_dict()
            base = _merge(base, raw)
            raw = base
        config = PretrainConfig.from_dict(raw, where=where)
    elif spec in RUN_PRESETS:
        config = run_preset(spec)
        where = f"preset {spec!r}"
    else:
        raise ConfigError(
            f"{spec!r} is neither a YAML file nor a run preset; see `encoderlab pretrain --list` "
            f"(e.g. {', '.join(list(RUN_PRESETS)[:4])}, ...)"
        )
    if overrides:
        config = PretrainConfig.from_dict(apply_overrides(config.to_dict(), overrides), where=where)
    return config


def _merge(base: dict, update: dict) -> dict:
    for key, value in update.items():
        if key == "model" and isinstance(value, dict) and "preset" in value:
            base[key] = value  # a new model preset replaces the run preset's model
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = _merge(dict(base[key]), value)
        else:
            base[key] = value
    return base
