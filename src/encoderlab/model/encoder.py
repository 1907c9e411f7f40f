"""The EuroBERT-style encoder: a Llama-like pre-norm transformer whose attention mode
(causal or bidirectional) is chosen per call, with the same weights.

RMSNorm, SwiGLU, RoPE (rotate-half pairing, as Hugging Face Llama/EuroBERT), grouped-query
attention, no biases, no dropout, untied LM head, init N(0, init_std). The query/key/value and
gate/up projections are fused into single matmuls for speed; the HF interop splits them.

The decoder families encoderlab imports differ from that architecture in a few config fields
(``ModelConfig``: q/k/v biases, q/k norms, the (1 + w) RMSNorm, norm placement, GeGLU, embedding
scale, attention scale and soft-caps, sliding windows); each is a branch here, not a class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from encoderlab.model.attention import AttentionMode, SequenceLayout, attend, build_layout
from encoderlab.model.config import ModelConfig
from encoderlab.model.ops import apply_rope, silu_mul


@dataclass
class EncoderOutput:
    hidden_states: Tensor  # (B, T, d) after the final norm: what task heads read
    logits: Tensor | None = None  # (B, T, V), or (N, V) for the N selected positions
    head_output: Any = None  # what ``head(hidden_states, lm_head_weight)`` returned, if given


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float, offset: float = 0.0):
        super().__init__()
        self.eps = eps
        self.offset = offset  # Gemma scales by (1 + weight), its weights starting at 0
        self.weight = nn.Parameter(torch.full((dim,), 1.0 - offset))

    def forward(self, x: Tensor) -> Tensor:
        # The residual stream is fp32 (fp32 embedding + autocast matmul outputs), so this normalises
        # in fp32 as HF Llama does; F.rms_norm saves only its input and the inverse RMS.
        weight = self.weight + self.offset if self.offset else self.weight
        return F.rms_norm(x, (x.shape[-1],), weight, self.eps)


def rope_inverse_frequencies(config: ModelConfig) -> tuple[Tensor, float]:
    """Inverse frequencies and attention scaling of the RoPE of ``config``, computed on the CPU."""
    with torch.device("cpu"):  # also when the model is being built on the meta device
        return _rope_inverse_frequencies(config)


def _rope_inverse_frequencies(config: ModelConfig) -> tuple[Tensor, float]:
    if config.rope_scaling is None or config.rope_scaling.get("rope_type", "default") == "default":
        exponents = torch.arange(0, config.head_dim, 2, dtype=torch.float64) / config.head_dim
        return (1.0 / (config.rope_theta**exponents)).float(), 1.0
    # Scaled RoPE of imported decoders (e.g. Llama 3's "llama3" type): use transformers' reference.
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    rope_type = config.rope_scaling["rope_type"]
    if rope_type not in ROPE_INIT_FUNCTIONS:
        raise ValueError(f"rope_scaling: unsupported rope_type {rope_type!r}; known: {sorted(ROPE_INIT_FUNCTIONS)}")
    hf_config = LlamaConfig(
        hidden_size=config.hidden_size, num_attention_heads=config.num_heads, head_dim=config.head_dim,
        max_position_embeddings=config.max_position_embeddings,
        rope_parameters={"rope_theta": config.rope_theta, **config.rope_scaling},
    )
    inv_freq, scaling = ROPE_INIT_FUNCTIONS[rope_type](hf_config, "cpu")
    return inv_freq.float(), float(scaling)


class Attention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.num_heads = config.num_heads
        self.num_kv_heads = config.num_kv_heads
        self.head_dim = config.head_dim
        self.qkv = nn.Linear(config.hidden_size, config.q_dim + 2 * config.kv_dim, bias=config.attention_bias)
        self.out = nn.Linear(config.q_dim, config.hidden_size, bias=False)
        self.qk_norm = config.qk_norm
        if config.qk_norm != "none":
            per_head = config.qk_norm == "head"
            q_size, k_size = (config.head_dim, config.head_dim) if per_head else (config.q_dim, config.kv_dim)
            self.q_norm = RMSNorm(q_size, config.norm_eps, config.norm_offset)
            self.k_norm = RMSNorm(k_size, config.norm_eps, config.norm_offset)
        self.scale = None if config.query_pre_attn_scalar is None else config.query_pre_attn_scalar**-0.5
        self.softcap = config.attn_logit_softcap

    def forward(self, x: Tensor, layout: SequenceLayout, cos: Tensor, sin: Tensor) -> Tensor:
        batch, length, _ = x.shape
        q_dim, kv_dim = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        q, k, v = self.qkv(x).split([q_dim, kv_dim, kv_dim], dim=-1)
        if self.qk_norm == "full":  # OLMo 2: over all heads, before the head split
            q, k = self.q_norm(q), self.k_norm(k)
        # (B, T, H, D), the projection's own memory order: RoPE and the varlen kernel read it as
        # is; the other kernels get (B, H, T, D) transposed views. (Measured on an H100 on
        # 2026-11-26: this did not change RoPE's slow backward kernel, 0.42 ms a layer at 210m,
        # which fuses the rotation with reassembling the QKV gradient; see benchmarks/README.md.)
        q = q.view(batch, length, self.num_heads, self.head_dim)
        k = k.view(batch, length, self.num_kv_heads, self.head_dim)
        v = v.view(batch, length, self.num_kv_heads, self.head_dim)
        if self.qk_norm == "head":  # Qwen3, Gemma 3: per head
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rope(q, k, cos, sin)
        if self.scale is None and self.softcap is None:
            out = attend(q, k, v, layout)
        else:
            out = attend(q, k, v, layout, scale=self.scale, softcap=self.softcap)
        return self.out(out.reshape(batch, length, q_dim))


class SwiGLU(nn.Module):
    """The gated MLP: ``down(act(gate) * up)`` with SiLU (SwiGLU) or tanh-approximated GELU (GeGLU)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.gate_up = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=False)
        self.down = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)
        self.activation = config.mlp_activation

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        if self.activation == "gelu_tanh":  # Gemma's gelu_pytorch_tanh
            return self.down(F.gelu(gate, approximate="tanh") * up)
        return self.down(silu_mul(gate, up))


