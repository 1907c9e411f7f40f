"""Data: corpus sources, tokenizers, token shards and the packed loader, and toyworld."""

from encoderlab.data.packed import PackedDataset
from encoderlab.data.shards import prepare, read_manifest
from encoderlab.data.sources import SourceConfig, iter_documents, parse_source
from encoderlab.data.tokenizer import ensure_mask_token, load_tokenizer, tokenizer_info, train_tokenizer
from encoderlab.data.toyworld import World, export_tasks
from encoderlab.data.toyworld_baselines import measure_baselines

__all__ = ["PackedDataset", "SourceConfig", "World", "ensure_mask_token", "export_tasks", "iter_documents",
           "load_tokenizer", "measure_baselines", "parse_source", "prepare", "read_manifest", "tokenizer_info",
           "train_tokenizer"]
