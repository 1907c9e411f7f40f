"""Warmup-Stable-Decay learning rate, a pure function of the optimizer step."""

from __future__ import annotations

from encoderlab.training.config import ScheduleConfig


def wsd_lr(step: int, total_steps: int, schedule: ScheduleConfig) -> float:
    """LR for optimizer step ``step`` (0-based) of a run of ``total_steps`` steps.

    Linear warmup to ``lr`` over ``warmup_steps`` (the first step uses lr / warmup_steps), constant
    until the last ``decay_steps`` steps, then linear decay reaching ``final_lr`` at the last step.
    A decay branch from a stable checkpoint at step k of a longer run uses ``total_steps = k +
    decay_steps`` and therefore follows exactly the long run's curve up to k.
    """
    warmup, decay = schedule.warmup_steps, schedule.decay_steps
    if step < warmup:
        return schedule.lr * (step + 1) / warmup
    decay_start = total_steps - decay
    if step < decay_start or decay == 0:
        return schedule.lr
    progress = (step - decay_start + 1) / decay
    return schedule.lr + (schedule.final_lr - schedule.lr) * progress
