"""Memory-lean linear + cross-entropy for large vocabularies (128k for the paper's runs).

``h @ W.T`` for 12 x 2048 tokens and 128,256 classes is 6.3 GB in bf16 and twice that in fp32
before its gradient. :func:`linear_cross_entropy` never holds more than one chunk of logits: the
forward pass computes, chunk by chunk, the loss *and* the gradients with respect to the hidden
states and the head weight (as Liger's fused linear cross-entropy does), so the backward pass is a
scaling of stored gradients. FLOPs are those of the plain computation (2NVd forward + 4NVd
backward). The per-chunk softmax/gradient math is compiled into one fused kernel on CUDA.
"""

from __future__ import annotations

import torch
from torch import Tensor

IGNORE_INDEX = -100


def _chunk_loss_and_grad(logits: Tensor, targets: Tensor, softcap: float | None = None) -> tuple[Tensor, Tensor]:
    """Summed cross-entropy of one chunk and d(loss)/d(logits), ignoring ``IGNORE_INDEX`` rows.

    ``softcap`` (Gemma 2's final logit soft-cap) scores ``softcap * tanh(logits / softcap)``."""
    logits_f = logits.to(torch.promote_types(logits.dtype, torch.float32))
    capped = None
    if softcap is not None:
        capped = torch.tanh(logits_f / softcap)
        logits_f = capped * softcap
    valid = targets != IGNORE_INDEX
    safe_targets = targets.clamp(min=0)
    lse = torch.logsumexp(logits_f, dim=-1)
    target_logit = logits_f.gather(1, safe_targets[:, None]).squeeze(1)
    loss = torch.where(valid, lse - target_logit, 0.0).sum()
    # softmax - one_hot(target), written as one pointwise expression (the one-hot from a column
    # index compare): compiled, it is a single pass over the logits. A scatter_add here kept the
    # fp32 softmax in memory and added two passes over it (~9 of the 90 ms of a 210m MLM step on an
    # H100, profiled 2026-11-26).
    is_target = torch.arange(logits.shape[1], device=logits.device)[None, :] == safe_targets[:, None]
    grad = torch.exp(logits_f - lse[:, None]) - is_target.to(logits_f.dtype)
    grad = torch.where(valid[:, None], grad, 0.0)
    if capped is not None:  # chain rule through the cap: d(c tanh(z / c))/dz = 1 - tanh^2
        grad = grad * (1 - capped * capped)
    return loss, grad.to(logits.dtype)


_compiled_chunk_fn = None


def _chunk_fn(device: torch.device):
    global _compiled_chunk_fn
    if device.type != "cuda":
        return _chunk_loss_and_grad
    if _compiled_chunk_fn is None:
        _compiled_chunk_fn = torch.compile(_chunk_loss_and_grad, dynamic=True)
    return _compiled_chunk_fn


_fp32_addmm_support: dict[tuple[str, torch.dtype], bool] = {}


def _gemm_accumulates_fp32(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether ``addmm(out_dtype=float32)`` on half-precision operands works here (CUDA, PyTorch >= 2.9).

    With it the head's fp32 gradient is accumulated inside the GEMM's epilogue; without it each
    chunk's product is written out and added in a separate pass (~0.9 ms a chunk at 1b on an H100).
    Checked once per device type and dtype, on a small product with a known answer.
    """
    key = (device.type, dtype)
    if key not in _fp32_addmm_support:
        supported = False
        if device.type == "cuda" and dtype in (torch.bfloat16, torch.float16):
            try:
                with torch.autocast(device.type, enabled=False):
                    a = torch.full((2, 3), 0.5, device=device, dtype=dtype)
                    b = torch.full((3, 4), 2.0, device=device, dtype=dtype)
                    c = torch.ones(2, 4, device=device, dtype=torch.float32)
                    torch.addmm(c, a, b, out_dtype=torch.float32, out=c)
                supported = bool((c == 4.0).all())
            except (RuntimeError, TypeError, NotImplementedError):
                supported = False
        _fp32_addmm_support[key] = supported
    return _fp32_addmm_support[key]


def _compute_dtype(device: torch.device, default: torch.dtype) -> torch.dtype:
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return default


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, targets: Tensor, chunk_size: int,
                softcap: float | None = None) -> Tensor:
        dtype = _compute_dtype(hidden.device, hidden.dtype)
        chunk_fn = _chunk_fn(hidden.device)
        w = weight.to(dtype)
        needs_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        grad_hidden = torch.empty_like(hidden) if needs_grad else None
        accumulate = torch.promote_types(dtype, torch.float32)
        grad_weight = torch.zeros(weight.shape, dtype=accumulate, device=weight.device) if needs_grad else None
        fused_accumulate = needs_grad and accumulate != dtype and _gemm_accumulates_fp32(hidden.device, dtype)
        loss = torch.zeros((), dtype=accumulate, device=hidden.device)
        for start in range(0, hidden.shape[0], chunk_size):
            h = hidden[start : start + chunk_size].to(dtype)
            chunk_targets = targets[start : start + chunk_size]
            if softcap is None:
                chunk_loss, grad_logits = chunk_fn(h @ w.T, chunk_targets)
            else:
                chunk_loss, grad_logits = chunk_fn(h @ w.T, chunk_targets, softcap)
            loss += chunk_loss
            if needs_grad:
                grad_hidden[start : start + chunk_size] = grad_logits @ w
                if fused_accumulate:
                    with torch.autocast(hidden.device.type, enabled=False):  # operands are cast already
                        torch.addmm(grad_weight, grad_logits.T, h, out_dtype=accumulate, out=grad_weight)
                else:
                    grad_weight += grad_logits.T @ h
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.weight_dtype = weight.dtype
        return loss

    @staticmethod
    def backward(ctx, grad_loss: Tensor):
        grad_hidden, grad_weight = ctx.saved_tensors
        return (grad_hidden * grad_loss.to(grad_hidden.dtype), (grad_weight * grad_loss).to(ctx.weight_dtype), None,
                None, None)


def linear_cross_entropy(hidden: Tensor, weight: Tensor, targets: Tensor, chunk_size: int = 4096,
                         softcap: float | None = None) -> Tensor:
    """Sum over rows of ``cross_entropy(hidden @ weight.T, targets)``; rows with target -100 are ignored.

    Args:
        hidden: (N, d) hidden states at the positions to predict.
        weight: (V, d) LM head weight.
        targets: (N,) class ids, or -100 to ignore a row.
        chunk_size: rows per chunk; peak extra memory is about chunk_size x V x 6 bytes.
        softcap: final logit soft-cap of the model (Gemma 2), or None.
    """
    if hidden.dim() != 2 or targets.shape != hidden.shape[:1]:
        raise ValueError(f"linear_cross_entropy: expected hidden (N, d) and targets (N,), got "
                         f"{tuple(hidden.shape)} and {tuple(targets.shape)}")
    if chunk_size <= 0:
        raise ValueError(f"linear_cross_entropy: chunk_size must be positive, got {chunk_size}")
    return _LinearCrossEntropy.apply(hidden, weight, targets, chunk_size, softcap)
