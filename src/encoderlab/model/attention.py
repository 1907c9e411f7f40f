"""Attention layouts: who attends to whom in a batch, and the kernels that honour it.

A batch row may hold several packed documents and trailing or leading padding. Callers describe
this with per-token ``document_ids`` (equal ids = same document, documents contiguous) and/or a
padding ``attention_mask``; :func:`build_layout` turns that into a :class:`SequenceLayout` once per
forward pass, shared by every layer. Each backend reads only its own part of the layout, so a new
kernel (e.g. flash-attn varlen) slots in here without touching the model or its callers.

Backends:
- ``sdpa``: portable. ``torch.nn.functional.scaled_dot_product_attention`` with a dense boolean
  mask when documents or padding are present (O(T^2) memory per row; fine for CPU and tests), or
  with no mask / ``is_causal`` when every row is one full document (PyTorch then uses its
  flash/cuDNN kernels on GPU).
- ``varlen``: PyTorch's variable-length flash attention (``torch.nn.attention.varlen``, CUDA,
  PyTorch >= 2.10): every document is its own sequence, nothing is masked or wasted. The fast
  path on GPU when available.
- ``flex``: FlexAttention with a block-sparse mask; skips fully masked tiles. The GPU path when
  varlen attention is not available, and the one for arbitrary mask patterns.

Features of imported decoder families, by backend (the paper's architecture uses none of them):

| feature | sdpa | flex | varlen |
|---|---|---|---|
| q/k/v biases, q/k norms, norm placements, GeGLU, embedding scale | yes | yes | yes |
| sliding window (when shorter than the batch's rows) | yes (dense mask) | refused | refused |
| ``query_pre_attn_scalar`` (a non-default scale) | yes | refused | refused |
| attention logit soft-capping | yes (explicit softmax) | refused | refused |

Refused means a ValueError naming the feature when that backend is asked for explicitly; ``auto``
then picks ``sdpa``.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor


@functools.cache
def _varlen() -> tuple[object | None, frozenset[str]]:
    """PyTorch's varlen kernel and its parameters (PyTorch >= 2.10; the signature differs across
    versions, so it is read once), or (None, {}). Imported on first use: the module loads
    torch._dynamo, which doubled every command's start-up (2 s of 4 on this CPU) for a CUDA-only kernel."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None, frozenset()
    return varlen_attn, frozenset(inspect.signature(varlen_attn).parameters)


AttentionMode = Literal["causal", "bidirectional"]
ATTENTION_MODES = ("causal", "bidirectional")

PAD_DOCUMENT = -1  # document id given to padding tokens


@dataclass
class SequenceLayout:
    """Everything attention needs to know about a batch, built once per forward."""

    causal: bool
    positions: Tensor  # (B, T) RoPE positions, restarting at each document when isolated
    backend: Literal["sdpa", "flex", "varlen"]
    dense_mask: Tensor | None = None  # sdpa: (B, 1, T, T) bool, True = may attend; None = no mask
    block_mask: object | None = None  # flex: torch.nn.attention.flex_attention.BlockMask
    cu_seqlens: Tensor | None = None  # varlen: (num_segments + 1,) int32 offsets into the B*T tokens


def positions_from_documents(document_ids: Tensor) -> Tensor:
    """Position of each token inside its document: restarts at 0 where the document id changes."""
    batch, length = document_ids.shape
    index = torch.arange(length, device=document_ids.device).expand(batch, length)
    starts = torch.ones_like(document_ids, dtype=torch.bool)
    starts[:, 1:] = document_ids[:, 1:] != document_ids[:, :-1]
    run_start = torch.where(starts, index, torch.zeros_like(index)).cummax(dim=1).values
    return index - run_start


def document_ids_from_lengths(lengths: list[list[int]], seq_len: int, device: torch.device | str = "cpu") -> Tensor:
    """Document ids for rows packed with documents of the given lengths; the rest is padding."""
    ids = torch.full((len(lengths), seq_len), PAD_DOCUMENT, dtype=torch.long)
    for row, row_lengths in enumerate(lengths):
        if sum(row_lengths) > seq_len:
            raise ValueError(f"row {row}: document lengths {row_lengths} exceed seq_len {seq_len}")
        start = 0
        for doc, n in enumerate(row_lengths):
            ids[row, start : start + n] = doc
            start += n
    return ids.to(device)


BACKENDS = ("auto", "sdpa", "flex", "varlen")


def varlen_available() -> bool:
    return _varlen()[0] is not None


def resolve_backend(backend: str, device: torch.device,
                    sdpa_features: tuple[str, ...] | list[str] = ()) -> Literal["sdpa", "flex", "varlen"]:
    """The kernel to run; ``sdpa_features`` names features of the model that only sdpa implements."""
    if backend not in BACKENDS:
        raise ValueError(f"attention backend: expected one of {BACKENDS}, got {backend!r}")
    if sdpa_features:
        if backend in ("auto", "sdpa"):
            return "sdpa"
        raise ValueError(f"attention backend {backend!r} does not support {', '.join(sdpa_features)} of this model; "
                         "use attn_backend='sdpa' (or 'auto')")
    if backend == "auto":
        if device.type != "cuda":
            return "sdpa"
        return "varlen" if varlen_available() else "flex"
    if backend == "varlen" and (device.type != "cuda" or not varlen_available()):
        raise ValueError("attention backend 'varlen' needs a CUDA device and PyTorch >= 2.10")
    return backend  # type: ignore[return-value]


