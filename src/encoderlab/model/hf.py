"""Hugging Face interop: export to / import from transformers' native EuroBERT and Llama.

- ``eurobert`` -> ``EuroBertForMaskedLM`` (bidirectional use: MLM, fine-tuning).
- ``llama``    -> ``LlamaForCausalLM`` (a CLM model used as a decoder).

Both are native transformers architectures: no remote code is needed to load the export. Import
accepts the same two formats and the decoder families people continue pretraining from (the
paper's recommended start): Llama (SmolLM2 too), Mistral, Qwen2/2.5, Qwen3, Gemma 2, Gemma 3
(text) and OLMo 2. Their differences become fields of the one ``ModelConfig`` (see
``FAMILY_FIELDS``); a model that uses any of them has no EuroBERT/Llama export (transformers has
no class that runs those architectures bidirectionally), so its native checkpoint is the
evaluation path. Layout translation lives here, never in the model's forward; the export commands
that use it (and the sentence-transformers folder) are :mod:`encoderlab.model.export`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import torch

from encoderlab.model.checkpoint import (
    CheckpointError,
    load_state_into,
    read_safetensors,
    save_checkpoint,
)
from encoderlab.model.config import ModelConfig
from encoderlab.model.encoder import Encoder

ExportTarget = Literal["eurobert", "llama"]  # the transformers classes; encoderlab.model.export adds sentence-transformers
# The retrieval prefixes of the evaluation protocol (FinetuneConfig.query_prefix / document_prefix)
IMPORTABLE_MODEL_TYPES = ("eurobert", "llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3_text", "olmo2")
_GEMMA_TYPES = ("gemma2", "gemma3_text")
# encoderlab norm name -> Hugging Face name, per norm placement (ModelConfig.block_norms)
_HF_NORM_NAMES = {
    "pre": {"attn_norm": "input_layernorm", "mlp_norm": "post_attention_layernorm"},
    "sandwich": {"attn_norm": "input_layernorm", "attn_post_norm": "post_attention_layernorm",
                 "mlp_norm": "pre_feedforward_layernorm", "mlp_post_norm": "post_feedforward_layernorm"},
    "post": {"attn_post_norm": "post_attention_layernorm", "mlp_post_norm": "post_feedforward_layernorm"},
}


def _hf_config(config: ModelConfig, target: ExportTarget):
    from transformers import EuroBertConfig, LlamaConfig

    rope = {"rope_type": "default", "rope_theta": config.rope_theta}
    if config.rope_scaling:
        rope = {"rope_theta": config.rope_theta, **config.rope_scaling}
    common = dict(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads,
        head_dim=config.head_dim,
        max_position_embeddings=config.max_position_embeddings,
        rms_norm_eps=config.norm_eps,
        initializer_range=config.init_std,
        rope_parameters=rope,
        hidden_act="silu",
        attention_bias=False,
        mlp_bias=False,
        tie_word_embeddings=False,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
    )
    if target == "eurobert" and config.mask_token_id is not None:
        # EuroBertConfig types mask_token_id as a plain int: an unset one keeps the class default.
        common["mask_token_id"] = config.mask_token_id
    return (EuroBertConfig if target == "eurobert" else LlamaConfig)(**common)


def to_hf_state_dict(model: Encoder) -> dict[str, torch.Tensor]:
    """encoderlab weights under Hugging Face Llama/EuroBERT names (fused projections split)."""
    config = model.config
    q_dim, kv_dim, inter = config.q_dim, config.kv_dim, config.intermediate_size
    state = model.state_dict()
    out = {
        "model.embed_tokens.weight": state["embed.weight"],
        "model.norm.weight": state["norm.weight"],
        "lm_head.weight": state["lm_head.weight"],
    }
    for i in range(config.num_layers):
        src, dst = f"layers.{i}.", f"model.layers.{i}."
        q, k, v = state[src + "attn.qkv.weight"].split([q_dim, kv_dim, kv_dim], dim=0)
        gate, up = state[src + "mlp.gate_up.weight"].split([inter, inter], dim=0)
        out.update({
            dst + "input_layernorm.weight": state[src + "attn_norm.weight"],
            dst + "self_attn.q_proj.weight": q,
            dst + "self_attn.k_proj.weight": k,
            dst + "self_attn.v_proj.weight": v,
            dst + "self_attn.o_proj.weight": state[src + "attn.out.weight"],
            dst + "post_attention_layernorm.weight": state[src + "mlp_norm.weight"],
            dst + "mlp.gate_proj.weight": gate,
            dst + "mlp.up_proj.weight": up,
            dst + "mlp.down_proj.weight": state[src + "mlp.down.weight"],
        })
    return {name: tensor.detach().contiguous().clone() for name, tensor in out.items()}


def from_hf_state_dict(tensors: dict[str, torch.Tensor], config: ModelConfig, source: str) -> dict[str, torch.Tensor]:
    """Hugging Face weights (Llama layout, with the variations ``config`` announces) under encoderlab
    names (projections fused). Tensors the config did not announce (a bias, a norm) are an error."""

    def take(name: str) -> torch.Tensor:
        if name not in tensors:
            raise CheckpointError(f"{source}: tensor {name!r} is missing; expected the layout its config.json "
                                  "announces (Llama layout with the family's biases and norms)")
        return tensors.pop(name)

    tensors = dict(tensors)
    out = {"embed.weight": take("model.embed_tokens.weight"), "norm.weight": take("model.norm.weight")}
    out["lm_head.weight"] = tensors.pop("lm_head.weight", None)
    if out["lm_head.weight"] is None:  # tied decoders (e.g. Llama-3.2-1B): untie by copying
        out["lm_head.weight"] = out["embed.weight"].clone()
    for i in range(config.num_layers):
        src, dst = f"model.layers.{i}.", f"layers.{i}."
        parts = [take(src + f"self_attn.{p}_proj.weight") for p in "qkv"]
        expected = [config.q_dim, config.kv_dim, config.kv_dim]
        for name, part, rows in zip("qkv", parts, expected):
            if part.shape != (rows, config.hidden_size):
                raise CheckpointError(
                    f"{source}: {src}self_attn.{name}_proj.weight has shape {tuple(part.shape)}, "
                    f"expected {(rows, config.hidden_size)}"
                )
        gate, up = take(src + "mlp.gate_proj.weight"), take(src + "mlp.up_proj.weight")
        if gate.shape != up.shape:
            raise CheckpointError(f"{source}: {src}mlp gate/up shapes differ: {tuple(gate.shape)} vs {tuple(up.shape)}")
        out.update({
            dst + "attn.qkv.weight": torch.cat(parts, dim=0),
            dst + "attn.out.weight": take(src + "self_attn.o_proj.weight"),
            dst + "mlp.gate_up.weight": torch.cat([gate, up], dim=0),
            dst + "mlp.down.weight": take(src + "mlp.down_proj.weight"),
        })
        for ours, theirs in _HF_NORM_NAMES[config.block_norms].items():
            out[dst + ours + ".weight"] = take(src + theirs + ".weight")
        if config.attention_bias:
            out[dst + "attn.qkv.bias"] = torch.cat([take(src + f"self_attn.{p}_proj.bias") for p in "qkv"])
        if config.qk_norm != "none":
            out[dst + "attn.q_norm.weight"] = take(src + "self_attn.q_norm.weight")
            out[dst + "attn.k_norm.weight"] = take(src + "self_attn.k_norm.weight")
    leftovers = sorted(k for k in tensors if not k.endswith("rotary_emb.inv_freq"))
    if leftovers:
        raise CheckpointError(f"{source}: unexpected tensors for this architecture: {leftovers[:5]}")
    return out


def _read_hf_config(path: Path) -> dict:
    config_path = path / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{path}: no config.json; expected a Hugging Face model directory")
    try:
        config = json.loads(config_path.read_text())
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        raise CheckpointError(f"{config_path}: not valid JSON ({err})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{config_path}: expected a JSON object, got {type(config).__name__}")
    return config


_HF_INTEGERS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
_HF_OPTIONAL_INTEGERS = ("num_key_value_heads", "head_dim", "max_position_embeddings")
_HF_TOKEN_IDS = ("bos_token_id", "eos_token_id", "pad_token_id", "mask_token_id")
_HF_NUMBERS = ("rope_theta", "rms_norm_eps", "initializer_range")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_hf_types(hf: dict, source: str) -> None:
    """Every field import reads has the JSON type transformers writes: an error naming the key otherwise
    (a string ``"vocab_size": "32000"`` would fail much later, far from its cause)."""
    for key in _HF_INTEGERS:
        if key not in hf:
            raise CheckpointError(f"{source}: config.json lacks {key!r}")
    for key in _HF_INTEGERS + _HF_OPTIONAL_INTEGERS:
        value = hf.get(key)
        if value is None and key in _HF_OPTIONAL_INTEGERS:
            continue
        if not _is_int(value) or value <= 0:
            raise CheckpointError(f"{source}: {key} must be a positive integer, got {value!r}")
    for key in _HF_TOKEN_IDS:
        value = hf.get(key)
        items = value if isinstance(value, list) and key != "mask_token_id" else [value]
        if value is None or (items and all(_is_int(v) and v >= 0 for v in items)):
            continue
        also = " (or a list of them)" if key != "mask_token_id" else ""
        raise CheckpointError(f"{source}: {key} must be a non-negative integer{also} or null, got {value!r}")
    rope = hf.get("rope_parameters")
    for key, value in [(k, hf.get(k)) for k in _HF_NUMBERS] + [
            ("rope_parameters.rope_theta", rope.get("rope_theta") if isinstance(rope, dict) else None)]:
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
            raise CheckpointError(f"{source}: {key} must be a positive number, got {value!r}")
    for key in ("rope_parameters", "rope_scaling"):
        if hf.get(key) is not None and not isinstance(hf[key], dict):
            raise CheckpointError(f"{source}: {key} must be a mapping or null, got {hf[key]!r}")


def model_config_from_hf(hf: dict, source: str, name: str = "imported") -> ModelConfig:
    """encoderlab config of a Hugging Face config dict of one of ``IMPORTABLE_MODEL_TYPES``."""
    model_type = hf.get("model_type")
    if model_type not in IMPORTABLE_MODEL_TYPES:
        raise CheckpointError(
            f"{source}: architecture {model_type!r} is not supported; expected one of {IMPORTABLE_MODEL_TYPES} "
            "(Llama/SmolLM2, Mistral, Qwen2/2.5, Qwen3, Gemma 2, Gemma 3 text and OLMo 2 decoders, EuroBERT encoders)"
        )
    _check_hf_types(hf, source)
    family = _family_fields(hf, model_type, source)
    rope = dict(hf.get("rope_parameters") or {})
    if model_type == "gemma3_text" and isinstance(rope.get("full_attention"), dict):
        # transformers 5: one RoPE per layer type; the sliding layers' is a plain RoPE of another base
        local = rope.get("sliding_attention") or {}
        if local.get("rope_type", "default") != "default":
            raise CheckpointError(f"{source}: scaled RoPE on sliding layers ({local}) is not supported")
        family["rope_local_theta"] = float(local.get("rope_theta", 10_000.0))
        rope = dict(rope["full_attention"])
    elif model_type == "gemma3_text" and hf.get("rope_local_base_freq") is not None:  # older config.json
        family["rope_local_theta"] = float(hf["rope_local_base_freq"])
    theta = rope.pop("rope_theta", hf.get("rope_theta", 10_000.0))
    if not rope and hf.get("rope_scaling"):
        rope = dict(hf["rope_scaling"])
        rope.setdefault("rope_type", rope.pop("type", "default"))
    scaling = rope if rope.get("rope_type", "default") != "default" else None
    if scaling is not None:
        from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

        if scaling["rope_type"] not in ROPE_INIT_FUNCTIONS:
            raise CheckpointError(f"{source}: rope_type {scaling['rope_type']!r} is unknown to transformers; "
                                  f"known: {sorted(ROPE_INIT_FUNCTIONS)}")
    if family.get("rope_local_theta") == float(theta) and scaling is None:
        family.pop("rope_local_theta")  # one RoPE for every layer
    mask_token_id = hf.get("mask_token_id")
    try:
        return ModelConfig(
            name=name,
            vocab_size=hf["vocab_size"],
            hidden_size=hf["hidden_size"],
            num_layers=hf["num_hidden_layers"],
            num_heads=hf["num_attention_heads"],
            num_kv_heads=hf.get("num_key_value_heads") or hf["num_attention_heads"],
            head_dim=hf.get("head_dim"),
            intermediate_size=hf["intermediate_size"],
            max_position_embeddings=hf.get("max_position_embeddings", 2048),
            rope_theta=float(theta),
            rope_scaling=scaling,
            norm_eps=hf.get("rms_norm_eps", 1e-5),
            init_std=hf.get("initializer_range", 0.02),
            bos_token_id=_first(hf.get("bos_token_id")),
            eos_token_id=_first(hf.get("eos_token_id")),
            pad_token_id=_first(hf.get("pad_token_id")),
            mask_token_id=mask_token_id,
            **family,
        )
    except KeyError as err:
        raise CheckpointError(f"{source}: config.json lacks {err.args[0]!r}") from None


def _family_fields(hf: dict, model_type: str, source: str) -> dict:
    """The ``ModelConfig`` variation fields of one decoder family, from its config.json; features
    encoderlab does not implement are refused by name."""
    gemma = model_type in _GEMMA_TYPES
    refused = ["mlp_bias"]
    if model_type != "qwen2":  # Qwen2 has q/k/v biases unannounced; elsewhere the flag adds an o_proj bias
        refused.append("attention_bias")
    for flag in refused:
        if hf.get(flag):
            raise CheckpointError(f"{source}: {flag}=true is not supported for {model_type!r} (encoderlab's "
                                  "architecture has q/k/v biases at most, no output or MLP biases)")
    act_key = "hidden_activation" if gemma and "hidden_activation" in hf else "hidden_act"
    expected_act = "gelu_pytorch_tanh" if gemma else "silu"
    if hf.get(act_key, expected_act) != expected_act:
        raise CheckpointError(f"{source}: {act_key} {hf.get(act_key)!r} is not supported; expected {expected_act!r}")
    fields: dict = {}
    if model_type == "qwen2":
        fields["attention_bias"] = True
    if model_type in ("qwen3", "gemma3_text"):
        fields["qk_norm"] = "head"
    if model_type == "olmo2":
        fields.update(qk_norm="full", block_norms="post")
    if gemma:
        fields.update(norm_offset=1.0, block_norms="sandwich", mlp_activation="gelu_tanh", scale_embeddings=True,
                      query_pre_attn_scalar=float(hf.get("query_pre_attn_scalar", 256)),
                      attn_logit_softcap=hf.get("attn_logit_softcapping"),
                      final_logit_softcap=hf.get("final_logit_softcapping"))
        if hf.get("use_bidirectional_attention"):  # EmbeddingGemma-style: windows both ways
            fields["bidirectional_sliding_window"] = "window"
    # sliding windows: Mistral slides on every layer; Qwen2/3 (use_sliding_window) and Gemma per layer_types
    window = hf.get("sliding_window")
    if model_type in ("qwen2", "qwen3") and not hf.get("use_sliding_window"):
        window = None
    if model_type in ("llama", "eurobert", "olmo2"):
        window = None
    if model_type == "gemma3_text" and hf.get("use_bidirectional_attention") and _is_int(window):
        # Gemma3TextConfig saves 2 * (w - 1) and runs with w = saved // 2 + 1 ("exclusive bounds")
        window = window // 2 + 1
    if window is not None:
        if not _is_int(window) or window <= 0:
            raise CheckpointError(f"{source}: sliding_window must be a positive integer or null, got {window!r}")
        types = hf.get("layer_types")
        if types is None and model_type == "mistral":
            types = ["sliding_attention"] * hf["num_hidden_layers"]
        if types is None:
            raise CheckpointError(f"{source}: sliding_window is set but config.json has no layer_types")
        names = {"sliding_attention": "sliding", "full_attention": "full"}
        if not isinstance(types, list) or any(t not in names for t in types):
            raise CheckpointError(f"{source}: layer_types must list 'full_attention'/'sliding_attention', got {types!r}")
        if "sliding_attention" in types:
            fields.update(sliding_window=window, layer_types=[names[t] for t in types])
    return fields


def _first(value):
    return value[0] if isinstance(value, list) and value else value


def _read_hf_tensors(path: Path) -> dict[str, torch.Tensor]:
    index = path / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
            files = sorted(set(weight_map.values()))
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise CheckpointError(
                f"{index}: not a safetensors index (expected JSON with a 'weight_map' object; {err})") from None
        if not all(isinstance(f, str) and f and Path(f).name == f for f in files):
            raise CheckpointError(f"{index}: weight_map names files outside {path} or non-file values: {files[:5]}")
    elif (path / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        pickles = sorted(p.name for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
        found = f" (found pickle files {', '.join(pickles)}, which encoderlab does not load)" if pickles else ""
        raise CheckpointError(f"{path}: no model.safetensors or model.safetensors.index.json{found}")
    tensors: dict[str, torch.Tensor] = {}
    for file in files:
        tensors.update(read_safetensors(path / file))
    return tensors


def import_hf(
    hf_dir: str | Path,
    output_dir: str | Path | None = None,
    *,
    mask_token_id: int | None = None,
    overwrite: bool = False,
    name: str | None = None,
) -> Encoder:
    """Builds an encoderlab model from a local Hugging Face EuroBERT or Llama-architecture checkpoint.

    With ``output_dir`` the model is also written there as an encoderlab checkpoint (with the
    tokenizer files, when the source has them). Weights are converted to fp32 (master weights).
    """
    hf_dir = Path(hf_dir)
    if not hf_dir.is_dir():
        raise CheckpointError(f"{hf_dir}: directory not found (encoderlab imports local checkpoints only)")
    hf = _read_hf_config(hf_dir)
    if hf.get("format") == "encoderlab-model":
        raise CheckpointError(f"{hf_dir}: already an encoderlab checkpoint; nothing to import")
    config = model_config_from_hf(hf, str(hf_dir / "config.json"), name=name or hf_dir.name)
    if mask_token_id is not None:
        config = config.replace(mask_token_id=mask_token_id)
    tensors = {k: v.float() for k, v in _read_hf_tensors(hf_dir).items()}
    encoder_state = from_hf_state_dict(tensors, config, str(hf_dir))
    with torch.device("meta"):
        model = Encoder(config)
    model = model.to_empty(device="cpu")
    model.reset_rope()
    load_state_into(model, encoder_state, str(hf_dir))
    if output_dir is not None:
        has_tokenizer = (hf_dir / "tokenizer_config.json").is_file() or (hf_dir / "tokenizer.json").is_file()
        save_checkpoint(
            model, output_dir, tokenizer_dir=hf_dir if has_tokenizer else None, overwrite=overwrite,
            extra={"imported_from": str(hf_dir), "imported_model_type": hf.get("model_type")},
        )
    return model


__all__ = ["import_hf", "to_hf_state_dict", "from_hf_state_dict", "model_config_from_hf"]
