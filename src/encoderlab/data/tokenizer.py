"""Tokenizers: any Hugging Face tokenizer, or a new byte-level BPE trained with ``tokenizers``.

Every encoderlab tokenizer has a mask token. A tokenizer without one gets it explicitly: Llama-3
maps ``<|reserved_special_token_0|>`` (id 128002) to the mask role, as the authors did; any other
gets a new ``<mask>`` token. The choice is recorded in the shard manifest.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable
from pathlib import Path

from encoderlab.config import ConfigError
from encoderlab.data.manifest import existing_preparation, staging_dir
from encoderlab.io import atomic_directory

LLAMA3_MASK = "<|reserved_special_token_0|>"
TRAINED_SPECIALS = ["<pad>", "<s>", "</s>", "<mask>"]  # ids 0, 1, 2, 3
MIN_TRAINED_VOCAB = 300


def load_tokenizer(name_or_path: str):
    """A fast tokenizer from a local directory or a hub id, with a mask token ensured."""
    tokenizer = _load_fast(name_or_path)
    ensure_mask_token(tokenizer)
    return tokenizer


# files one of which a tokenizer directory holds (fast: tokenizer.json; slow sources it is built from)
TOKENIZER_SOURCES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model",
                     "sentencepiece.bpe.model")


def check_tokenizer_files(directory: str | Path, what: str = "tokenizer") -> None:
    """A local directory without any tokenizer file is refused: transformers would build an empty
    tokenizer from its config.json alone (one token; every text encodes to no ids)."""
    local = Path(directory)
    if local.is_dir() and not any((local / name).is_file() for name in TOKENIZER_SOURCES):
        raise ConfigError(f"{what} {str(directory)!r}: the directory has no tokenizer files (expected one of "
                          f"{', '.join(TOKENIZER_SOURCES)})")


def _load_fast(name_or_path: str):
    from transformers import AutoTokenizer

    check_tokenizer_files(name_or_path)
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
                         documents: Iterable[str] | None = None, source=None, overwrite: bool = False) -> tuple:
    """The tokenizer to prepare ``shard_dir`` with: a Hugging Face tokenizer (mask token ensured), or a
    byte-level BPE of ``train_vocab`` tokens trained on ``documents`` (the prepare's source). Nothing is
    written: :func:`encoderlab.data.shards.prepare` saves it to ``<shard_dir>/tokenizer`` together with
    the shards. A trained tokenizer is reused, not retrained, from a complete shard directory (or an
    interrupted preparation) that was made with one of the same size from the same ``source`` (when
    given). A complete directory made with another tokenizer is refused here, before any training,
    unless ``overwrite``. Returns (tokenizer, name recorded in the manifest, how the mask token was set)."""
    if name:  # a name wins over train_vocab (study specs carry a default vocabulary size)
        tokenizer = _load_fast(name)
        origin = ensure_mask_token(tokenizer)
        return tokenizer, name, origin
    if train_vocab is None:
        raise ConfigError(f"{shard_dir}: give a tokenizer name or a vocabulary size to train one")
    check_vocab_size(train_vocab)

    shard_dir = Path(shard_dir)
    trained = {"vocab_size": train_vocab}
    source_identity = source.identity() if source is not None else None
    if not overwrite:
        previous = existing_preparation(shard_dir)
        if previous is not None and previous.get("complete"):
            same_source = source_identity is None or previous.get("settings", {}).get("source") == source_identity
            if previous["tokenizer"].get("trained") == trained and same_source:
                return _reuse_trained(shard_dir / "tokenizer", trained), str(shard_dir / "tokenizer"), "existing"
            made_with = previous["tokenizer"].get("trained")
            made_with = (f"a trained tokenizer of {made_with['vocab_size']} tokens" if made_with
                         else f"tokenizer {previous['tokenizer']['name']!r}")
            if previous["tokenizer"].get("trained") != trained:
                what = f"{made_with}, not --train-tokenizer {train_vocab}"
            elif "settings" not in previous:
                what = "an older encoderlab, which did not record its settings"
            else:
                what = f"other source settings (made from {previous.get('source')!r})"
            raise ConfigError(f"{shard_dir}: already prepared with {what}; pass --overwrite to rebuild it, "
                              "or choose another output directory")
        staged = existing_preparation(staging_dir(shard_dir), staged=True)
        if (staged is not None and source_identity is not None and staged["tokenizer"].get("trained") == trained
                and staged.get("settings", {}).get("source") == source_identity):
            with contextlib.suppress(ConfigError):  # a broken staged tokenizer: train a new one
                tokenizer = _reuse_trained(staging_dir(shard_dir) / "tokenizer", trained)
                if tokenizer_info(tokenizer, "")["fingerprint"] == staged["tokenizer"]["fingerprint"]:
                    return tokenizer, str(shard_dir / "tokenizer"), "existing"
    tokenizer = train_tokenizer(documents if documents is not None else [], train_vocab)
    tokenizer.encoderlab_trained = trained
    return tokenizer, str(shard_dir / "tokenizer"), "existing"


def _reuse_trained(path: Path, trained: dict):
    tokenizer = load_tokenizer(str(path))
    tokenizer.encoderlab_trained = trained
    return tokenizer


def check_vocab_size(vocab_size) -> None:
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < MIN_TRAINED_VOCAB:
        raise ConfigError(f"tokenizer vocab_size {vocab_size!r}: byte-level BPE needs at least {MIN_TRAINED_VOCAB} "
                          "(256 bytes + specials)")
    if vocab_size > 2**32:
        raise ConfigError(f"tokenizer vocab_size {vocab_size}: at most {2**32} token ids fit the shards (uint32)")


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


def short_vocabulary_note(tokenizer, requested: int | None) -> str:
    """What to tell the user when the BPE trainer stopped below the requested size (a small corpus
    has fewer merges to learn): the model's vocabulary, and so its size, follows the tokenizer."""
    if requested is None or len(tokenizer) >= requested:
        return ""
    return (f"the byte-level BPE trainer learnt {len(tokenizer):,} tokens of the {requested:,} requested (the corpus "
            f"offers no more merges); models trained on these shards get a vocabulary of {len(tokenizer):,}")


def train_tokenizer(documents: Iterable[str], vocab_size: int, output_dir: str | Path | None = None,
                    overwrite: bool = False):
    """Trains a byte-level BPE tokenizer; special tokens <pad>=0, <s>=1, </s>=2, <mask>=3.

    Saved (atomically) to ``output_dir`` when given; an existing ``output_dir`` is refused before
    any training unless ``overwrite``. A corpus without any non-empty document is refused."""
    check_vocab_size(vocab_size)
    if output_dir is not None:
        output_dir = Path(output_dir)
        if output_dir.exists() and not output_dir.is_dir():
            raise ConfigError(f"{output_dir}: exists and is not a directory; expected a tokenizer output directory")
        if output_dir.exists() and not overwrite:
            raise FileExistsError(f"{output_dir}: already exists (pass --overwrite to replace it)")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=TRAINED_SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    seen = {"documents": 0}

    def counted(texts):
        for text in texts:
            if not isinstance(text, str):
                raise ConfigError(f"tokenizer training: a document is {type(text).__name__}, expected text")
            if text.strip():
                seen["documents"] += 1
            yield text

    backend.train_from_iterator(counted(documents), trainer)
    if not seen["documents"]:
        raise ConfigError("tokenizer training: the corpus has no non-empty documents; expected text to train on")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>", mask_token="<mask>",
    )
    if output_dir is not None:
        with atomic_directory(output_dir, overwrite=overwrite) as tmp:
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
