"""Pretraining: run configs and presets, the WSD schedule, the loop, checkpoints, distributed."""

from encoderlab.training.config import (
    DataConfig,
    OptimizerConfig,
    PhaseConfig,
    PretrainConfig,
    ScheduleConfig,
    apply_overrides,
)
from encoderlab.training.loop import Trainer, TrainingError, pretrain
from encoderlab.training.presets import RUN_PRESETS, load_pretrain_config, run_preset
from encoderlab.training.schedule import wsd_lr

__all__ = [
    "DataConfig", "OptimizerConfig", "PhaseConfig", "PretrainConfig", "RUN_PRESETS", "ScheduleConfig", "Trainer",
    "TrainingError", "apply_overrides", "load_pretrain_config", "pretrain", "run_preset", "wsd_lr",
]
