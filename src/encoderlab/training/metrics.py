"""Run metrics: JSONL always, TensorBoard and Weights & Biases when asked for."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from encoderlab.config import ConfigError
from encoderlab.io import atomic_write_text

# Dense BF16 peak per *card* and how many torch devices a card shows as: MFU is taken against the
# peak of one torch device, so a card whose dies are separate devices (an MI250X shows two GCDs)
# counts a fraction of the card. The first name that the device's name contains wins, so the more
# specific names come first. Figures: torchtitan's get_peak_flops for NVIDIA,
# AMD's data sheets for Instinct (MI250X 383 TFLOP/s, MI250 362.1, MI300X 1307.4 per card).
PEAK_BF16_FLOPS_PER_CARD = (
    ("H100 NVL", 835e12, 1), ("H100 PCIe", 756e12, 1), ("H100", 989e12, 1), ("H200", 989e12, 1),
    ("A100", 312e12, 1), ("MI300X", 1307.4e12, 1), ("MI250X", 383e12, 2), ("MI250", 362.1e12, 2),
)
PEAK_BF16_FLOPS = {name: card / devices for name, card, devices in PEAK_BF16_FLOPS_PER_CARD}  # per torch device


def peak_bf16_flops(device: torch.device, name: str | None = None) -> float | None:
    """The dense BF16 peak of one torch ``device`` (None on CPU or for a GPU not in the table).
    ``name``: the device name to look up instead of asking the device."""
    if name is None:
        if device.type != "cuda":
            return None
        name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_FLOPS.items() if key in name), None)


def truncate_metrics(path: Path, last_step: int) -> int:
    """Keeps one record per step up to ``last_step`` in ``path`` (rewritten atomically), so a run
    resumed from the checkpoint of step ``last_step`` does not log steps twice; records of later
    steps, repeated steps (the last is kept) and unreadable lines (a write cut by a kill) go.
    Returns the number of lines dropped."""
    if not path.is_file():
        return 0
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    by_step: dict[int, str] = {}
    for line in lines:
        try:
            step = json.loads(line)["step"]
        except (ValueError, KeyError, TypeError):
            continue
        if isinstance(step, int) and step <= last_step:
            by_step[step] = line
    dropped = len(lines) - len(by_step)
    if dropped:
        atomic_write_text(path, "".join(by_step[step] + "\n" for step in sorted(by_step)))
    return dropped


class MetricsLogger:
    def __init__(self, run_dir: Path, run_name: str, config: dict, tensorboard: bool, wandb: bool, project: str,
                 start_step: int = 0):
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
            # purge_step: events of steps after the resumed checkpoint are dropped, as in metrics.jsonl
            self._tb = SummaryWriter(log_dir=str(run_dir / "tensorboard"),
                                     purge_step=start_step + 1 if start_step else None)
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
