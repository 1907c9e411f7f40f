"""The random-init baseline of a study: the architecture of a run preset, never pretrained.

A run with ``random_init: true`` in a study spec trains no step: its one checkpoint,
``runs/<name>/checkpoints/step-000000``, holds the weights a pretraining run of that preset and
seed starts from (``build_encoder(model, seed=config.seed)``, as the trainer builds them), with
the study's tokenizer. Fine-tuned on the same grid as the pretrained models, it shows what each
objective's pretraining buys. The weights are a function of the architecture, the seed and the
torch version only, so they (and the results store's model fingerprint, a hash of them) are the
same on every rerun; ``config.json`` records the preset and seed they came from.
"""

from __future__ import annotations

from pathlib import Path
from encoderlab.model import build_encoder, save_checkpoint
from encoderlab.training.data import build_source, shard_tokenizer

RANDOM_INIT_STEP = 0


def random_init_dir(config) -> Path:
    """Where the random-init checkpoint of run ``config`` (a ``PretrainConfig``) lives."""
    return config.run_dir / "checkpoints" / f"step-{RANDOM_INIT_STEP:06d}"


def write_random_init(config, preset: str | None = None) -> Path:
    """Writes (once) the seeded initial weights of ``config``'s model, with the shards' tokenizer."""
    import torch


    target = random_init_dir(config)
    if (target / "model.safetensors").is_file():
        return target
    tokenizer_dir = shard_tokenizer(config.data, build_source(config.data, config.model))
    model = build_encoder(config.model, seed=config.seed)
    extra = {"random_init": {"preset": preset, "seed": config.seed, "torch": torch.__version__,
                             "pretraining_steps": 0, "init": "build_encoder(model, seed), as a pretraining run starts"}}
    return save_checkpoint(model, target, tokenizer_dir=tokenizer_dir, overwrite=True, extra=extra)
