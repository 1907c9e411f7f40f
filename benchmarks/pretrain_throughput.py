"""Pretraining-step throughput: encoderlab against Hugging Face ``LlamaForCausalLM``, same process.

Each run builds a model, trains it for ``--warmup`` + ``--steps`` optimizer steps on random tokens
(bf16 autocast on GPU, fp32 on CPU, fused AdamW where available, grad clipping 1.0) and reports
tokens/s (median over the timed steps), MFU (performance.md section 1.2 formula, head fraction f
stated) and peak memory. The baseline is re-measured in the same process on the same device.

encoderlab runs use the real training layout: rows packed with documents (mean length about
1,030 tokens as in the paper), attention isolated per document. ``plain`` runs feed the same
tokens as one sequence per row (full attention) to measure what document isolation costs.

    python benchmarks/pretrain_throughput.py                        # GPU: paper presets; CPU: tiny/mini
    python benchmarks/pretrain_throughput.py --presets 610m --runs mlm,clm,hf --out results/

Results are appended run by run to ``throughput.jsonl`` and summarised in ``throughput.json`` and
``throughput.md`` in ``--out``, so an interrupted benchmark keeps what it measured.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import signal
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Fewer out-of-memory failures from fragmentation when runs of different sizes share a process.
os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from encoderlab.io import atomic_write_text  # noqa: E402
from encoderlab.model import Encoder, ModelConfig, document_ids_from_lengths  # noqa: E402
from encoderlab.objectives import CLMObjective, MLMObjective, TokenBatch  # noqa: E402
from encoderlab.training.metrics import peak_bf16_flops as peak_flops  # noqa: E402

# performance.md section 9: measured on an H100 80GB, PyTorch 2.11, micro-batch 12 x 2048, compiled.
DOCUMENTED_BASELINES = {
    "optimus_mlm_compiled": {"210m": 266_033, "610m": 97_527, "1b": 55_197},
    "hf_llama_clm_compiled": {"210m": 237_081, "610m": 86_840, "1b": 49_095},
}

# name -> (model code, objective, document layout, attention backend; None = the model's "auto")
RUN_KINDS = {
    "mlm": ("encoderlab", "mlm", "documents", None),
    "clm": ("encoderlab", "clm", "documents", None),
    "mlm-flex": ("encoderlab", "mlm", "documents", "flex"),
    "mlm-dense": ("encoderlab", "mlm-dense", "documents", None),  # LM head at every position, as Optimus
    "clm-flex": ("encoderlab", "clm", "documents", "flex"),
    "mlm-plain": ("encoderlab", "mlm", "plain", None),
    "clm-plain": ("encoderlab", "clm", "plain", None),
    "hf": ("hf-llama", "clm", "plain", None),
}


def document_lengths(rows: int, seq_len: int, generator: torch.Generator, mean_length: int) -> list[list[int]]:
    """Rows filled with documents of random lengths (uniform in [64, 2 * mean - 64]); the last is cut."""
    low, high = min(64, seq_len), max(min(64, seq_len) + 1, 2 * mean_length - 64)
    lengths = []
    for _ in range(rows):
        row, left = [], seq_len
        while left > 0:
            n = int(torch.randint(low, high, (1,), generator=generator))
            row.append(min(n, left))
            left -= row[-1]
        lengths.append(row)
    return lengths


def make_batches(config: ModelConfig, rows: int, seq_len: int, count: int, device, mean_doc: int, layout: str):
    generator = torch.Generator().manual_seed(1234)
    batches = []
    for i in range(count):
        # Random ids above the special range: never all-zero data (performance.md section 7).
        ids = torch.randint(16, config.vocab_size, (rows, seq_len), generator=generator)
        docs = None
        if layout == "documents":
            docs = document_ids_from_lengths(document_lengths(rows, seq_len, generator, mean_doc), seq_len)
        sample_index = torch.arange(i * rows, (i + 1) * rows)
        batches.append(TokenBatch(ids, sample_index, docs).to(device))
    return batches


# Options a row may vary (``--extra PRESET:RUN:key=value``), to A/B a change in one process.
VARIANT_DEFAULTS = {"ce_chunk": 4096, "scope": "blocks", "mode": "default", "residual": "fp32", "cat_inputs": 0}
COMPILE_SCOPES = ("blocks", "model")
# residual=bf16: the residual stream in the autocast dtype (Megatron's default) instead of fp32; the
# embedding output is cast, so every block adds and normalises bf16 (an A/B of the idea, not a model option yet).
RESIDUAL_DTYPES = ("fp32", "bf16")
# cat_inputs=N: inductor writes a concatenation of more than N inputs through a ConcatKernel (each
# input's kernel stores into its slice) instead of one pointwise kernel with a masked load per
# input (0: inductor's default, 8). Aimed at RoPE's backward, which reassembles the fused QKV
# gradient from dq, dk, dv in one such kernel and ran at ~540 GB/s on an H100 (2026-11-26).


def parse_variant(parts: list[str]) -> dict:
    variant = {}
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep or key not in VARIANT_DEFAULTS:
            raise SystemExit(f"--extra: expected key=value with key in {sorted(VARIANT_DEFAULTS)}, got {part!r}")
        if key in ("ce_chunk", "cat_inputs"):
            if not value.isdigit() or int(value) <= 0:
                raise SystemExit(f"--extra: {key} must be a positive integer, got {value!r}")
            variant[key] = int(value)
        elif key == "scope" and value not in COMPILE_SCOPES:
            raise SystemExit(f"--extra: scope must be one of {COMPILE_SCOPES}, got {value!r}")
        elif key == "residual" and value not in RESIDUAL_DTYPES:
            raise SystemExit(f"--extra: residual must be one of {RESIDUAL_DTYPES}, got {value!r}")
        else:
            variant[key] = value
    return variant


def build_encoderlab(config: ModelConfig, device: torch.device, compiled: bool, scope: str = "blocks",
                     mode: str = "default", residual: str = "fp32"):
    with torch.device("meta"):
        model = Encoder(config)
    model = model.to_empty(device=device)
    model.reset_parameters()
    model.reset_rope()
    if residual == "bf16":
        model.embed.register_forward_hook(_to_autocast_dtype)
    if compiled and scope == "blocks":
        for layer in model.layers:  # regional compilation: one graph, reused by every block
            layer.compile(mode=mode)
    elif compiled:  # the whole forward, LM head and loss included (graph breaks where it must)
        return torch.compile(model, mode=mode)
    return model


def _to_autocast_dtype(module, inputs, output):
    device_type = output.device.type
    return output.to(torch.get_autocast_dtype(device_type)) if torch.is_autocast_enabled(device_type) else output


def inductor_options(cat_inputs: int) -> dict:
    """``torch._inductor.config`` values of a row (only the names this PyTorch has)."""
    if not cat_inputs:
        return {}
    import torch._inductor.config as inductor_config

    names = ("max_pointwise_cat_inputs", "max_complex_pointwise_cat_inputs")
    return {name: cat_inputs for name in names if hasattr(inductor_config, name)}


def build_hf_llama(config: ModelConfig, device: torch.device, compiled: bool):
    from transformers import LlamaConfig, LlamaForCausalLM

    hf_config = LlamaConfig(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers, num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads, head_dim=config.head_dim,
        max_position_embeddings=config.max_position_embeddings, rms_norm_eps=config.norm_eps,
        tie_word_embeddings=False, attention_bias=False, mlp_bias=False, use_cache=False,
    )
    hf_config._attn_implementation = "sdpa"
    with torch.device(device):
        model = LlamaForCausalLM(hf_config)
    model.train()
    return torch.compile(model) if compiled else model


@dataclass
class RunSetup:
    """A built row: ``train_step(step)`` runs one optimizer step and returns the loss tensor."""

    record: dict
    config: ModelConfig
    model: torch.nn.Module
    objective: object  # CLMObjective / MLMObjective, None for the HF baseline
    optimizer: torch.optim.Optimizer
    batches: list
    autocast: object
    train_step: Callable[[int], torch.Tensor]


def describe_run(args, preset: str, kind: str, compiled: bool, device: torch.device, variant: dict | None = None):
    """The record (what is measured) and model config of one row; allocates nothing."""
    code, objective_name, layout, backend = RUN_KINDS[kind]
    config = ModelConfig.from_name(preset)
    if args.vocab_size:
        config = config.replace(vocab_size=args.vocab_size)
    if code == "encoderlab" and (backend or args.attn_backend):
        config = config.replace(attn_backend=backend or args.attn_backend)
    rows, seq_len = args.micro_batch, args.seq_len or config.max_position_embeddings
    record = {
        "preset": preset, "run": kind, "code": code, "objective": objective_name, "layout": layout,
        "compiled": compiled, "micro_batch": rows, "seq_len": seq_len,
        "mask_ratio": args.mask_ratio if objective_name.startswith("mlm") else None,
        "head_fraction": args.mask_ratio if objective_name == "mlm" else 1.0,
        "variant": {k: v for k, v in (variant or {}).items() if v != VARIANT_DEFAULTS[k]},
    }
    if code == "encoderlab":
        from encoderlab.model.attention import resolve_backend

        record["attn_backend"] = "sdpa" if layout == "plain" else resolve_backend(config.attn_backend, device)
    else:
        record["attn_backend"] = "sdpa"
    return record, config


def setup_run(args, preset: str, kind: str, compiled: bool, device: torch.device, variant: dict | None = None):
    """Builds model, optimizer, batches and the step function of one benchmark row."""
    record, config = describe_run(args, preset, kind, compiled, device, variant)
    code, objective_name, layout, _ = RUN_KINDS[kind]
    options = {**VARIANT_DEFAULTS, **(variant or {})}
    rows, seq_len = record["micro_batch"], record["seq_len"]
    use_cuda = device.type == "cuda"
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if use_cuda else torch.autocast("cpu", enabled=False)
    torch.manual_seed(0)
    if code == "encoderlab":
        model = build_encoderlab(config, device, compiled, options["scope"], options["mode"], options["residual"])
        if objective_name.startswith("mlm"):
            objective = MLMObjective(
                args.mask_ratio, mask_token_id=config.mask_token_id if config.mask_token_id is not None else 3,
                vocab_size=config.vocab_size, special_token_ids=tuple(range(16)),
                sparse_head=objective_name == "mlm", chunk_size=options["ce_chunk"],
            )
        else:
            objective = CLMObjective(chunk_size=options["ce_chunk"])
    else:
        model, objective = build_hf_llama(config, device, compiled), None
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=5e-4, betas=(0.9, 0.95), eps=1e-5, weight_decay=0.1, fused=use_cuda,
    )
    batches = make_batches(config, rows, seq_len, args.distinct_batches, device, args.mean_doc_length, layout)
    parameters = [p for p in model.parameters() if p.requires_grad]
    compile_options = inductor_options(options["cat_inputs"])

    def train_step(step: int) -> torch.Tensor:
        # inductor reads its config when it compiles (forward and backward graphs, in the first
        # steps); patched per call, so it never leaks into the next row
        with torch._inductor.config.patch(compile_options) if compile_options else contextlib.nullcontext():
            return _train_step(step)

    def _train_step(step: int) -> torch.Tensor:
        batch = batches[step % len(batches)]
        with autocast:
            if code == "encoderlab":
                out = objective(model, batch, step)
                loss = out.loss_sum / out.num_targets
            else:
                loss = model(input_ids=batch.input_ids, labels=batch.input_ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0, foreach=use_cuda)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    return RunSetup(record, config, model, objective, optimizer, batches, autocast, train_step)


def release(device: torch.device) -> None:
    """Frees what the previous row left on the device and resets compiled graphs."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    torch._dynamo.reset()