def build_layout(
    input_ids: Tensor,
    *,
    mode: AttentionMode,
    document_ids: Tensor | None = None,
    attention_mask: Tensor | None = None,
    isolate_documents: bool = True,
    backend: str = "auto",
    sliding_window: int | None = None,
    sdpa_features: tuple[str, ...] | list[str] = (),
) -> SequenceLayout:
    """Builds the attention layout of a batch.

    Args:
        input_ids: (B, T) token ids (only shape and device are used).
        mode: ``causal`` or ``bidirectional``; the same weights serve both.
        document_ids: optional (B, T) ids; tokens attend only within their document and RoPE
            positions restart at each document. Padding tokens may carry ``PAD_DOCUMENT`` (-1).
        attention_mask: optional (B, T) padding mask, 1/True for real tokens.
        isolate_documents: False reproduces the authors' code, where packed documents attend to
            each other and positions run on across them (padding is still masked).
        backend: ``auto`` (varlen, else flex, on CUDA; sdpa elsewhere), ``sdpa``, ``flex`` or ``varlen``.
        sliding_window: keys within this many tokens of the query, the query included (causal:
            ``0 <= q - k < window``; bidirectional: ``|q - k| < window``, as transformers). No
            effect on rows not longer than the window.
        sdpa_features: model features only sdpa implements (see the module docstring).
    """
    if mode not in ATTENTION_MODES:
        raise ValueError(f"attention mode: expected one of {ATTENTION_MODES}, got {mode!r}")
    batch, length = input_ids.shape
    device = input_ids.device
    for name, tensor in (("document_ids", document_ids), ("attention_mask", attention_mask)):
        if tensor is not None and tuple(tensor.shape) != (batch, length):
            raise ValueError(f"{name}: expected shape {(batch, length)} like input_ids, got {tuple(tensor.shape)}")
    causal = mode == "causal"
    if sliding_window is not None and sliding_window >= length:
        sliding_window = None  # every key is inside the window: the unwindowed (fast) path
    if sliding_window is not None:
        sdpa_features = [*sdpa_features, f"sliding_window {sliding_window}"]
    chosen = resolve_backend(backend, device, sdpa_features)

    segments = None  # (B, T) segment ids whose equality decides attention; None = one segment per row
    if document_ids is not None and isolate_documents:
        segments = document_ids.to(device=device, dtype=torch.long)
        if attention_mask is not None:
            segments = torch.where(attention_mask.to(device).bool(), segments, PAD_DOCUMENT)
    elif attention_mask is not None or document_ids is not None:
        if attention_mask is not None:
            valid = attention_mask.to(device).bool()
        else:
            valid = document_ids.to(device) != PAD_DOCUMENT
        segments = torch.where(valid, 0, PAD_DOCUMENT).long()

    if segments is None and sliding_window is None:
        positions = torch.arange(length, device=device).expand(batch, length)
        return SequenceLayout(causal=causal, positions=positions, backend=chosen)
    if segments is None:  # one document per row, but the window needs a mask
        segments = torch.zeros(batch, length, dtype=torch.long, device=device)

    # Without isolation the segments are only real-vs-padding, so positions run on across packed
    # documents as in the authors' code (and still skip left padding).
    positions = positions_from_documents(segments)
    if chosen == "sdpa":
        allowed = segments[:, None, :, None] == segments[:, None, None, :]
        if causal:
            allowed = allowed & torch.ones(length, length, dtype=torch.bool, device=device).tril()
        if sliding_window is not None:
            index = torch.arange(length, device=device)
            distance = index[:, None] - index[None, :]  # (T, T) query minus key
            allowed = allowed & (distance.abs() < sliding_window)
        return SequenceLayout(causal=causal, positions=positions, backend=chosen, dense_mask=allowed)
    if chosen == "varlen":
        # A segment starts wherever its position is 0 (row starts included). nonzero() syncs with the
        # host once per forward; the kernel takes the row length as max_seqlen, an upper bound.
        starts = (positions.reshape(-1) == 0).nonzero().squeeze(1)
        total = torch.tensor([batch * length], device=device)
        cu_seqlens = torch.cat([starts, total]).to(torch.int32)
        return SequenceLayout(causal=causal, positions=positions, backend=chosen, cu_seqlens=cu_seqlens)
    return SequenceLayout(
        causal=causal, positions=positions, backend=chosen, block_mask=_flex_block_mask(segments, causal)
    )