class Block(nn.Module):
    """One transformer layer; ``config.block_norms`` places its norms:

    - ``pre`` (Llama, the paper): ``x + attn(norm(x))``, then ``x + mlp(norm(x))``;
    - ``sandwich`` (Gemma 2/3): ``x + post_norm(attn(norm(x)))``, the same around the MLP;
    - ``post`` (OLMo 2): ``x + post_norm(attn(x))``, then ``x + post_norm(mlp(x))``.
    """

    def __init__(self, config: ModelConfig, layer_type: str = "full"):
        super().__init__()
        self.block_norms = config.block_norms
        self.layer_type = layer_type  # "full" or "sliding": which layout and RoPE table it reads
        d, eps, offset = config.hidden_size, config.norm_eps, config.norm_offset
        if config.block_norms != "post":
            self.attn_norm = RMSNorm(d, eps, offset)
        self.attn = Attention(config)
        if config.block_norms != "pre":
            self.attn_post_norm = RMSNorm(d, eps, offset)
        if config.block_norms != "post":
            self.mlp_norm = RMSNorm(d, eps, offset)
        self.mlp = SwiGLU(config)
        if config.block_norms != "pre":
            self.mlp_post_norm = RMSNorm(d, eps, offset)

    def forward(self, x: Tensor, layout: SequenceLayout, cos: Tensor, sin: Tensor) -> Tensor:
        if self.block_norms == "pre":
            x = x + self.attn(self.attn_norm(x), layout, cos, sin)
            return x + self.mlp(self.mlp_norm(x))
        if self.block_norms == "sandwich":
            x = x + self.attn_post_norm(self.attn(self.attn_norm(x), layout, cos, sin))
            return x + self.mlp_post_norm(self.mlp(self.mlp_norm(x)))
        x = x + self.attn_post_norm(self.attn(x, layout, cos, sin))
        return x + self.mlp_post_norm(self.mlp(x))


