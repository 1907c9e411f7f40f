"""Run metrics: JSONL always, TensorBoard and Weights & Biases when asked for."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from encoderlab.config import ConfigError

# Dense BF16 peak per device, as in torchtitan's table (performance.md section 1.1).
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "MI250X": 383e12}


def peak_bf16_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((value for key, value in PEAK_BF16_FLOPS.items() if key in name), None)


class MetricsLogger:
    def __init__(self, run_dir: Path, run_name: str, config: dict, tensorboard: bool, wandb: bool, project: str):
        self.path = run_dir / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a")
        self._tb = None
        self._wandb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ConfigError("tensorboard: true needs the `tensorboard` package (pip install tensorboard)") from None
            self._tb = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        if wandb:
            try:
                import wandb as wandb_module
            except ImportError:
                raise ConfigError("wandb: true needs the `wandb` package (pip install wandb)") from None
            # Offline unless the user configured otherwise: clusters often have no network.
            os.environ.setdefault("WANDB_MODE", "offline")
            self._wandb = wandb_module.init(project=project, name=run_name, config=config, dir=str(run_dir))

    def log(self, record: dict) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        step = record["step"]
        numbers = {k: v for k, v in record.items() if isinstance(v, (int, float)) and k != "step"}
        if self._tb is not None:
            for key, value in numbers.items():
                self._tb.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log(numbers, step=step)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
