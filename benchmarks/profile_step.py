"""Where a pretraining step's time goes: phases on the device timeline and kernels by category.

Builds one row of ``pretrain_throughput.py`` (same model, batches, objective and optimizer), warms
it up, then

1. times the phases of ``--steps`` steps with device events (no synchronisation inside a step, so
   the GPU's own idle gaps stay in): encoder forward, LM head + cross-entropy (its forward pass
   also computes the head's gradients), backward, gradient clipping, optimizer;
2. profiles one more step with ``torch.profiler`` and sums the device time of every kernel by
   category (GEMM, attention, fused elementwise from inductor, optimizer, copies, ...), plus the
   device's idle time inside the step; writes the top kernels and a Chrome trace.

On a CPU the same runs with host timers and CPU operators, so the script is testable anywhere;
only GPU numbers say anything about GPU throughput.

    python benchmarks/profile_step.py --preset 210m --run mlm --out results/profile
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from encoderlab.io import atomic_write_text  # noqa: E402
import pretrain_throughput as bench  # noqa: E402

import encoderlab.objectives.objectives as objectives_module  # noqa: E402

PHASES = ("inputs", "encoder forward", "lm head + loss", "backward", "clip", "optimizer")

# First match wins. Kernel names differ across CUDA/cuBLAS/cuDNN versions, hence the loose patterns.
KERNEL_CATEGORIES = (
    ("attention", re.compile(r"flash|fmha|attention|flex|sdpa|cudnn.*(mha|attn)", re.I)),
    ("optimizer + clip (multi-tensor)", re.compile(r"adam|multi_tensor|foreach|fused_.*optim", re.I)),
    ("gemm", re.compile(r"gemm|cutlass|xmma|nvjet|cublas|sm\d+_.*(tn|nt|nn|tt)|\bmm\b|addmm|matmul|bmm"
                        r"|^triton_tem_fused_.*mm", re.I)),  # triton_tem_*mm: inductor's GEMM templates
    ("inductor fused", re.compile(r"^triton_")),
    ("copy / fill", re.compile(r"memcpy|memset|copy|fill|cat|index|gather|scatter|nonzero|where", re.I)),
    ("reduction / norm", re.compile(r"reduce|norm|sum|softmax|logsumexp|max", re.I)),
    ("elementwise", re.compile(r"elementwise|vectorized|unrolled|mul|add|exp|silu|sigmoid", re.I)),
)


def kernel_category(name: str) -> str:
    for category, pattern in KERNEL_CATEGORIES:
        if pattern.search(name):
            return category
    return "other"


class PhaseClock:
    """Device-timeline marks (CUDA events) or host timestamps (CPU) between phases of a step."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.marks: list[tuple[str, object]] = []

    def mark(self, label: str) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append((label, event))
        else:
            self.marks.append((label, time.perf_counter()))

    def durations_ms(self) -> dict[str, float]:
        if self.cuda:
            torch.cuda.synchronize()
        out: dict[str, float] = {}
        for (label, start), (_, end) in zip(self.marks, self.marks[1:]):
            ms = start.elapsed_time(end) if self.cuda else (end - start) * 1e3
            out[label] = out.get(label, 0.0) + ms
        return out


def instrumented_step(setup: bench.RunSetup, step: int, clock: PhaseClock, parameters) -> None:
    """One training step of an encoderlab row, with phase marks; the same work as ``train_step``."""
    original = objectives_module.linear_cross_entropy

    def timed_linear_cross_entropy(*args, **kwargs):
        clock.mark("lm head + loss")
        loss = original(*args, **kwargs)
        clock.mark("after head")
        return loss

    objectives_module.linear_cross_entropy = timed_linear_cross_entropy
    # "inputs": the objective's work before the model runs (MLM masking, prediction positions);
    # found by hand in a trace once (~10 ms of eager mask hashing at 210m), so it has its own row.
    hook = setup.model.register_forward_pre_hook(lambda module, args: clock.mark("encoder forward"))
    try:
        clock.mark("inputs")
        with setup.autocast:
            out = setup.objective(setup.model, setup.batches[step % len(setup.batches)], step)
            loss = out.loss_sum / out.num_targets
    finally:
        objectives_module.linear_cross_entropy = original
        hook.remove()
    clock.mark("backward")
    loss.backward()
    clock.mark("clip")
    torch.nn.utils.clip_grad_norm_(parameters, 1.0, foreach=clock.cuda)
    clock.mark("optimizer")
    setup.optimizer.step()
    setup.optimizer.zero_grad(set_to_none=True)
    clock.mark("end")


