"""Counter-based randomness for MLM masks: a pure function of (seed, sample index, step, position).

A mask computed this way does not depend on which process, worker or resume produced the batch,
so a resumed or re-sharded run masks every sample exactly as the original run did. The hash is
murmur3's 32-bit finaliser, evaluated with int64 tensor arithmetic on any device.
"""

from __future__ import annotations

import torch
from torch import Tensor

_M32 = 0xFFFFFFFF


def _mul32(x: Tensor, constant: int) -> Tensor:
    """(x * constant) mod 2**32 for 0 <= x < 2**32 without int64 overflow."""
    low, high = x & 0xFFFF, x >> 16
    return ((low * constant) + (((high * constant) & 0xFFFF) << 16)) & _M32


def _fmix32(x: Tensor) -> Tensor:
    x = x ^ (x >> 16)
    x = _mul32(x, 0x85EBCA6B)
    x = x ^ (x >> 13)
    x = _mul32(x, 0xC2B2AE35)
    return x ^ (x >> 16)


def counter_uniform(seed: int, sample_index: Tensor, step: int, num_positions: int, stream: int) -> Tensor:
    """(B, T) uniforms in [0, 1) determined by (seed, sample index, step, position, stream)."""
    device = sample_index.device
    position = torch.arange(num_positions, device=device, dtype=torch.int64)[None, :]
    sample = sample_index.to(torch.int64)[:, None]
    h = _fmix32((position + 0x9E3779B9 * (stream + 1)) & _M32)
    h = _fmix32(h ^ (sample & _M32))
    h = _fmix32(h ^ ((sample >> 32) & _M32) ^ 0x27D4EB2F)
    h = _fmix32(h ^ (step & _M32))
    h = _fmix32(h ^ (seed & _M32))
    return h.to(torch.float64).div_(2.0**32).to(torch.float32)
