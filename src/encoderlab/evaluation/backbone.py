"""The model under evaluation, behind one interface: token ids in, hidden states out.

- An encoderlab checkpoint runs natively, with the attention the protocol asks for
  (bidirectional by default, ``causal`` on request).
- A Hugging Face model of an architecture encoderlab imports (Llama-architecture decoders,
  EuroBERT) is imported into the native model, so a ``LlamaForCausalLM`` export of an encoderlab
  model is evaluated bidirectionally like the model it came from, as the protocol says.
- Any other transformers encoder (BERT, RoBERTa, ModernBERT, ...) runs through ``AutoModel``.
- Any other decoder-only model would run causally through transformers: it is refused unless the
  protocol says ``attention: causal``, which is then part of every run key and shown in reports.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from encoderlab.config import ConfigError
from encoderlab.data.tokenizer import check_tokenizer_files, load_tokenizer, tokenizer_info
from encoderlab.model import load_checkpoint
from encoderlab.model.checkpoint import CHECKPOINT_FORMAT
from encoderlab.model.hf import IMPORTABLE_MODEL_TYPES, import_hf

_DECODER_SUFFIXES = ("ForCausalLM", "LMHeadModel")


def _hf_config(path: Path) -> dict:
    try:
        return json.loads((path / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def is_decoder_only(hf: dict) -> bool:
    """A transformers config whose model runs causally through ``AutoModel``: declared a decoder,
    or of a family with a causal-LM class and no masked-LM class (GPT-2, Mistral, Qwen, ...)."""
    if hf.get("is_decoder"):
        return True
    model_type = hf.get("model_type")
    try:
        from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                            MODEL_FOR_MASKED_LM_MAPPING_NAMES)
    except ImportError:  # pragma: no cover - transformers reorganised
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES = {}, {}
    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return True
    architectures = hf.get("architectures") or []
    return bool(architectures) and all(a.endswith(_DECODER_SUFFIXES) for a in architectures)


class Backbone(nn.Module):
    """An encoderlab checkpoint, an importable HF model (native), or any transformers model."""

    def __init__(self, path: str, trust_remote_code: bool = False, attention: str = "bidirectional"):
        super().__init__()
        from transformers import AutoTokenizer


        if attention not in ("bidirectional", "causal"):
            raise ConfigError(f"attention: expected 'bidirectional' or 'causal', got {attention!r}")
        folder = Path(path)
        hf = _hf_config(folder)
        self.attention = attention
        self.native = hf.get("format") == CHECKPOINT_FORMAT
        check_tokenizer_files(folder, "model")  # an evaluated model needs its tokenizer next to the weights
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        except Exception as err:
            raise ConfigError(f"{path}: no usable tokenizer ({type(err).__name__}: {err}); an evaluated model needs "
                              "its tokenizer files next to the weights") from None
        if self.native:
            self.model = load_checkpoint(path)
            self.kind = "encoderlab"
        elif hf.get("model_type") in IMPORTABLE_MODEL_TYPES:
            self.model = import_hf(path)  # in memory; the same weights, run natively in either mode
            self.native = True
            self.kind = f"imported {hf.get('model_type')}"
        else:
            decoder = is_decoder_only(hf)
            if decoder and attention != "causal":
                raise ConfigError(
                    f"{path}: {hf.get('model_type')!r} is a decoder-only architecture that encoderlab cannot import, so "
                    "transformers would run it causally, against the protocol (bidirectional for every model). "
                    "Import it if its family is supported (`encoderlab import`), or evaluate it causally on purpose "
                    "with --attention causal (recorded with every run and shown in reports)")
            if not decoder and attention == "causal":
                raise ConfigError(f"{path}: {hf.get('model_type')!r} is an encoder run through transformers, which has "
                                  "no causal mode; attention=causal applies to encoderlab models and decoders only")
            from transformers import AutoModel

            self.model = AutoModel.from_pretrained(path, trust_remote_code=trust_remote_code)
            self.kind = f"transformers {hf.get('model_type')}"
        if self.native:
            self.hidden_size = self.model.config.hidden_size
            self.max_positions = self.model.config.max_position_embeddings
        else:
            self.hidden_size = self.model.config.hidden_size
            self.max_positions = getattr(self.model.config, "max_position_embeddings", 512)
        tok = self.tokenizer
        self.start_id = tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id
        self.sep_id = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else (self.sep_id or 0)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.native:
            return self.model(input_ids, attention=self.attention, attention_mask=attention_mask).hidden_states
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def frame(self, ids: list[int], second: list[int] | None = None) -> list[int]:
        """[start] ids [sep] (second [sep]) with the model's own special tokens."""
        head = [self.start_id] if self.start_id is not None else []
        sep = [self.sep_id] if self.sep_id is not None else []
        out = head + ids + sep
        return out + second + sep if second is not None else out

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def encode_many(self, texts: list[str]) -> list[list[int]]:
        """``encode`` of each text, in one tokenizer call (a fast tokenizer batches them in Rust)."""
        return self.tokenizer(list(texts), add_special_tokens=False)["input_ids"] if texts else []


def check_model_dir(path: str | Path) -> None:
    """What a Backbone of ``path`` would refuse about its files, checked without loading weights:
    tokenizer files present, and for an encoderlab checkpoint the tokenizer it was trained with."""
    folder = Path(path)
    meta = _hf_config(folder)
    check_tokenizer_files(folder, "model")
    if meta.get("format") == CHECKPOINT_FORMAT:
        _check_tokenizer_identity(folder, meta)


def _check_tokenizer_identity(folder: Path, meta: dict) -> None:
    """A checkpoint that records the fingerprint of the tokenizer it was trained with (training
    checkpoints do, from the shards' manifest) is refused when the tokenizer files beside it are
    another tokenizer's: its ids would index the wrong embedding rows, silently."""
    recorded = (meta.get("tokenizer") or {}).get("fingerprint")
    if not recorded:
        return

    found = tokenizer_info(load_tokenizer(str(folder)), str(folder))["fingerprint"]
    if found != recorded:
        raise ConfigError(f"{folder}: its tokenizer files (fingerprint {found}) are not the tokenizer the model was "
                          f"trained with ({meta['tokenizer'].get('name')!r}, fingerprint {recorded}); put the original "
                          "tokenizer files back")


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def pad_batch(sequences: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids.to(device), mask.to(device)