class Encoder(nn.Module):
    """The encoder with its LM head. ``forward`` takes the attention mode per call."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(Block(config, config.layer_type(i)) for i in range(config.num_layers))
        self.norm = RMSNorm(config.hidden_size, config.norm_eps, config.norm_offset)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        inv_freq, self.rope_scale = rope_inverse_frequencies(config)
        self.register_buffer("rope_inv_freq", inv_freq, persistent=False)
        self.rope_local_scale = 1.0
        if config.rope_local_theta is not None:  # Gemma 3's sliding layers: plain RoPE of another base
            local_freq, self.rope_local_scale = rope_inverse_frequencies(self._local_rope_config())
            self.register_buffer("rope_local_inv_freq", local_freq, persistent=False)
        self.reset_parameters()

    def _local_rope_config(self) -> ModelConfig:
        return self.config.replace(rope_theta=self.config.rope_local_theta, rope_scaling=None)

    def reset_rope(self) -> None:
        """Recomputes the RoPE table (needed after building on the meta device)."""
        inv_freq, self.rope_scale = rope_inverse_frequencies(self.config)
        self.rope_inv_freq = inv_freq.to(self.embed.weight.device)
        if self.config.rope_local_theta is not None:
            local_freq, self.rope_local_scale = rope_inverse_frequencies(self._local_rope_config())
            self.rope_local_inv_freq = local_freq.to(self.embed.weight.device)

    def reset_parameters(self) -> None:
        std = self.config.init_std
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=std)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, RMSNorm):
                nn.init.constant_(module.weight, 1.0 - module.offset)

    def rope_tables(self, positions: Tensor, local: bool = False) -> tuple[Tensor, Tensor]:
        """(B, T, 1, D) cos and sin for the given (B, T) positions, in fp32 (broadcast over heads);
        ``local``: the sliding layers' table (``rope_local_theta``)."""
        inv_freq, scale = self.rope_inv_freq, self.rope_scale
        if local:
            inv_freq, scale = self.rope_local_inv_freq, self.rope_local_scale
        freqs = positions[..., None].float() * inv_freq.to(positions.device)
        angles = torch.cat((freqs, freqs), dim=-1)[:, :, None]
        return angles.cos() * scale, angles.sin() * scale

    def forward(
        self,
        input_ids: Tensor,
        *,
        attention: AttentionMode,
        document_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        isolate_documents: bool = True,
        logits_at: Tensor | str | None = None,
        head: Callable[[Tensor, Tensor], Any] | None = None,
    ) -> EncoderOutput:
        """Runs the encoder.

        Args:
            input_ids: (B, T) token ids.
            attention: ``"causal"`` (CLM) or ``"bidirectional"`` (MLM, fine-tuning).
            document_ids: (B, T) ids of packed documents; attention never crosses a document
                boundary and RoPE positions restart per document (unless ``isolate_documents``
                is False, which reproduces the authors' code).
            attention_mask: (B, T) padding mask, 1 for real tokens.
            logits_at: None (hidden states only), ``"all"`` ((B, T, V) logits), or a (B, T) bool
                tensor selecting positions: the LM head then runs on those only, giving (N, V).
            head: optional ``f(hidden_states, lm_head_weight)`` run inside this forward (e.g. a
                fused LM loss that never materialises logits). Running it here, not after, keeps
                wrappers that gather parameters for the forward (FSDP) working.
        """
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids: expected shape (batch, seq_len), got {tuple(input_ids.shape)}")
        if input_ids.shape[1] > self.config.max_position_embeddings and self.config.rope_scaling is None:
            raise ValueError(
                f"input_ids: sequence length {input_ids.shape[1]} exceeds max_position_embeddings "
                f"{self.config.max_position_embeddings} of model {self.config.name!r}"
            )
        config = self.config
        layout_options = dict(
            mode=attention, document_ids=document_ids, attention_mask=attention_mask,
            isolate_documents=isolate_documents, backend=config.attn_backend,
            sdpa_features=config.sdpa_only_features(),
        )
        layout = build_layout(input_ids, **layout_options)
        sliding_layout = None
        if any(layer.layer_type == "sliding" for layer in self.layers):
            windowed = attention == "causal" or config.bidirectional_sliding_window == "window"
            sliding_layout = layout
            if windowed:
                sliding_layout = build_layout(input_ids, sliding_window=config.sliding_window, **layout_options)
        hidden = self.hidden_states(input_ids, layout, sliding_layout)
        logits = None
        if logits_at is not None:
            logits = self.lm_logits(hidden, None if isinstance(logits_at, str) and logits_at == "all" else logits_at)
        head_output = head(hidden, self.lm_head.weight) if head is not None else None
        return EncoderOutput(hidden_states=hidden, logits=logits, head_output=head_output)

    def hidden_states(self, input_ids: Tensor, layout: SequenceLayout,
                      sliding_layout: SequenceLayout | None = None) -> Tensor:
        """Final-norm hidden states; ``sliding_layout`` is what sliding layers read (default ``layout``)."""
        cos, sin = self.rope_tables(layout.positions)
        local = (cos, sin)
        if self.config.rope_local_theta is not None:
            local = self.rope_tables(layout.positions, local=True)
        x = self.embed(input_ids)
        if self.config.scale_embeddings:  # Gemma: sqrt(hidden) rounded to the activations' dtype
            x = x * torch.tensor(self.config.hidden_size**0.5, dtype=x.dtype)
        for layer in self.layers:
            if layer.layer_type == "sliding":
                x = layer(x, sliding_layout or layout, *local)
            else:
                x = layer(x, layout, cos, sin)
        return self.norm(x)

    def lm_logits(self, hidden_states: Tensor, positions: Tensor | None = None) -> Tensor:
        """LM logits at every position, or only at ``positions`` (bool mask or flat indices)."""
        if isinstance(positions, str):
            raise ValueError(f"logits_at: expected None, 'all' or a tensor, got {positions!r}")
        if positions is not None:
            if positions.dtype == torch.bool:
                hidden_states = hidden_states[positions]
            else:
                hidden_states = hidden_states.flatten(0, 1)[positions]
        logits = self.lm_head(hidden_states)
        cap = self.config.final_logit_softcap
        return logits if cap is None else torch.tanh(logits / cap) * cap

    def num_parameters(self, include_head: bool = True) -> int:
        total = sum(p.numel() for p in self.parameters())
        return total if include_head else total - self.lm_head.weight.numel()


def build_encoder(config: ModelConfig, device: torch.device | str | None = None, seed: int | None = None) -> Encoder:
    """A freshly initialised encoder; ``seed`` makes the initialisation reproducible."""
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = Encoder(config)
    else:
        model = Encoder(config)
    return model.to(device) if device is not None else model