def _flex_block_mask(segments: Tensor, causal: bool):
    from torch.nn.attention.flex_attention import create_block_mask

    def same_segment(b, h, q_idx, kv_idx):
        return segments[b, q_idx] == segments[b, kv_idx]

    def same_segment_causal(b, h, q_idx, kv_idx):
        return (segments[b, q_idx] == segments[b, kv_idx]) & (q_idx >= kv_idx)

    batch, length = segments.shape
    mask_mod = same_segment_causal if causal else same_segment
    # On GPU the mask builder is compiled: otherwise it materialises B x T x T on the host side.
    return create_block_mask(
        mask_mod, batch, None, length, length, device=segments.device, _compile=segments.is_cuda
    )


_compiled_flex_attention = None


def _flex_attention(q: Tensor, k: Tensor, v: Tensor, block_mask, enable_gqa: bool) -> Tensor:
    from torch.nn.attention.flex_attention import flex_attention

    global _compiled_flex_attention
    if q.is_cuda and not torch.compiler.is_compiling():
        # Eager FlexAttention is a slow reference implementation; the compiled one is the kernel.
        # (Inside a compiled region, e.g. a compiled block, the plain call is compiled already.)
        if _compiled_flex_attention is None:
            _compiled_flex_attention = torch.compile(flex_attention, dynamic=False)
        return _compiled_flex_attention(q, k, v, block_mask=block_mask, enable_gqa=enable_gqa)
    return flex_attention(q, k, v, block_mask=block_mask, enable_gqa=enable_gqa)


def _varlen_attention(q: Tensor, k: Tensor, v: Tensor, layout: SequenceLayout) -> Tensor:
    batch, length, heads, dim = q.shape
    kv_heads = k.shape[2]
    # (B, T, H, D) -> (B*T, H, D): free for q and k (RoPE's outputs); v is a view into the fused
    # QKV projection, which the kernel needs compact.
    flat_q = q.reshape(batch * length, heads, dim)
    flat_k = k.reshape(batch * length, kv_heads, dim)
    flat_v = v.reshape(batch * length, kv_heads, dim).contiguous()
    varlen_attn, parameters = _varlen()
    options = {}
    if layout.causal:  # PyTorch 2.10 takes is_causal, later versions a (left, right) window
        options = {"window_size": (-1, 0)} if "window_size" in parameters else {"is_causal": True}
    if heads != kv_heads and "enable_gqa" in parameters:
        options["enable_gqa"] = True
    cu = layout.cu_seqlens
    out = varlen_attn(flat_q, flat_k, flat_v, cu, cu, length, length, **options)
    return out.view(batch, length, heads, dim)


def _softcapped_attention(q: Tensor, k: Tensor, v: Tensor, layout: SequenceLayout, scale: float | None,
                          softcap: float) -> Tensor:
    """Attention with ``softcap * tanh(scores / softcap)`` logits (Gemma 2): an explicit softmax,
    (B, H, T, D) in and out, since no fused kernel takes a soft-cap."""
    if q.shape[1] != k.shape[1]:
        groups = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores = (q @ k.transpose(-1, -2)).float() * scale  # (B, H, T, T)
    scores = torch.tanh(scores / softcap) * softcap
    allowed = layout.dense_mask
    if allowed is None and layout.causal:
        length = q.shape[2]
        allowed = torch.ones(length, length, dtype=torch.bool, device=q.device).tril()
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    return scores.softmax(dim=-1).to(v.dtype) @ v


def attend(q: Tensor, k: Tensor, v: Tensor, layout: SequenceLayout, *, scale: float | None = None,
           softcap: float | None = None) -> Tensor:
    """Scaled dot-product attention of (B, T, H, D) queries on (B, T, H_kv, D) keys/values; (B, T, H, D) out.

    ``scale`` (default head_dim**-0.5) and ``softcap`` are for imported decoders; sdpa only."""
    if softcap is not None:
        if layout.backend != "sdpa":
            raise ValueError(f"attention backend {layout.backend!r} does not support attention logit soft-capping")
        return _softcapped_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), layout, scale,
                                     softcap).transpose(1, 2)
    if scale is not None and layout.backend != "sdpa":
        raise ValueError(f"attention backend {layout.backend!r} does not support a non-default attention scale")
    if layout.backend == "varlen" and layout.cu_seqlens is not None:
        return _varlen_attention(q, k, v, layout)
    # The other kernels take (B, H, T, D): transposed views, no copies.
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    gqa = q.shape[1] != k.shape[1]
    if layout.backend == "flex" and layout.block_mask is not None:
        # Inductor's flex template misreads a value tensor that is a strided view into the fused
        # QKV output (seen on CPU with torch 2.13: wrong outputs under torch.compile); the copy is
        # small (T x kv_dim per row) and removes the hazard on every device.
        out = _flex_attention(q, k, v.contiguous(), layout.block_mask, gqa)
    elif layout.dense_mask is None:
        out = F.scaled_dot_product_attention(q, k, v, is_causal=layout.causal, enable_gqa=gqa, scale=scale)
    else:
        if gqa:
            # Memory-efficient SDPA kernels do not all take GQA with a mask; repeat KV heads instead.
            groups = q.shape[1] // k.shape[1]
            k = k.repeat_interleave(groups, dim=1)
            v = v.repeat_interleave(groups, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=layout.dense_mask, scale=scale)
    return out.transpose(1, 2)
