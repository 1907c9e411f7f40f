"""Tokenizers: any Hugging Face tokenizer, or a new byte-level BPE trained with ``tokenizers``.

Every encoderlab tokenizer has a mask token. A tokenizer without one gets it explicitly: Llama-3
maps ``<|reserved_special_token_0|>`` (id 128002) to the mask role, as the authors did; any other
gets a new ``<mask>`` token. The choice is recorded in the shard manifest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from encoderlab.config import ConfigError
from encoderlab.io import atomic_directory

LLAMA3_MASK = "<|reserved_special_token_0|>"
TRAINED_SPECIALS = ["<pad>", "<s>", "</s>", "<mask>"]  # ids 0, 1, 2, 3


def load_tokenizer(name_or_path: str):
    """A fast tokenizer from a local directory or a hub id, with a mask token ensured."""
    tokenizer = _load_fast(name_or_path)
    ensure_mask_token(tokenizer)
    return tokenizer


def _load_fast(name_or_path: str):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    except Exception as err:
        raise ConfigError(
            f"tokenizer {name_or_path!r}: could not be loaded ({type(err).__name__}: {err}); give a local directory "
            "with tokenizer files, or train one with `encoderlab tokenizer train`"
        ) from None
    if not tokenizer.is_fast:
        raise ConfigError(f"tokenizer {name_or_path!r}: a fast (Rust) tokenizer is needed for batched encoding")
    return tokenizer


def tokenizer_for_shards(shard_dir: str | Path, *, name: str | None = None, train_vocab: int | None = None,
                         documents: Iterable[str] | None = None) -> tuple:
    """The tokenizer of a shard directory, kept in ``<shard_dir>/tokenizer``: a Hugging Face tokenizer
    (mask token ensured, saved there once), or a byte-level BPE trained on ``documents`` (reused when
    already there). Returns (tokenizer, name recorded in the manifest, how the mask token was set)."""
    tokenizer_dir = Path(shard_dir) / "tokenizer"
    if name:
        tokenizer = _load_fast(name)
        origin = ensure_mask_token(tokenizer)
        if not (tokenizer_dir / "tokenizer_config.json").is_file():
            with atomic_directory(tokenizer_dir, overwrite=True) as tmp:
                tokenizer.save_pretrained(tmp)
        return tokenizer, name, origin
    if train_vocab is None:
        raise ConfigError(f"{shard_dir}: give a tokenizer name or a vocabulary size to train one")
    if (tokenizer_dir / "tokenizer.json").is_file():
        return load_tokenizer(str(tokenizer_dir)), str(tokenizer_dir), "existing"
    return train_tokenizer(documents or [], train_vocab, tokenizer_dir), str(tokenizer_dir), "existing"


def ensure_mask_token(tokenizer) -> str:
    """Gives ``tokenizer`` a mask token if it has none; returns how ('existing', 'mapped', 'added')."""
    if tokenizer.mask_token is not None:
        return "existing"
    vocab = tokenizer.get_vocab()
    if LLAMA3_MASK in vocab:
        tokenizer.mask_token = LLAMA3_MASK
        return "mapped"
    tokenizer.add_special_tokens({"mask_token": "<mask>"})
    return "added"


def train_tokenizer(documents: Iterable[str], vocab_size: int, output_dir: str | Path, overwrite: bool = False):
    """Trains a byte-level BPE tokenizer; special tokens <pad>=0, <s>=1, </s>=2, <mask>=3."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 300:
        raise ConfigError(f"tokenizer vocab_size {vocab_size}: byte-level BPE needs at least 300 (256 bytes + specials)")
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=TRAINED_SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(documents, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>", mask_token="<mask>",
    )
    with atomic_directory(Path(output_dir), overwrite=overwrite) as tmp:
        tokenizer.save_pretrained(tmp)
    return tokenizer


def tokenizer_info(tokenizer, name: str, mask_origin: str = "existing") -> dict:
    """Identity of a tokenizer as recorded in manifests; ``fingerprint`` changes with any vocab/rule change."""
    specials = {k: getattr(tokenizer, f"{k}_token_id") for k in ("bos", "eos", "pad", "mask")}
    content = tokenizer.backend_tokenizer.to_str() + repr(sorted(specials.items()))
    return {
        "name": name, "vocab_size": len(tokenizer), "fingerprint": hashlib.sha256(content.encode()).hexdigest()[:16],
        "mask_token": tokenizer.mask_token, "mask_origin": mask_origin,
        **{f"{k}_token_id": v for k, v in specials.items()},
    }


def encode_documents(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of each document, framed with bos/eos as the tokenizer defines them (batched, Rust)."""
    encoded = tokenizer(texts, add_special_tokens=False, return_attention_mask=False)["input_ids"]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    head, tail = ([bos] if bos is not None else []), ([eos] if eos is not None else [])
    return [head + ids + tail for ids in encoded]