def phase_table(per_step: list[dict[str, float]]) -> dict[str, float]:
    """Median over steps of each phase's time; within a step, what follows the head in the
    model's forward call counts as encoder forward."""
    merged: dict[str, list[float]] = {}
    for durations in per_step:
        step = dict(durations)
        step["encoder forward"] = step.get("encoder forward", 0.0) + step.pop("after head", 0.0)
        for label, ms in step.items():
            merged.setdefault(label, []).append(ms)
    return {label: statistics.median(values) for label, values in merged.items()}


def kernel_summary(prof, device: torch.device) -> dict:
    """Device time per kernel and category (GPU), or self time per operator (CPU)."""
    cuda = device.type == "cuda"
    by_name: dict[str, dict] = {}
    intervals = []
    for event in prof.events():
        if cuda:
            # Kernels, copies and fills on the device; its user annotations span kernels already counted.
            if event.device_type != torch.autograd.DeviceType.CUDA or event.is_user_annotation:
                continue
            us = event.time_range.elapsed_us()
            intervals.append((event.time_range.start, event.time_range.end, event.name))
        else:
            if event.device_type != torch.autograd.DeviceType.CPU or event.is_user_annotation:
                continue
            us = event.self_cpu_time_total
        entry = by_name.setdefault(event.name, {"name": event.name, "category": kernel_category(event.name),
                                                "calls": 0, "ms": 0.0})
        entry["calls"] += 1
        entry["ms"] += us / 1e3
    categories: dict[str, float] = {}
    for entry in by_name.values():
        categories[entry["category"]] = categories.get(entry["category"], 0.0) + entry["ms"]
    summary = {
        "unit": "device kernel time" if cuda else "CPU operator self time",
        "total_ms": sum(categories.values()),
        "categories_ms": dict(sorted(categories.items(), key=lambda kv: -kv[1])),
        "top": sorted(by_name.values(), key=lambda e: -e["ms"])[:40],
    }
    if intervals:
        intervals.sort()
        busy, (start, end) = 0.0, intervals[0][:2]
        gaps = []  # (idle us, us since the first kernel, the kernel that ended the wait)
        for s, e, name in intervals[1:]:
            if s > end:
                busy += end - start
                gaps.append((s - end, s - intervals[0][0], name))
                start, end = s, e
            else:
                end = max(end, e)
        busy += end - start
        span = max(e for _, e, _ in intervals) - intervals[0][0]
        summary.update(span_ms=span / 1e3, busy_ms=busy / 1e3, idle_ms=(span - busy) / 1e3)
        summary["idle_gaps"] = [{"idle_ms": gap / 1e3, "at_ms": at / 1e3, "next_kernel": name}
                                for gap, at, name in sorted(gaps, reverse=True)[:8]]
    return summary


