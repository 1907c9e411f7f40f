"""The EuroBERT-style encoder, its presets, checkpoints and Hugging Face interop.

This package imports nothing from training, data or evaluation.
"""

from encoderlab.model.attention import (
    PAD_DOCUMENT,
    SequenceLayout,
    build_layout,
    document_ids_from_lengths,
    positions_from_documents,
)
from encoderlab.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from encoderlab.model.config import PRESETS, ModelConfig, preset_names
from encoderlab.model.encoder import Encoder, EncoderOutput, build_encoder
from encoderlab.model.export import export_hf
from encoderlab.model.hf import import_hf

__all__ = [
    "PAD_DOCUMENT", "PRESETS", "CheckpointError", "Encoder", "EncoderOutput", "ModelConfig", "SequenceLayout",
    "build_encoder", "build_layout", "document_ids_from_lengths", "export_hf", "import_hf", "load_checkpoint",
    "positions_from_documents", "preset_names", "save_checkpoint",
]
