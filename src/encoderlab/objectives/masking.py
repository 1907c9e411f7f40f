"""Counter-based randomness for MLM masks: a pure function of (seed, sample index, step, position).

A mask computed this way does not depend on which process, worker or resume produced the batch,
so a resumed or re-sharded run masks every sample exactly as the original run did. The hash is
murmur3's 32-bit finaliser, evaluated with int64 tensor arithmetic on any device.

Eagerly that is ~85 one-microsecond integer kernels per stream, each waiting on its launch: on an
H100 the masking of one 210m MLM step took ~9.6 ms (293 kernels) of the step's 83-90 ms before the
first layer ran (profiled 2026-11-26). So all streams of a call are hashed together, as one
(streams, B, T) computation, and on CUDA that computation is compiled into one fused kernel. The
compiled function takes only tensors: Triton refused the first version, whose 32-bit constants
met its int32 index arithmetic ("Scalar 2654435769 is out of range for type int32"). Integer
arithmetic and the final power-of-two scaling are exact, so compiled and eager values are
bit-identical; the first compiled call per process is checked against the eager one, and any
failure or difference falls back to the eager path with a warning.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

_M32 = 0xFFFFFFFF
_STREAM_OFFSET = 0x9E3779B9
_HIGH_WORD_SALT = 0x27D4EB2F


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


def _hash_uniforms(position: Tensor, sample: Tensor, keys: Tensor) -> Tensor:
    """(S, B, T) uniforms from (T,) positions, (B,) sample indices and (S, 3) per-stream keys
    (stream offset, step, seed; each already reduced mod 2**32). Tensors only, see the module doc."""
    stream_offset, step, seed = (keys[:, i, None, None] for i in range(3))
    h = _fmix32((position[None, None, :] + stream_offset) & _M32)  # (S, 1, T)
    sample = sample[None, :, None]
    h = _fmix32(h ^ (sample & _M32))  # (S, B, T)
    h = _fmix32(h ^ ((sample >> 32) & _M32) ^ _HIGH_WORD_SALT)
    h = _fmix32(h ^ step)
    h = _fmix32(h ^ seed)
    return h.to(torch.float64).div_(2.0**32).to(torch.float32)


_compiled = None  # None: not built yet; False: unusable here (failed or differed); else the function
_verified = False


def _compiled_hash(position: Tensor, sample: Tensor, keys: Tensor) -> Tensor | None:
    """The compiled hash's result, or None when it cannot be used on this machine."""
    global _compiled, _verified
    if _compiled is False:
        return None
    if _compiled is None:
        _compiled = torch.compile(_hash_uniforms, dynamic=True)
    try:
        result = _compiled(position, sample, keys)
    except Exception as err:  # a compiler that cannot build it costs speed, never the run
        reason = f"compiling failed ({type(err).__name__}: {str(err)[:300]})"
    else:
        if _verified:
            return result
        if torch.equal(result, _hash_uniforms(position, sample, keys)):
            _verified = True
            return result
        reason = "the compiled kernel's values differ from the eager ones"
    warnings.warn(f"MLM mask hash: {reason}; masks are computed eagerly (same values, slower)",
                  RuntimeWarning, stacklevel=3)
    _compiled = False
    return None


def counter_uniforms(seed: int, sample_index: Tensor, step: int, num_positions: int,
                     streams: tuple[int, ...]) -> Tensor:
    """(len(streams), B, T) uniforms in [0, 1): entry s is ``counter_uniform(..., streams[s])``."""
    device = sample_index.device
    keys = torch.tensor(
        [[(_STREAM_OFFSET * (stream + 1)) & _M32, step & _M32, seed & _M32] for stream in streams],
        dtype=torch.int64,
    ).to(device)
    position = torch.arange(num_positions, device=device, dtype=torch.int64)
    sample = sample_index.to(torch.int64)
    if sample.is_cuda and not torch.compiler.is_compiling():
        result = _compiled_hash(position, sample, keys)
        if result is not None:
            return result
    return _hash_uniforms(position, sample, keys)


def counter_uniform(seed: int, sample_index: Tensor, step: int, num_positions: int, stream: int) -> Tensor:
    """(B, T) uniforms in [0, 1) determined by (seed, sample index, step, position, stream)."""
    return counter_uniforms(seed, sample_index, step, num_positions, (stream,))[0]
