"""The backbone the fine-tuning benchmarks measure: a preset's encoder, randomly initialised (seed
0), with a 2,048-token tokenizer trained on 5,000 toyworld documents, saved as an encoderlab
checkpoint. Speed does not depend on what the weights learnt, so no pretraining is needed."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from encoderlab.data import iter_documents, parse_source, train_tokenizer  # noqa: E402
from encoderlab.model import ModelConfig, build_encoder, save_checkpoint  # noqa: E402


def random_toyworld_checkpoint(preset: str, folder: str | Path) -> Path:
    """Writes the checkpoint under ``folder`` (``tok/`` and ``model/``) and returns its path."""
    folder = Path(folder)
    tokenizer = train_tokenizer(iter_documents(parse_source("toyworld", toyworld_documents=5000)), 2048, folder / "tok")
    config = ModelConfig.from_name(preset, vocab_size=max(len(tokenizer), 512), pad_token_id=0, bos_token_id=1,
                                   eos_token_id=2, mask_token_id=3)
    return save_checkpoint(build_encoder(config, seed=0), folder / "model", tokenizer_dir=folder / "tok")
