"""The fine-tuning protocol: every setting that produces a score, its defaults (the paper's), its
identity (what a cached run is keyed by) and its card (what a report prints).

Defaults follow the paper's evaluation code (EncodEval, HF Trainer; the paper's evaluation setup):
batch 32; AdamW with betas (0.9, 0.95), eps 1e-5 and weight decay 0.1 (not on biases and norm
weights, as the HF Trainer does); gradient clipping 1.0; linear warmup over 10% of the steps then
linear decay to 0 (``transformers.get_linear_schedule_with_warmup``); SC, QA and IR train for at
most 1,000 steps or one epoch, TC for one full epoch; inputs up to 2,048 tokens (the models'
positions; capped at a model's own); retrieval texts prefixed ``"Query: "`` / ``"Document: "``;
bidirectional attention for every model. Every setting is a field of :class:`FinetuneConfig`,
overridable from the CLI (``encoderlab evaluate --set KEY=VALUE``) and a study spec
(``evaluation.protocol``).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Literal

from encoderlab.config import ConfigError
from encoderlab.config import from_dict

# Bumped whenever the code changes what a setting means or how a score is computed, so cached runs
# of older code are never served as results of this one. 2: paper optimizer, schedule, prefixes,
# one retrieval ranking, SQuAD v1.1 rule, data fingerprints.
PROTOCOL_VERSION = "2"

# Settings that change how the work is done, never its result (tested: same scores).
RESULT_NEUTRAL = ("retrieval_chunk_docs",)
# Settings added after version 2, with their defaults: a run at the default is keyed as before they
# existed (its identity omits them), so the runs already recorded stay valid.
ADDED_SETTINGS = {"retrieval_ranking": "corpus"}


@dataclass(kw_only=True)
class FinetuneConfig:
    # length
    max_steps: int = 1000  # SC, QA, IR: at most this many steps, or one epoch if that is shorter
    tc_full_epoch: bool = True  # TC: one full epoch even past max_steps (EncodEval: max_steps -1, 1 epoch)
    batch_size: int = 32
    # optimizer and schedule (HF Trainer AdamW as configured by EncodEval)
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_eps: float = 1e-5
    weight_decay: float = 0.1  # matrices and embeddings; biases and norm weights are not decayed
    grad_clip: float = 1.0
    warmup_ratio: float = 0.1  # ceil(ratio x steps) warmup steps from 0, then linear decay to 0
    # inputs
    max_length: int = 2048  # tokens per input (special tokens included), capped at the model's positions
    attention: Literal["bidirectional", "causal"] = "bidirectional"
    query_prefix: str = "Query: "  # retrieval: prepended to every query
    document_prefix: str = "Document: "  # retrieval: prepended to every "title. text" document
    max_question_tokens: int = 64  # QA: longer questions are truncated
    doc_stride: int = 128  # QA: tokens shared by consecutive windows of a long context
    max_answer_tokens: int = 30  # QA: longest predicted span
    temperature: float = 0.05  # IR: InfoNCE over in-batch negatives, cosine / temperature
    # evaluation
    eval_batch_size: int = 64
    max_eval_examples: int | None = None  # cap validation/test sizes (smoke runs); None = all
    retrieval_chunk_docs: int = 65536  # corpus documents embedded and scored at a time (memory, not results)
    # retrieval: "corpus" ranks every query against the whole corpus (one pass per run), the judged-pool
    # metrics beside; "pool" ranks against the judged pool only (the paper's EncodEval; no corpus pass),
    # and the judged-pool metrics are the scores
    retrieval_ranking: Literal["corpus", "pool"] = "corpus"

    def __post_init__(self) -> None:
        positive = ("max_steps", "batch_size", "eval_batch_size", "max_length", "max_question_tokens",
                    "max_answer_tokens", "retrieval_chunk_docs")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"fine-tuning config: {name} must be a positive integer, got {value!r}")
        for item in fields(self):  # NaN passes every comparison below, so it is refused first
            value = getattr(self, item.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"fine-tuning config: {item.name} must be a finite number, got {value!r}")
        if self.max_eval_examples is not None and self.max_eval_examples <= 0:
            raise ConfigError(f"fine-tuning config: max_eval_examples must be positive or unset, "
                              f"got {self.max_eval_examples}")
        if self.doc_stride < 0:
            raise ConfigError(f"fine-tuning config: doc_stride must be >= 0, got {self.doc_stride}")
        if not 0.0 <= self.warmup_ratio <= 1.0:
            raise ConfigError(f"fine-tuning config: warmup_ratio must be in [0, 1], got {self.warmup_ratio}")
        for name in ("adam_beta1", "adam_beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"fine-tuning config: {name} must be in [0, 1), got {getattr(self, name)}")
        for name in ("adam_eps", "temperature", "grad_clip"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"fine-tuning config: {name} must be positive, got {getattr(self, name)}")
        if self.retrieval_ranking not in ("corpus", "pool"):
            raise ConfigError(f"fine-tuning config: retrieval_ranking must be 'corpus' or 'pool', "
                              f"got {self.retrieval_ranking!r}")
        if self.weight_decay < 0:
            raise ConfigError(f"fine-tuning config: weight_decay must be >= 0, got {self.weight_decay}")

    @classmethod
    def build(cls, values: dict | None = None, settings: list[str] | None = None,
              where: str = "fine-tuning protocol") -> FinetuneConfig:
        """The one way a fine-tuning config is made: the paper's defaults, then ``values`` (flags, a
        study's fields and ``evaluation.protocol``), then ``settings`` (``KEY=VALUE`` texts, as
        ``evaluate --set``; YAML values, strings kept as typed). A key given twice is refused."""
        import yaml


        values = {k: v for k, v in (values or {}).items() if v is not None}
        strings = {f.name for f in fields(cls) if f.type in (str, "str")}
        given: set[str] = set()
        for item in settings or []:
            if "=" not in item:
                raise ConfigError(f"{where}: --set {item!r}: expected KEY=VALUE (e.g. --set adam_beta2=0.999)")
            key, raw = item.split("=", 1)
            key = key.strip()
            if key in given or key in values:
                raise ConfigError(f"{where}: --set {item!r}: {key} is set twice (by a flag or another --set); keep one")
            given.add(key)
            textual = key in strings and not raw.strip().startswith(("'", '"'))
            values[key] = raw if textual or not raw.strip() else yaml.safe_load(raw)  # prefixes keep ': ' and spaces
        return from_dict(cls, values, where=where)

    def check_qa_windows(self, limit: int) -> None:
        """QA windows hold [start] question [sep] context [sep]; consecutive windows share doc_stride
        context tokens, so they advance by (context room - doc_stride). After the longest question
        (``max_question_tokens``) a window of ``limit`` tokens must leave room for at least
        4/3 x doc_stride context tokens: windows then advance by at least a quarter of their context
        and each context token is in at most four windows (at ``max_length`` 128 and the default
        stride 128 a window advanced by one token: 20 questions became 9,979 windows)."""
        room = limit - self.max_question_tokens - 3
        if room <= 0 or 3 * room < 4 * self.doc_stride:
            raise ConfigError(
                f"fine-tuning config: max_length {limit} leaves {max(room, 0)} context tokens per QA window after "
                f"a question of up to max_question_tokens={self.max_question_tokens}; with doc_stride "
                f"{self.doc_stride} QA needs at least {-(-4 * self.doc_stride // 3)} (lower doc_stride or "
                "max_question_tokens, or raise max_length)")

    def settings(self) -> dict:
        """Every setting, as recorded with each run."""
        return asdict(self)


def precision_of(device_type: str) -> str:
    """What the arithmetic of a run is: fp32 weights, bf16 autocast on CUDA, fp32 elsewhere."""
    return "fp32-weights+bf16-autocast" if device_type == "cuda" else "fp32"


def protocol_identity(config: FinetuneConfig, precision: str) -> dict:
    """What a run's result depends on besides model, data, LR and seed (the cache key's protocol)."""
    settings = {k: v for k, v in config.settings().items()
                if k not in RESULT_NEUTRAL and not (k in ADDED_SETTINGS and v == ADDED_SETTINGS[k])}
    return {"version": PROTOCOL_VERSION, "precision": precision, **settings}


def settings_of(identity: dict) -> dict:
    """A protocol identity without the precision, which follows the machine a run happened on: what a
    study spec fixes, to tell its runs from runs of other protocols in the same database."""
    return {k: v for k, v in identity.items() if k != "precision"}


def protocol_id(identity: dict) -> str:
    """Short stable hash of a protocol identity."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def protocol_card(identity: dict, lrs=None, seeds=None) -> list[str]:
    """The protocol as Markdown table lines, for the evaluate summary and the report."""
    rows = [("protocol", f"v{identity.get('version')} (id {protocol_id(identity)})"),
            ("attention", identity.get("attention")),
            ("steps", f"min({identity.get('max_steps')}, one epoch); TC "
                      + ("one full epoch" if identity.get("tc_full_epoch") else "same rule")),
            ("batch", identity.get("batch_size")),
            ("optimizer", f"AdamW betas ({identity.get('adam_beta1')}, {identity.get('adam_beta2')}), eps "
                          f"{identity.get('adam_eps')}, weight decay {identity.get('weight_decay')} (not on biases "
                          f"and norms), clip {identity.get('grad_clip')}"),
            ("schedule", f"linear warmup {identity.get('warmup_ratio')} of the steps, then linear decay to 0"),
            ("LR selection", "best mean validation score over seeds; test reported at that LR"),
            ("max length", f"{identity.get('max_length')} tokens (capped at the model's positions)"),
            ("retrieval", f"prefixes {identity.get('query_prefix')!r} / {identity.get('document_prefix')!r}; "
                          f"mean pooling, cosine, InfoNCE temperature {identity.get('temperature')}"
                          + ("; ranked against the judged pool only (the paper's EncodEval)"
                             if identity.get("retrieval_ranking", "corpus") == "pool" else "")),
            ("QA", f"question <= {identity.get('max_question_tokens')} tokens, doc stride "
                   f"{identity.get('doc_stride')}, answers <= {identity.get('max_answer_tokens')} tokens"),
            ("precision", identity.get("precision")),
            ("evaluation cap", "none (full splits)" if identity.get("max_eval_examples") is None
             else f"first {identity.get('max_eval_examples')} examples of validation and test")]
    if lrs is not None:
        rows.insert(4, ("LR grid", ", ".join(f"{lr:g}" for lr in lrs)))
    if seeds is not None:
        rows.insert(5, ("seeds", ", ".join(str(s) for s in seeds)))
    return ["| setting | value |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows]]
