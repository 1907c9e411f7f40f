"""Numerical checks that need a GPU: the fast paths against the portable ones, forward and backward.

- FlexAttention and varlen flash attention (compiled blocks, packed documents) vs SDPA with a
  dense mask (eager): hidden states and every parameter gradient, causal and bidirectional,
  head dims 64 and 96. Flex runs in fp32; varlen (flash kernels: half precision only) under
  bf16 autocast against the same SDPA model under bf16 autocast.
- The compiled chunk kernel of ``linear_cross_entropy`` vs ``F.cross_entropy`` on full logits, in
  fp32 and under bf16 autocast (where the head's fp32 gradient is accumulated inside the GEMM).
- The compiled MLM mask hash against the eager one on the GPU and the CPU: bit-identical.

Prints one line per check and exits non-zero if any check fails. CPU tests cover the forward
pass of the same comparisons (eager FlexAttention has no CPU backward).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from encoderlab.io import atomic_write_text  # noqa: E402
from encoderlab.model import ModelConfig, build_encoder, document_ids_from_lengths  # noqa: E402
from encoderlab.objectives import linear_cross_entropy  # noqa: E402
from encoderlab.objectives import cross_entropy as cross_entropy_module  # noqa: E402
from encoderlab.objectives import masking  # noqa: E402


def max_rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


def check_attention(backend: str, head_dim: int, mode: str) -> dict:
    device = torch.device("cuda")
    config = ModelConfig.from_name("tiny", head_dim=head_dim, hidden_size=18 * 8, num_heads=18, num_kv_heads=6,
                                   vocab_size=1000, max_position_embeddings=1024)
    ref = build_encoder(config.replace(attn_backend="sdpa"), seed=0).to(device)
    fast = build_encoder(config.replace(attn_backend=backend), seed=0).to(device)
    for layer in fast.layers:
        layer.compile()
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 1000, (3, 512), generator=generator).to(device)
    docs = document_ids_from_lengths([[200, 312], [512], [100, 150, 200]], 512).to(device)
    half = backend == "varlen"
    results = {}
    for name, model in (("sdpa", ref), (backend, fast)):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=half):
            out = model(tokens, attention=mode, document_ids=docs).hidden_states
        (out.float().pow(2).mean()).backward()
        # the LM head takes no part in hidden states: its gradient stays None
        grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
        results[name] = (out.detach().float(), grads)
    assert results[backend][1].keys() == results["sdpa"][1].keys()
    hidden_diff = max_rel_diff(results[backend][0], results["sdpa"][0])
    grad_diff = max(max_rel_diff(results[backend][1][n], results["sdpa"][1][n]) for n in results["sdpa"][1])
    # fp32 (flex): expect ~1e-6; bf16 (varlen vs bf16 SDPA): rounding differences of ~1e-2
    hidden_tol, grad_tol = (5e-2, 1e-1) if half else (1e-3, 1e-2)
    return {"check": f"{backend} vs sdpa, head_dim {head_dim}, {mode}", "hidden_rel": hidden_diff,
            "grad_rel": grad_diff, "ok": hidden_diff < hidden_tol and grad_diff < grad_tol}


def check_cross_entropy(bf16: bool) -> dict:
    """The chunked loss against ``F.cross_entropy`` on full logits: in fp32, or under bf16 autocast
    (where the head's fp32 gradient is accumulated inside the GEMM) against fp32 math on the same
    bf16-rounded operands."""
    device = torch.device("cuda")
    generator = torch.Generator(device=device).manual_seed(1 if bf16 else 0)
    hidden = torch.randn(5000, 256, device=device, generator=generator, requires_grad=True)
    weight = (0.05 * torch.randn(32000, 256, device=device, generator=generator)).requires_grad_()
    targets = torch.randint(0, 32000, (5000,), device=device, generator=generator)
    targets[::7] = -100
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
        ours = linear_cross_entropy(hidden, weight, targets, chunk_size=1024)
    ours.backward()
    grads = hidden.grad.clone(), weight.grad.clone()
    if bf16:
        h, w = hidden.detach().bfloat16().float(), weight.detach().bfloat16().float()
    else:
        h, w = hidden.detach(), weight.detach()
    h, w = h.clone().requires_grad_(), w.clone().requires_grad_()
    ref = F.cross_entropy(h @ w.T, targets, reduction="sum")
    ref.backward()
    loss_rel = abs(ours.item() - ref.item()) / abs(ref.item())
    grad_rel = max(max_rel_diff(grads[0], h.grad), max_rel_diff(grads[1], w.grad))
    if bf16:
        fused = cross_entropy_module._gemm_accumulates_fp32(device, torch.bfloat16)
        name = f"linear_cross_entropy under bf16 autocast vs fp32 reference (fp32 accumulation in GEMM: {fused})"
        loss_tol, grad_tol = 1e-3, 2e-2
    else:
        name, loss_tol, grad_tol = "linear_cross_entropy (compiled chunk kernel) vs F.cross_entropy, fp32", 1e-4, 1e-3
    return {"check": name, "loss_rel": loss_rel, "grad_rel": grad_rel,
            "ok": loss_rel < loss_tol and grad_rel < grad_tol}


def check_mask_hash() -> dict:
    sample_index = torch.tensor([0, 5, 2**33 + 7, 123_456_789_012], device="cuda")
    mismatches = 0
    for step in (0, 1, 977, 2**31 + 3):
        gpu = masking.counter_uniforms(42, sample_index, step, 2048, (0, 1, 2))  # compiled on CUDA
        cpu = masking.counter_uniforms(42, sample_index.cpu(), step, 2048, (0, 1, 2))  # eager
        mismatches += int(not torch.equal(gpu.cpu(), cpu))
    compiled_used = masking._compiled not in (None, False) and masking._verified
    return {"check": "MLM mask hash: compiled (CUDA) vs eager (CPU), bit-identical",
            "mismatches": mismatches, "compiled": compiled_used, "ok": mismatches == 0 and compiled_used}


def main() -> int:
    if not torch.cuda.is_available():
        print("gpu_checks: no CUDA device; nothing to check")
        return 0
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    checks = []
    for backend, head_dims in (("varlen", (64, 96)), ("flex", (64,))):
        for head_dim in head_dims:
            for mode in ("causal", "bidirectional"):
                try:
                    checks.append(check_attention(backend, head_dim, mode))
                except Exception as err:  # report and go on
                    checks.append({"check": f"{backend} vs sdpa, head_dim {head_dim}, {mode}", "ok": False,
                                   "error": repr(err)[:400]})
                print(json.dumps(checks[-1]), flush=True)
    for name, check in (("linear_cross_entropy fp32", lambda: check_cross_entropy(bf16=False)),
                        ("linear_cross_entropy bf16", lambda: check_cross_entropy(bf16=True)),
                        ("mask hash", check_mask_hash)):
        try:
            checks.append(check())
        except Exception as err:
            checks.append({"check": name, "ok": False, "error": repr(err)[:400]})
        print(json.dumps(checks[-1]), flush=True)
    out = Path(os.environ.get("OUT", "benchmarks/results/latest"))
    atomic_write_text(out / "gpu_checks.json", json.dumps(checks, indent=2) + "\n")
    return 0 if all(c["ok"] for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