def run_one(args, preset: str, kind: str, compiled: bool, device: torch.device, variant: dict | None = None) -> dict:
    use_cuda = device.type == "cuda"
    record, config = describe_run(args, preset, kind, compiled, device, variant)
    rows, seq_len = record["micro_batch"], record["seq_len"]
    setup = train_step = None
    try:
        if use_cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        setup = setup_run(args, preset, kind, compiled, device, variant)
        record, train_step = setup.record, setup.train_step
        times, losses = [], []
        start_all = time.perf_counter()
        for step in range(args.warmup + args.steps):
            if use_cuda:
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            loss = train_step(step)
            if use_cuda:
                torch.cuda.synchronize(device)
            elapsed = time.perf_counter() - t0
            losses.append(loss.item())
            if step >= args.warmup:
                times.append(elapsed)
        record["wall_s"] = round(time.perf_counter() - start_all, 2)
        median = statistics.median(times)
        tokens_per_s = rows * seq_len / median
        record.update(
            status="ok", step_s_median=median, step_s_min=min(times), step_s_max=max(times), timed_steps=len(times),
            tokens_per_s=tokens_per_s, first_loss=losses[0], last_loss=losses[-1],
        )
        flops = config.flops_per_token(seq_len, head_fraction=record["head_fraction"])
        record["flops_per_token"] = flops
        peak = peak_flops(device)
        record["mfu"] = tokens_per_s * flops / peak if peak else None
        if not all(math.isfinite(x) for x in losses):
            record["status"] = "non-finite loss"
    except torch.OutOfMemoryError:
        record["status"] = "OOM"
    except Exception as err:  # a benchmark row that failed is reported, not fatal for the others
        record["status"] = f"error: {type(err).__name__}: {err}"[:500]
        record["traceback"] = traceback.format_exc()[-3000:]
    finally:
        if use_cuda:
            record["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        setup = train_step = None  # free GPU memory before the next row
        release(device)
    return record


def environment(device: torch.device) -> dict:
    import transformers

    env = {
        "torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version(),
        "device": str(device), "host": platform.node(), "cpu_count": os.cpu_count(),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
        env["peak_bf16_flops"] = peak_flops(device)
    return env


def summarise(records: list[dict]) -> list[dict]:
    """Adds ratios: vs the same-run HF baseline, the documented baselines, and plain attention."""
    by_key = {(r["preset"], r["run"], r["compiled"]): r for r in records if r.get("status") == "ok" and not r["variant"]}
    for r in records:
        if r.get("status") != "ok" or r["code"] != "encoderlab":
            continue
        hf = by_key.get((r["preset"], "hf", r["compiled"]))
        if hf:
            r["ratio_vs_hf_same_run"] = r["tokens_per_s"] / hf["tokens_per_s"]
        if r["micro_batch"] == 12 and r["seq_len"] == 2048 and r["layout"] == "documents":
            table = "optimus_mlm_compiled" if r["objective"].startswith("mlm") else "hf_llama_clm_compiled"
            documented = DOCUMENTED_BASELINES[table].get(r["preset"])
            if documented:
                r["ratio_vs_documented"] = r["tokens_per_s"] / documented
                r["documented_baseline"] = table
        base = by_key.get((r["preset"], r["run"], r["compiled"]))
        if r["variant"] and base:
            r["ratio_vs_base_variant"] = r["tokens_per_s"] / base["tokens_per_s"]
        plain = by_key.get((r["preset"], f"{r['objective']}-plain", r["compiled"]))
        if plain and r["layout"] == "documents":
            r["document_isolation_cost"] = 1 - r["tokens_per_s"] / plain["tokens_per_s"]
    return records


def variant_label(variant: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(variant.items())) or "base"


def markdown(records: list[dict], env: dict) -> str:
    lines = [
        f"Device: {env.get('gpu', env['device'])}; torch {env['torch']}, transformers {env['transformers']}.",
        "",
        "| preset | run | variant | code | objective | layout | attention | compiled | tokens/s | MFU | f | peak GiB "
        "| vs HF same run | vs documented | vs base | isolation cost | status |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def fmt(value, spec):
        return "" if value is None else format(value, spec)

    for r in records:
        lines.append(
            f"| {r['preset']} | {r['run']} | {variant_label(r['variant'])} | {r['code']} | {r['objective']} | "
            f"{r['layout']} | {r['attn_backend']} | "
            f"{'yes' if r['compiled'] else 'no'} | {fmt(r.get('tokens_per_s'), ',.0f')} | "
            f"{fmt(r.get('mfu'), '.1%')} | {r['head_fraction']} | {fmt(r.get('peak_memory_gib'), '.1f')} | "
            f"{fmt(r.get('ratio_vs_hf_same_run'), '.2f')} | {fmt(r.get('ratio_vs_documented'), '.2f')} | "
            f"{fmt(r.get('ratio_vs_base_variant'), '.3f')} | "
            f"{fmt(r.get('document_isolation_cost'), '+.1%')} | {r['status'][:60]} |"
        )
    return "\n".join(lines) + "\n"


def add_row_arguments(parser: argparse.ArgumentParser, on_gpu: bool, cpu_seq_len: int, cpu_mean_doc_length: int):
    """What ``describe_run``/``setup_run`` read: the batch, its documents, the model's overrides."""
    parser.add_argument("--micro-batch", type=int, default=12 if on_gpu else 4)
    parser.add_argument("--seq-len", type=int, default=2048 if on_gpu else cpu_seq_len)
    parser.add_argument("--mask-ratio", type=float, default=0.4)
    parser.add_argument("--mean-doc-length", type=int, default=1030 if on_gpu else cpu_mean_doc_length)
    parser.add_argument("--distinct-batches", type=int, default=4)
    parser.add_argument("--vocab-size", type=int, default=None, help="override the presets' vocabulary")
    parser.add_argument("--attn-backend", default=None, choices=["auto", "sdpa", "flex", "varlen"])


def parse_args(argv=None):
    on_gpu = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="610m,1b,210m" if on_gpu else "tiny,mini")
    parser.add_argument("--runs", default="hf,mlm,clm", help=f"comma list of {', '.join(RUN_KINDS)}")
    parser.add_argument("--extra", default="610m:mlm-plain,610m:clm-plain" if on_gpu else "",
                        help="extra PRESET:RUN[:eager][:key=value...] rows measured after the main ones; keys: "
                             f"{', '.join(f'{k} (default {v})' for k, v in VARIANT_DEFAULTS.items())}")
    parser.add_argument("--modes", default="compiled" if on_gpu else "eager", help="compiled, eager or both")
    parser.add_argument("--steps", type=int, default=10 if on_gpu else 3)
    parser.add_argument("--warmup", type=int, default=3 if on_gpu else 1)
    add_row_arguments(parser, on_gpu, cpu_seq_len=256, cpu_mean_doc_length=100)
    parser.add_argument("--budget-s", type=float, default=None, help="start no new run after this many seconds")
    parser.add_argument("--out", default=os.environ.get("OUT", "benchmarks/results/latest"))
    return parser.parse_args(argv)


def measure_plan(args, plan, device, env, records: list, log, started: float) -> None:
    """Measures the rows of ``plan`` in order, appending each to ``records`` and the JSONL log."""
    for preset, run, compiled, variant in plan:
        if args.budget_s and time.perf_counter() - started > args.budget_s:
            print(f"budget of {args.budget_s}s spent: skipping {preset} {run} {variant_label(variant)}", flush=True)
            continue
        record = run_one(args, preset, run, compiled, device, variant)
        record["env"] = env
        records.append(record)
        log.write(json.dumps(record) + "\n")
        log.flush()
        print(
            f"{preset:>5} {run:<10} {variant_label(variant):<12} {'compiled' if compiled else 'eager':<8} "
            f"{record['status'][:80]:<12} "
            f"tok/s={record.get('tokens_per_s', 0):,.0f} mfu={record.get('mfu') or 0:.1%} "
            f"peak={record.get('peak_memory_gib', 0):.1f}GiB wall={record.get('wall_s', 0)}s "
            f"t={time.perf_counter() - started:.0f}s",
            flush=True,
        )
        if record.get("traceback"):
            print(record["traceback"], flush=True)


def parse_extra(item: str) -> tuple[str, str, bool, dict]:
    """``PRESET:RUN[:eager|:compiled][:key=value...]`` -> (preset, run, compiled, variant)."""
    parts = item.split(":")
    if len(parts) < 2:
        raise SystemExit(f"--extra: expected PRESET:RUN[:eager][:key=value...], got {item!r}")
    flags = [p for p in parts[2:] if p in ("eager", "compiled")]
    variant = parse_variant([p for p in parts[2:] if p not in ("eager", "compiled")])
    return parts[0], parts[1], "eager" not in flags, variant


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    modes = {"compiled": [True], "eager": [False], "both": [True, False]}[args.modes]
    plan = [(p, run, c, {}) for p in args.presets.split(",") for c in modes for run in args.runs.split(",")]
    for item in filter(None, args.extra.split(",")):
        plan.append(parse_extra(item))
    for _, run, _, _ in plan:
        if run not in RUN_KINDS:
            raise SystemExit(f"--runs/--extra: unknown run {run!r}; expected one of {', '.join(RUN_KINDS)}")
    env = environment(device)
    print(json.dumps(env), flush=True)
    # A time limit's SIGINT must stop the plan even when this process inherited SIGINT ignored (a
    # shell starts background jobs so, e.g. `nohup ... &`), or the rows would run on past the limit.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    records = []
    started = time.perf_counter()
    with open(out / "throughput.jsonl", "a") as log:
        try:
            measure_plan(args, plan, device, env, records, log, started)
        except KeyboardInterrupt:  # e.g. a time limit's SIGINT: keep and summarise what was measured
            print(f"interrupted after {len(records)} rows; writing what was measured", flush=True)
    records = summarise(records)
    atomic_write_text(out / "throughput.json", json.dumps({"env": env, "records": records}, indent=2) + "\n")
    table = markdown(records, env)
    atomic_write_text(out / "throughput.md", table)
    print(table)
    return 0 if all(r["status"] == "ok" for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