def markdown(result: dict) -> str:
    r = result["record"]
    lines = [
        f"Device: {result['env'].get('gpu', result['env']['device'])}; torch {result['env']['torch']}. "
        f"{r['preset']} {r['run']} ({r['attn_backend']}), micro-batch {r['micro_batch']} x {r['seq_len']}, "
        f"{'compiled' if r['compiled'] else 'eager'}, variant {bench.variant_label(r['variant'])}.",
        "",
        f"Step (median of {result['timed_steps']}): {result['step_ms']:.2f} ms, "
        f"{result['tokens_per_s']:,.0f} tokens/s.",
        "",
        "| phase | ms (median) | share |",
        "|---|---|---|",
    ]
    total = sum(result["phases_ms"].values())
    for label in PHASES:
        if label in result["phases_ms"]:
            ms = result["phases_ms"][label]
            lines.append(f"| {label} | {ms:.2f} | {ms / total:.1%} |")
    k = result["kernels"]
    lines += ["", f"Profiled step, {k['unit']}: {k['total_ms']:.2f} ms"]
    if "idle_ms" in k:
        lines[-1] += f" busy over a {k['span_ms']:.2f} ms span; device idle {k['idle_ms']:.2f} ms"
    if k.get("idle_gaps"):
        lines += ["", "Longest idle gaps on the device (the profiler's own host overhead widens them):", "",
                  "| idle ms | at ms | next kernel |", "|---|---|---|"]
        for gap in k["idle_gaps"]:
            name = gap["next_kernel"].replace("|", "/")
            lines.append(f"| {gap['idle_ms']:.2f} | {gap['at_ms']:.1f} | `{name[:90]}` |")
    lines += ["", "| category | ms | share |", "|---|---|---|"]
    for category, ms in k["categories_ms"].items():
        lines.append(f"| {category} | {ms:.2f} | {ms / k['total_ms']:.1%} |")
    lines += ["", "| kernel / operator | category | calls | ms |", "|---|---|---|---|"]
    for entry in k["top"][:25]:
        name = entry["name"].replace("|", "/")
        lines.append(f"| `{name[:110]}` | {entry['category']} | {entry['calls']} | {entry['ms']:.2f} |")
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    on_gpu = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="210m" if on_gpu else "tiny")
    parser.add_argument("--run", default="mlm", help="an encoderlab run of pretrain_throughput.py (not hf)")
    parser.add_argument("--variant", default="", help="key=value[:key=value...], as in pretrain_throughput --extra")
    parser.add_argument("--eager", action="store_true", help="do not compile the blocks")
    parser.add_argument("--warmup", type=int, default=3 if on_gpu else 1)
    parser.add_argument("--steps", type=int, default=5 if on_gpu else 2)
    bench.add_row_arguments(parser, on_gpu, cpu_seq_len=128, cpu_mean_doc_length=50)
    parser.add_argument("--trace", action="store_true", help="also write the Chrome trace (gzip)")
    parser.add_argument("--out", default=os.environ.get("OUT", "benchmarks/results/latest"))
    args = parser.parse_args(argv)
    if args.run not in bench.RUN_KINDS or bench.RUN_KINDS[args.run][0] != "encoderlab":
        parser.error(f"--run: expected an encoderlab run, one of "
                     f"{', '.join(k for k, v in bench.RUN_KINDS.items() if v[0] == 'encoderlab')}; got {args.run!r}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    variant = bench.parse_variant([p for p in args.variant.split(":") if p])
    if variant.get("scope") == "model":  # the phase marks sit between the encoder and the loss
        raise SystemExit("profile_step: --variant scope=model compiles the loss into the model; phases cannot be "
                         "split there (profile it with pretrain_throughput.py instead)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    setup = bench.setup_run(args, args.preset, args.run, not args.eager, device, variant)
    parameters = [p for p in setup.model.parameters() if p.requires_grad]
    for step in range(args.warmup):
        setup.train_step(step)
    if device.type == "cuda":
        torch.cuda.synchronize()

    per_step, step_ms = [], []
    for step in range(args.warmup, args.warmup + args.steps):
        clock = PhaseClock(device)
        t0 = time.perf_counter()
        instrumented_step(setup, step, clock, parameters)
        durations = clock.durations_ms()  # synchronises
        step_ms.append((time.perf_counter() - t0) * 1e3)
        per_step.append(durations)

    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        setup.train_step(args.warmup + args.steps)
        if device.type == "cuda":
            torch.cuda.synchronize()
    median_ms = statistics.median(step_ms)
    record = setup.record
    result = {
        "env": bench.environment(device), "record": record, "timed_steps": args.steps,
        "step_ms": median_ms, "tokens_per_s": record["micro_batch"] * record["seq_len"] / (median_ms / 1e3),
        "phases_ms": phase_table(per_step), "kernels": kernel_summary(prof, device),
    }
    atomic_write_text(out / "profile.json", json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    atomic_write_text(out / "profile.md", table)
    if args.trace:
        raw, packed = out / ".trace.json.tmp", out / ".trace.json.gz.tmp"
        prof.export_chrome_trace(str(raw))
        with open(raw, "rb") as src, gzip.open(packed, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(packed, out / "trace.json.gz")  # complete or absent, never half-written
        raw.unlink()
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
