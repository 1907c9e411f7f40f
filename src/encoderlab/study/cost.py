"""What a study costs before it runs: optimizer steps, real tokens and projected device-hours.

Device-hours are projected from a throughput table: tokens/s of one pretraining step per model
preset and objective. The table shipped here holds the measured H100 figures of
``benchmarks/README.md`` (third session, call 2: one H100 80GB, bf16, compiled, micro-batch
12 x 2048, packed documents isolated by varlen flash attention, MLM at p = 0.4 with the sparse
head; raw file ``benchmarks/results/h100-2026-11-26-s3/call2-throughput.json``). A user's own
``benchmarks/pretrain_throughput.py`` output (``throughput.json`` or ``throughput.jsonl``) replaces
the rows it measures (``--throughput FILE``).

An MLM phase at another masking ratio is projected at the measured tokens/s scaled by the FLOPs
per token (``ModelConfig.flops_per_token``) of the measured ratio over that of the phase's ratio
(the sparse head computes logits at masked positions only). Tokens/s counts every input token,
padding included, so the projection uses the input tokens of a step; ``pretraining_tokens`` counts
real (non-padding) tokens.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from encoderlab.config import ConfigError

DEVICE = "H100"
SOURCE = "benchmarks/results/h100-2026-11-26-s3/call2-throughput.json (benchmarks/README.md, H100, third session)"
# (model preset, objective): (tokens/s, masking ratio measured, seq_len), one H100 80GB
H100_THROUGHPUT: dict[tuple[str, str], tuple[float, float | None, int]] = {
    ("210m", "clm"): (257_876, None, 2048),
    ("210m", "mlm"): (296_691, 0.4, 2048),
    ("610m", "clm"): (99_658, None, 2048),
    ("610m", "mlm"): (104_139, 0.4, 2048),
    ("1b", "clm"): (57_590, None, 2048),
    ("1b", "mlm"): (58_963, 0.4, 2048),
}


class ThroughputTable:
    def __init__(self, rows: dict[tuple[str, str], tuple[float, float | None, int]], device: str, source: str):
        self.rows, self.device, self.source = dict(rows), device, source

    @classmethod
    def shipped(cls) -> ThroughputTable:
        return cls(H100_THROUGHPUT, DEVICE, SOURCE)

    def updated_from(self, path: str | Path) -> ThroughputTable:
        """This table with the rows measured in a ``pretrain_throughput.py`` output file."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as err:
            raise ConfigError(f"--throughput {path}: cannot read it ({err.strerror or err})") from None
        try:
            if path.suffix == ".jsonl":
                records = [json.loads(line) for line in text.splitlines() if line.strip()]
                env = records[0].get("env", {}) if records else {}
            else:
                data = json.loads(text)
                records, env = data.get("records", []), data.get("env", {})
        except (ValueError, AttributeError) as err:
            raise ConfigError(f"--throughput {path}: not a pretrain_throughput.py output (throughput.json or "
                              f".jsonl): {err}") from None
        rows, used = dict(self.rows), 0
        for record in records:
            if not isinstance(record, dict) or record.get("status") != "ok" or record.get("code") != "encoderlab":
                continue
            if record.get("variant") or record.get("layout", "documents") != "documents":
                continue  # A/B variants and plain-attention rows are not how a run trains
            try:
                key = (str(record["preset"]), str(record["objective"]))
                rows[key] = (float(record["tokens_per_s"]), record.get("mask_ratio"), int(record["seq_len"]))
            except (KeyError, TypeError, ValueError) as err:
                raise ConfigError(f"--throughput {path}: a record lacks {err}") from None
            used += 1
        if not used:
            raise ConfigError(f"--throughput {path}: no usable encoderlab rows (status ok, no variant)")
        device = str(env.get("gpu") or env.get("device") or "user device")
        return ThroughputTable(rows, device, f"{path} ({used} row(s)) over {self.source}")

    def tokens_per_s(self, config, phase) -> float | None:
        """Projected input tokens/s of ``phase`` of run ``config`` on one device, or None (no figure).
        A mixture phase: its CLM share at the CLM rate and the rest at the masked objective's."""
        if phase.objective == "mixture":
            clm = self.tokens_per_s(config, dataclasses.replace(phase, objective="clm", mask_ratio=None,
                                                                mask_ratio_end=None, mask_ratio_stages=None,
                                                                clm_fraction=None, masked_objective="mlm"))
            masked = self.tokens_per_s(config, dataclasses.replace(phase, objective=phase.masked_objective,
                                                                   clm_fraction=None, masked_objective="mlm"))
            if clm is None or masked is None:
                return None
            return 1.0 / (phase.clm_fraction / clm + (1 - phase.clm_fraction) / masked)
        row = self.rows.get((config.model.name, phase.objective))
        if row is None:
            return None
        rate, measured_ratio, seq_len = row
        if phase.objective == "mlm" and measured_ratio and phase.mean_mask_ratio != measured_ratio:
            seq = config.data.seq_len  # a ratio that changes over the phase counts at its mean
            rate *= (config.model.flops_per_token(seq, head_fraction=measured_ratio)
                     / config.model.flops_per_token(seq, head_fraction=phase.mean_mask_ratio))
        return rate


def real_tokens_per_step(config) -> int:
    """Real (non-padding) tokens of one optimizer step: every token of a packed step; with
    ``data.variable_length`` and ``data.pack: false``, a sample holds half of ``seq_len`` on average
    (the cut is uniform), the rest is padding."""
    data = config.data
    if data.variable_length and not getattr(data, "pack", True):
        return config.global_batch_samples * data.seq_len // 2
    return config.global_batch_tokens


def run_cost(config, first_step: int, table: ThroughputTable) -> dict:
    """Steps, real tokens and projected device-hours of the steps ``first_step`` .. end of ``config``."""
    hours, missing, end = 0.0, [], 0
    for phase in config.phases:
        start, end = end, end + phase.steps
        steps = max(0, end - max(start, first_step))
        if not steps:
            continue
        rate = table.tokens_per_s(config, phase)
        if rate is None:
            missing.append(f"{config.model.name}/{phase.objective}")
            continue
        hours += steps * config.global_batch_tokens / rate / 3600
    steps = config.total_steps - first_step
    return {"steps": steps, "tokens": steps * real_tokens_per_step(config),
            "device_hours": None if missing else hours, "no_throughput_for": sorted(set(missing))}
