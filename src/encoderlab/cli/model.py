"""``encoderlab model list|info``, ``encoderlab export`` and ``encoderlab import``: the model presets, and the dimensions, parameter
counts and FLOPs of a preset, a model YAML file, an encoderlab checkpoint or a Hugging Face model
directory; checkpoints to and from Hugging Face and sentence-transformers formats."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from encoderlab.config import ConfigError
from encoderlab.cli.common import show_help
from encoderlab.validate import NONNEGATIVE_INT, POSITIVE_INT


def add_parsers(commands) -> None:
    model = commands.add_parser("model", help="model presets and their sizes")
    model_commands = model.add_subparsers(dest="model_command", metavar="SUBCOMMAND")
    listing = model_commands.add_parser("list", help="list the model presets")
    listing.set_defaults(func=cmd_model_list)
    info = model_commands.add_parser("info", help="dimensions, parameter counts and FLOPs of a preset or YAML config")
    info.add_argument("preset", help="preset name (see `encoderlab model list`), a model YAML file, an encoderlab "
                                     "checkpoint or a Hugging Face model directory")
    info.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field")
    info.add_argument("--seq-len", type=POSITIVE_INT, default=None, help="sequence length for FLOPs (default: max positions)")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=cmd_model_info)
    show_help(model)

    export = commands.add_parser(
        "export", help="export an encoderlab checkpoint to a Hugging Face or sentence-transformers format",
        description="Targets: eurobert (transformers' EuroBertForMaskedLM, bidirectional), llama (LlamaForCausalLM, "
                    "decoder use), sentence-transformers (a SentenceTransformer folder: the EuroBERT export, mean "
                    "pooling, prompts query='Query: ' and document='Document: '). Models imported from other decoder "
                    "families (Mistral sliding windows, Qwen2 biases, Qwen3/OLMo 2 q/k norms, Gemma 2/3) are "
                    "refused: no transformers class runs those architectures bidirectionally, so their encoderlab "
                    "checkpoint stays the evaluation path.")
    export.add_argument("checkpoint", help="encoderlab checkpoint directory")
    export.add_argument("output", help="output directory (written atomically)")
    export.add_argument("--target", choices=["eurobert", "llama", "sentence-transformers"], default="eurobert",
                        help="EuroBertForMaskedLM (bidirectional use), LlamaForCausalLM (decoder use) or a "
                             "sentence-transformers folder (mean pooling, IR prompts)")
    export.add_argument("--tokenizer", help="directory with tokenizer files to include")
    export.add_argument("--overwrite", action="store_true")
    export.set_defaults(func=cmd_export)

    imp = commands.add_parser("import", help="import a local Hugging Face EuroBERT or Llama-architecture checkpoint")
    imp.add_argument("hf_dir", help="local Hugging Face model directory (safetensors weights)")
    imp.add_argument("output", help="encoderlab checkpoint directory to write")
    imp.add_argument("--mask-token-id", type=NONNEGATIVE_INT, help="mask token id to record (decoders have none)")
    imp.add_argument("--overwrite", action="store_true")
    imp.set_defaults(func=cmd_import)


def model_config(spec: str, overrides: list[str] | None = None):
    """A model config from a preset name or a YAML file, with ``key=value`` overrides."""
    import yaml

    from encoderlab.model import ModelConfig  # start-up: loads torch

    changes = {}
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        changes[key] = yaml.safe_load(value)
    if Path(spec).is_dir():  # an encoderlab checkpoint or a Hugging Face model directory
        config = _directorymodel_config(Path(spec))
        return ModelConfig.from_dict({**config.to_dict(), **changes}, where=spec) if changes else config
    if spec.endswith((".yaml", ".yml")) or Path(spec).is_file():
        config = ModelConfig.from_yaml(spec)
        return ModelConfig.from_dict({**config.to_dict(), **changes}, where=spec) if changes else config
    if "/" in spec or "\\" in spec:
        raise ConfigError(f"{spec}: no such file or directory (expected a preset name, a model YAML file, an "
                          "encoderlab checkpoint or a Hugging Face model directory)")
    return ModelConfig.from_name(spec, **changes)


def _directorymodel_config(path: Path):
    from encoderlab.model import ModelConfig  # start-up: loads torch
    from encoderlab.model.checkpoint import CHECKPOINT_FORMAT, read_checkpoint_meta  # start-up: loads torch
    from encoderlab.model.hf import _read_hf_config, model_config_from_hf  # start-up: loads torch

    hf = _read_hf_config(path)  # names the directory when it has no (valid) config.json
    if hf.get("format") == CHECKPOINT_FORMAT:
        return ModelConfig.from_dict(read_checkpoint_meta(path)["model"], where=str(path))
    return model_config_from_hf(hf, str(path / "config.json"), name=path.name)


def cmd_model_list(args: argparse.Namespace) -> int:
    from encoderlab.model import ModelConfig, preset_names  # start-up: loads torch

    print(f"{'preset':<8} {'layers':>6} {'hidden':>6} {'heads':>5} {'kv':>3} {'mlp':>6} {'vocab':>7} {'params':>10}")
    for name in preset_names():
        c = ModelConfig.from_name(name)
        print(
            f"{name:<8} {c.num_layers:>6} {c.hidden_size:>6} {c.num_heads:>5} {c.num_kv_heads:>3} "
            f"{c.intermediate_size:>6} {c.vocab_size:>7} {c.num_parameters() / 1e6:>9.1f}M"
        )
    return 0


def cmd_model_info(args: argparse.Namespace) -> int:
    config = model_config(args.preset, args.set)
    seq_len = args.seq_len or config.max_position_embeddings
    info = {
        "config": config.to_dict(),
        "parameters": {
            "blocks": config.num_block_parameters(),
            "embedding": config.vocab_size * config.hidden_size,
            "lm_head": config.vocab_size * config.hidden_size,
            "body_and_embedding": config.num_parameters(include_head=False),
            "total_with_head": config.num_parameters(include_head=True),
        },
        "train_flops_per_token": {
            "seq_len": seq_len,
            "clm": config.flops_per_token(seq_len, head_fraction=1.0),
            "mlm_sparse_head_p0.3": config.flops_per_token(seq_len, head_fraction=0.3),
            "mlm_sparse_head_p0.4": config.flops_per_token(seq_len, head_fraction=0.4),
        },
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    p = info["parameters"]
    print(f"preset {config.name}: {config.num_layers} layers, hidden {config.hidden_size}, "
          f"{config.num_heads} heads ({config.num_kv_heads} kv, head dim {config.head_dim}), MLP {config.intermediate_size}, "
          f"vocab {config.vocab_size}, max positions {config.max_position_embeddings}, RoPE theta {config.rope_theta:g}")
    print(f"parameters: {p['body_and_embedding'] / 1e6:.1f}M body+embedding, "
          f"{p['total_with_head'] / 1e6:.1f}M with the untied LM head (blocks {p['blocks'] / 1e6:.1f}M)")
    f = info["train_flops_per_token"]
    print(f"training FLOPs/token at T={seq_len}: CLM {f['clm'] / 1e9:.3f} G, "
          f"MLM sparse head p=0.3 {f['mlm_sparse_head_p0.3'] / 1e9:.3f} G, p=0.4 {f['mlm_sparse_head_p0.4'] / 1e9:.3f} G")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from encoderlab.model import export_hf  # start-up: loads torch

    out = export_hf(args.checkpoint, args.output, args.target, tokenizer_dir=args.tokenizer, overwrite=args.overwrite)
    print(f"exported {args.checkpoint} as {args.target} to {out}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from encoderlab.model import import_hf  # start-up: loads torch

    model = import_hf(args.hf_dir, args.output, mask_token_id=args.mask_token_id, overwrite=args.overwrite)
    print(f"imported {args.hf_dir} ({model.num_parameters() / 1e6:.1f}M parameters) to {args.output}")
    return 0
