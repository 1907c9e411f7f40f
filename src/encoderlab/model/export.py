"""Exports of an encoderlab checkpoint: transformers' EuroBERT (bidirectional) or Llama (decoder
use), and a sentence-transformers folder. The encoder exports carry a tokenizer that frames texts
as encoderlab's evaluation does, so an exported model is given the ids that were evaluated. The
weight and config mapping is :mod:`encoderlab.model.hf`'s."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from encoderlab.io import atomic_directory
from encoderlab.model.checkpoint import CheckpointError, copy_tokenizer_files, load_checkpoint
from encoderlab.model.encoder import Encoder
from encoderlab.model.hf import _hf_config, to_hf_state_dict

EXPORT_TARGETS = ("eurobert", "llama", "sentence-transformers")
SENTENCE_TRANSFORMERS_PROMPTS = {"query": "Query: ", "document": "Document: "}


def export_hf(
    checkpoint: str | Path | Encoder,
    output_dir: str | Path,
    target: str = "eurobert",
    *,
    tokenizer_dir: str | Path | None = None,
    overwrite: bool = False,
    dtype: torch.dtype | None = None,
) -> Path:
    """Writes a transformers checkpoint (safetensors + config + tokenizer files) to ``output_dir``."""
    if target not in EXPORT_TARGETS:
        raise ValueError(f"export target: expected one of {EXPORT_TARGETS}, got {target!r}")
    if target == "sentence-transformers":
        return export_sentence_transformers(checkpoint, output_dir, tokenizer_dir=tokenizer_dir, overwrite=overwrite)
    from transformers import EuroBertForMaskedLM, LlamaForCausalLM

    if isinstance(checkpoint, Encoder):
        model = checkpoint
        source_dir = None
    else:
        source_dir = Path(checkpoint)
        model = load_checkpoint(source_dir)
    _check_exportable(model, target)
    hf_cls = EuroBertForMaskedLM if target == "eurobert" else LlamaForCausalLM
    hf_config = _hf_config(model.config, target)
    with torch.device("meta"):
        hf_model = hf_cls(hf_config)
    hf_model.load_state_dict(to_hf_state_dict(model), strict=True, assign=True)
    if dtype is not None:
        hf_model = hf_model.to(dtype)
    tokenizer_source = tokenizer_dir
    if tokenizer_source is None and source_dir is not None and (source_dir / "tokenizer_config.json").is_file():
        tokenizer_source = source_dir
    output_dir = Path(output_dir)
    with atomic_directory(output_dir, overwrite=overwrite) as tmp:
        hf_model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer_source is not None:
            copy_tokenizer_files(tokenizer_source, tmp)
            if target == "eurobert":
                frame_like_encoderlab(tmp)
    return output_dir


def _check_exportable(model: Encoder, target: str) -> None:
    if not model.config.is_paper_architecture:
        raise ValueError(
            f"export --target {target}: the model uses {', '.join(model.config.family_features())} (an imported "
            "decoder family), which no export target (eurobert, llama, sentence-transformers) can represent: "
            "transformers has no class that runs it bidirectionally; keep its encoderlab checkpoint as the "
            "evaluation path")


def frame_like_encoderlab(directory: Path) -> None:
    """Makes the tokenizer in ``directory`` add the special tokens encoderlab's evaluation frames
    every text with (``[start] text [sep]``: cls or bos, then sep or eos;
    ``encoderlab.evaluation.backbone.Backbone.frame``), so that transformers and sentence-transformers
    users embed exactly what was evaluated. A tokenizer whose post-processor adds nothing (a trained
    BPE, most decoders' tokenizers) would otherwise give the exported model other inputs. Checked
    after writing: the exported tokenizer's ids must be the framed ids, or the export fails."""
    from tokenizers import Tokenizer, processors
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(directory)
    start = tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id
    sep = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
    single, pair, specials = "$A:0", "$A:0 $B:1", []
    if start is not None:
        token = tok.convert_ids_to_tokens(start)
        single, pair, specials = f"{token}:0 {single}", f"{token}:0 $A:0", [(token, start)]
    if sep is not None:
        token = tok.convert_ids_to_tokens(sep)
        single = f"{single} {token}:0"
        pair = f"{pair} {token}:0 $B:1 {token}:1" if start is not None else f"$A:0 {token}:0 $B:1 {token}:1"
        specials = [*specials, (token, sep)] if (token, sep) not in specials else specials
    elif start is not None:
        pair = f"{pair} $B:1"
    backend = Tokenizer.from_file(str(directory / "tokenizer.json"))
    backend.post_processor = processors.TemplateProcessing(single=single, pair=pair, special_tokens=specials)
    backend.save(str(directory / "tokenizer.json"))
    config_path = directory / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    if "add_bos_token" in config or "add_eos_token" in config or "Llama" in str(config.get("tokenizer_class")):
        # Llama-style tokenizer classes rebuild their post-processor from these flags when loaded
        config.update(add_bos_token=start is not None, add_eos_token=sep is not None)
        config_path.write_text(json.dumps(config, indent=2) + "\n")
    check = AutoTokenizer.from_pretrained(directory)
    text = "framing check: a b c"
    plain = check(text, add_special_tokens=False)["input_ids"]
    expected = ([start] if start is not None else []) + plain + ([sep] if sep is not None else [])
    if check(text)["input_ids"] != expected:
        raise CheckpointError(f"{directory}: the exported tokenizer frames texts as {check(text)['input_ids'][:3]}..., "
                              f"not as encoderlab's evaluation does ({expected[:3]}...); the export would embed "
                              "differently from the evaluation")


def export_sentence_transformers(
    checkpoint: str | Path | Encoder,
    output_dir: str | Path,
    *,
    tokenizer_dir: str | Path | None = None,
    overwrite: bool = False,
    max_seq_length: int | None = None,
) -> Path:
    """A sentence-transformers model folder: the encoder as transformers' EuroBERT (bidirectional),
    mean pooling, and the protocol's IR prefixes as prompts ``query`` / ``document``.

    ``SentenceTransformer(path)`` loads it without remote code. A model of an imported decoder
    family (q/k norms, biases, Gemma norms, ...) is refused: transformers has no class that runs
    those architectures bidirectionally; its encoderlab checkpoint stays the evaluation path.
    Needs the ``sentence-transformers`` package.
    """
    try:
        from sentence_transformers import SentenceTransformer
        try:  # sentence-transformers >= 6 moved the modules; the old path still imports, with a warning
            from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
        except ImportError:
            from sentence_transformers.models import Pooling, Transformer
    except ImportError:
        raise ValueError("export --target sentence-transformers needs the sentence-transformers package "
                         "(pip install sentence-transformers)") from None
    model = checkpoint if isinstance(checkpoint, Encoder) else load_checkpoint(checkpoint)
    _check_exportable(model, "sentence-transformers")
    if tokenizer_dir is None and not isinstance(checkpoint, Encoder):
        tokenizer_dir = checkpoint if (Path(checkpoint) / "tokenizer_config.json").is_file() else None
    if tokenizer_dir is None:
        raise ValueError("export --target sentence-transformers: the checkpoint has no tokenizer files; pass --tokenizer")
    output_dir = Path(output_dir)
    with atomic_directory(output_dir, overwrite=overwrite) as tmp:
        transformer_dir = export_hf(model, tmp / "eurobert", "eurobert", tokenizer_dir=tokenizer_dir)
        length = min(max_seq_length or 2048, model.config.max_position_embeddings)
        body = Transformer(str(transformer_dir), max_seq_length=length)
        pooling = Pooling(model.config.hidden_size, pooling_mode="mean")
        st_model = SentenceTransformer(modules=[body, pooling], prompts=dict(SENTENCE_TRANSFORMERS_PROMPTS),
                                       similarity_fn_name="cosine", device="cpu")
        st_model.save(str(tmp / "model"))
        for item in (tmp / "model").iterdir():
            item.rename(tmp / item.name)
        (tmp / "model").rmdir()
        import shutil

        shutil.rmtree(tmp / "eurobert")
    return output_dir
