"""Model configuration and named presets (litgpt's ``Config.from_name`` style)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from encoderlab.config import ConfigError, check_keys, from_dict, load_yaml

AttentionBackend = Literal["auto", "sdpa", "flex", "varlen"]
LAYER_TYPES = ("full", "sliding")

LLAMA3_SPECIAL_TOKENS = {"bos_token_id": 128000, "eos_token_id": 128001, "mask_token_id": 128002}


@dataclass(kw_only=True)
class ModelConfig:
    """Architecture of the EuroBERT-style (Llama-like) encoder.

    Fields describe weights, except ``attn_backend`` which only picks the attention kernel and
    ``bidirectional_sliding_window``, a recorded choice of how sliding layers attend bidirectionally.
    The fields after ``attn_backend`` are the variations of the decoder families encoderlab imports
    (Mistral, Qwen2/3, Gemma 2/3, OLMo 2); their defaults are the paper's architecture, whose code
    path they leave untouched.
    """

    name: str = "custom"
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    head_dim: int | None = None  # None: hidden_size // num_heads
    max_position_embeddings: int = 2048
    rope_theta: float = 10_000.0
    # Non-default RoPE (e.g. {"rope_type": "llama3", "factor": 32.0, ...}) of imported decoders;
    # frequencies then come from transformers' reference implementation of that rope type.
    rope_scaling: dict[str, Any] | None = None
    norm_eps: float = 1e-5
    init_std: float = 0.02
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None
    mask_token_id: int | None = None
    attn_backend: AttentionBackend = "auto"
    # -- decoder-family variations (defaults: the paper's Llama-style architecture) ------------
    attention_bias: bool = False  # biases on the q/k/v projections, none on the output (Qwen2)
    qk_norm: Literal["none", "head", "full"] = "none"  # RMSNorm of q and k before RoPE: per head
    # (Qwen3, Gemma 3) or over all heads at once (OLMo 2)
    norm_offset: float = 0.0  # RMSNorms scale by (norm_offset + weight): 1.0 for Gemma, weights init 0
    block_norms: Literal["pre", "sandwich", "post"] = "pre"  # pre-norm (Llama); pre and post norms
    # around attention and MLP (Gemma 2/3); norms after attention and MLP only (OLMo 2)
    mlp_activation: Literal["silu", "gelu_tanh"] = "silu"  # the gated MLP's gate: SwiGLU or GeGLU (Gemma)
    scale_embeddings: bool = False  # embeddings times sqrt(hidden_size) (Gemma)
    query_pre_attn_scalar: float | None = None  # attention scale scalar**-0.5 (Gemma); None: head_dim**-0.5
    attn_logit_softcap: float | None = None  # cap * tanh(scores / cap) before the softmax (Gemma 2)
    final_logit_softcap: float | None = None  # the same on the LM logits (Gemma 2)
    sliding_window: int | None = None  # keys within this many tokens (query included) on sliding layers
    layer_types: list[str] | None = None  # per layer "full" or "sliding"; None: all sliding when
    # sliding_window is set (Mistral), else all full
    rope_local_theta: float | None = None  # RoPE base of the sliding layers (Gemma 3); None: rope_theta
    # Bidirectional attention on sliding layers: "full" (the whole document, the default for an
    # encoder) or "window" (keys within sliding_window on either side, as Gemma 3's
    # use_bidirectional_attention). Causal attention always honours the window.
    bidirectional_sliding_window: Literal["full", "window"] = "full"

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"ModelConfig.{name}: expected a positive integer, got {getattr(self, name)}")
        if self.head_dim is None:
            if self.hidden_size % self.num_heads:
                raise ConfigError(
                    f"ModelConfig: hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}; "
                    "set head_dim explicitly"
                )
            self.head_dim = self.hidden_size // self.num_heads
        if self.head_dim % 2:
            raise ConfigError(f"ModelConfig.head_dim: RoPE needs an even head dimension, got {self.head_dim}")
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(
                f"ModelConfig: num_heads {self.num_heads} must be a multiple of num_kv_heads {self.num_kv_heads} (GQA)"
            )
        choices = {"qk_norm": ("none", "head", "full"), "block_norms": ("pre", "sandwich", "post"),
                   "mlp_activation": ("silu", "gelu_tanh"), "bidirectional_sliding_window": ("full", "window")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"ModelConfig.{name}: expected one of {allowed}, got {getattr(self, name)!r}")
        for name in ("query_pre_attn_scalar", "attn_logit_softcap", "final_logit_softcap", "rope_local_theta"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"ModelConfig.{name}: expected a positive number or null, got {value!r}")
        if self.sliding_window is not None and self.sliding_window <= 0:
            raise ConfigError(f"ModelConfig.sliding_window: expected a positive integer or null, got {self.sliding_window}")
        if self.layer_types is not None:
            self.layer_types = list(self.layer_types)
            if len(self.layer_types) != self.num_layers or not set(self.layer_types) <= set(LAYER_TYPES):
                raise ConfigError(f"ModelConfig.layer_types: expected {self.num_layers} entries from {LAYER_TYPES}, "
                                  f"got {self.layer_types}")
            if "sliding" in self.layer_types and self.sliding_window is None:
                raise ConfigError("ModelConfig.layer_types: sliding layers need sliding_window")

    def layer_type(self, index: int) -> str:
        """``full`` or ``sliding``: how layer ``index`` attends."""
        if self.layer_types is not None:
            return self.layer_types[index]
        return "sliding" if self.sliding_window is not None else "full"

    def sdpa_only_features(self) -> list[str]:
        """Attention features of this model that only the ``sdpa`` backend implements (the sliding
        window is checked per batch: it matters only for sequences longer than the window)."""
        features = []
        if self.query_pre_attn_scalar is not None:
            features.append("query_pre_attn_scalar")
        if self.attn_logit_softcap is not None:
            features.append("attn_logit_softcap")
        return features

    @property
    def is_paper_architecture(self) -> bool:
        """True when no decoder-family variation is set: what EuroBERT/Llama exports can represent."""
        return not self.family_features()

    def family_features(self) -> list[str]:
        """Names of the decoder-family fields set away from the paper's architecture."""
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        return [name for name in FAMILY_FIELDS if getattr(self, name) != defaults[name]]

    # -- presets ---------------------------------------------------------------------------
    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> ModelConfig:
        """The preset ``name`` with fields replaced by ``overrides`` (unknown fields are errors)."""
        if name not in PRESETS:
            raise ConfigError(f"unknown model preset {name!r}; available presets: {', '.join(PRESETS)}")
        base = dict(PRESETS[name])
        check_keys(cls, overrides.keys(), f"overrides of preset {name!r}")
        base.update(overrides)
        return from_dict(cls, base, where=f"model preset {name!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "model config") -> ModelConfig:
        """From a mapping; ``{"preset": NAME, ...}`` starts from a preset and overrides fields."""
        data = dict(data)
        preset = data.pop("preset", None)
        if preset is not None:
            check_keys(cls, data.keys(), where)
            return cls.from_name(preset, **data)
        return from_dict(cls, data, where=where)

    @classmethod
    def from_yaml(cls, path: str | Path) -> ModelConfig:
        return cls.from_dict(load_yaml(path), where=str(path))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> ModelConfig:
        check_keys(type(self), changes.keys(), f"changes to model config {self.name!r}")
        return dataclasses.replace(self, **changes)

    # -- counts ----------------------------------------------------------------------------
    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def q_dim(self) -> int:
        return self.num_heads * self.head_dim

    def num_block_parameters(self) -> int:
        """Parameters of the transformer blocks and final norm (embedding and LM head excluded)."""
        d = self.hidden_size
        attention = d * self.q_dim + 2 * d * self.kv_dim + self.q_dim * d
        if self.attention_bias:
            attention += self.q_dim + 2 * self.kv_dim
        attention += {"none": 0, "head": 2 * self.head_dim, "full": self.q_dim + self.kv_dim}[self.qk_norm]
        mlp = 3 * d * self.intermediate_size
        norms = {"pre": 2, "sandwich": 4, "post": 2}[self.block_norms] * d
        return self.num_layers * (attention + mlp + norms) + d

    def num_parameters(self, include_head: bool = True) -> int:
        embedding = self.vocab_size * self.hidden_size
        head = embedding if include_head else 0
        return self.num_block_parameters() + embedding + head

    def flops_per_token(self, seq_len: int, head_fraction: float = 1.0) -> float:
        """Training FLOPs per token (forward + backward), the usual dense-transformer count (as in torchtitan and the PaLM appendix).

        ``6 * N_body_matmul + 6 * N_head * f + 12 * L * H * Q * T``, where ``f`` is the fraction of
        positions at which LM logits are computed (1 for CLM and a dense MLM head, the masking ratio
        for a sparse MLM head). Attention counts the full T^2 even for causal masks (convention).
        """
        d = self.hidden_size
        body_matmul = self.num_layers * (
            d * self.q_dim + 2 * d * self.kv_dim + self.q_dim * d + 3 * d * self.intermediate_size
        )
        head = self.vocab_size * d
        attention = 12 * self.num_layers * self.num_heads * self.head_dim * seq_len
        return 6 * body_matmul + 6 * head * head_fraction + attention


FAMILY_FIELDS = (
    "attention_bias", "qk_norm", "norm_offset", "block_norms", "mlp_activation", "scale_embeddings",
    "query_pre_attn_scalar", "attn_logit_softcap", "final_logit_softcap", "sliding_window", "layer_types",
    "rope_local_theta",
)


# Paper presets: exactly the dimensions of the paper's 210M, 610M and 1B models (Llama-3 vocabulary).
# Small presets (``tiny`` for tests, ``mini`` for the CPU demo) use small vocabularies.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        name="tiny", vocab_size=384, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
        intermediate_size=160, max_position_embeddings=512,
    ),
    "demo": dict(
        name="demo", vocab_size=2048, hidden_size=128, num_layers=4, num_heads=4, num_kv_heads=2,
        intermediate_size=384, max_position_embeddings=256,
    ),
    "mini": dict(
        name="mini", vocab_size=4096, hidden_size=256, num_layers=4, num_heads=4, num_kv_heads=2,
        intermediate_size=768, max_position_embeddings=512,
    ),
    "210m": dict(
        name="210m", vocab_size=128_256, hidden_size=768, num_layers=12, num_heads=12, num_kv_heads=12,
        intermediate_size=3072, **LLAMA3_SPECIAL_TOKENS,
    ),
    "610m": dict(
        name="610m", vocab_size=128_256, hidden_size=1152, num_layers=26, num_heads=18, num_kv_heads=6,
        intermediate_size=4096, **LLAMA3_SPECIAL_TOKENS,
    ),
    "1b": dict(
        name="1b", vocab_size=128_256, hidden_size=1728, num_layers=28, num_heads=18, num_kv_heads=6,
        intermediate_size=5120, **LLAMA3_SPECIAL_TOKENS,
    ),
}


def preset_names() -> list[str]:
    return list(PRESETS)

