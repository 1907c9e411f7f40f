"""Pretraining objectives: CLM (causal, next token), MLM (bidirectional, masked tokens) and MNTP
(LLM2Vec's masked next-token prediction: bidirectional, masked token i predicted at position i-1).

An objective turns a batch of packed token sequences into a summed loss and the number of
predicted tokens; the training loop divides by the global count, so the loss is token-weighted
across micro-batches and ranks. The LM head runs only at predicted positions (sparse prediction)
and through :func:`linear_cross_entropy`, which never materialises the full logits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from torch import nn

from encoderlab.model import PAD_DOCUMENT
from encoderlab.objectives.cross_entropy import IGNORE_INDEX, linear_cross_entropy
from encoderlab.objectives.masking import counter_uniforms

FRACTION_TOLERANCE = 1e-6


@dataclass
class TokenBatch:
    """Packed sequences: ``document_ids`` mark documents (-1 = padding), ``sample_index`` is global."""

    input_ids: Tensor  # (B, T)
    sample_index: Tensor  # (B,) int64, position of each sample in the run's global order
    document_ids: Tensor | None = None  # (B, T)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> TokenBatch:
        move = lambda t: None if t is None else t.to(device, non_blocking=non_blocking)  # noqa: E731
        return TokenBatch(move(self.input_ids), move(self.sample_index), move(self.document_ids))


@dataclass
class LossOutput:
    loss_sum: Tensor  # scalar fp32, summed over predicted tokens
    num_targets: Tensor  # scalar int64, tokens predicted (stays on device: no host sync)


def flat_positions(mask: Tensor) -> Tensor:
    """Flat indices of the True entries of a (B, T) mask.

    The count is data-dependent, so this waits for the device once; doing it before the forward
    pass, and gathering with the indices afterwards, keeps the GPU queue full between the
    encoder and the LM head (boolean indexing there would stall it a second time).
    """
    return mask.flatten().nonzero().squeeze(1)


class CLMObjective:
    """Next-token prediction under a causal mask, within each document."""

    name = "clm"
    attention: Literal["causal"] = "causal"

    def __init__(self, chunk_size: int = 4096, isolate_documents: bool = True, logit_softcap: float | None = None):
        self.chunk_size = chunk_size
        self.isolate_documents = isolate_documents
        self.logit_softcap = logit_softcap  # the model's final_logit_softcap (Gemma 2)

    def prediction_mask(self, batch: TokenBatch) -> Tensor:
        """(B, T) True where position t predicts token t+1 of the same document."""
        ids = batch.input_ids
        mask = torch.zeros_like(ids, dtype=torch.bool)
        if batch.document_ids is None:
            mask[:, :-1] = True
        else:
            docs = batch.document_ids
            same = docs[:, 1:] == docs[:, :-1] if self.isolate_documents else docs[:, 1:] != PAD_DOCUMENT
            mask[:, :-1] = same & (docs[:, :-1] != PAD_DOCUMENT)
        return mask

    def num_targets(self, batch: TokenBatch, step: int) -> Tensor:
        return self.prediction_mask(batch).sum()

    def __call__(self, model: nn.Module, batch: TokenBatch, step: int) -> LossOutput:
        predict = self.prediction_mask(batch)
        index = flat_positions(predict)
        targets = torch.roll(batch.input_ids, shifts=-1, dims=1).flatten().index_select(0, index)

        def head(hidden: Tensor, weight: Tensor) -> Tensor:
            return linear_cross_entropy(hidden.flatten(0, 1).index_select(0, index), weight, targets, self.chunk_size,
                                        self.logit_softcap)

        out = model(
            batch.input_ids, attention=self.attention, document_ids=batch.document_ids,
            isolate_documents=self.isolate_documents, head=head,
        )
        return LossOutput(out.head_output, predict.sum())


class MLMObjective:
    """Masked-token prediction under bidirectional attention.

    A fraction ``ratio`` of the non-special, non-padding tokens is selected (independently per
    token; ``ratio_schedule(step)`` when the ratio changes over training); selected tokens become the mask token (``mask_fraction``), a random regular token
    (``random_fraction``) or stay unchanged (``keep_fraction``). Default 100% mask token, as the
    authors' code; BERT's 80/10/10 is ``(0.8, 0.1, 0.1)``. Loss only on selected tokens, LM head
    only at selected positions. Masks are a pure function of (seed, sample index, step).
    """

    name = "mlm"
    attention: Literal["bidirectional"] = "bidirectional"

    def __init__(
        self,
        ratio: float,
        *,
        mask_token_id: int,
        vocab_size: int,
        special_token_ids: tuple[int, ...] = (),
        mask_fraction: float = 1.0,
        random_fraction: float = 0.0,
        keep_fraction: float = 0.0,
        seed: int = 0,
        chunk_size: int = 4096,
        isolate_documents: bool = True,
        sparse_head: bool = True,
        logit_softcap: float | None = None,
        ratio_schedule=None,
    ):
        if not 0.0 < ratio < 1.0:
            raise ValueError(f"MLM masking ratio: expected a value in (0, 1), got {ratio}")
        fractions = (mask_fraction, random_fraction, keep_fraction)
        if any(f < 0 for f in fractions) or not math.isclose(sum(fractions), 1.0, abs_tol=FRACTION_TOLERANCE):
            raise ValueError(
                f"MLM replacement fractions (mask, random, keep) = {fractions}: expected non-negative values "
                f"summing to 1 (tolerance {FRACTION_TOLERANCE})"
            )
        if not 0 <= mask_token_id < vocab_size:
            raise ValueError(f"mask_token_id {mask_token_id} is outside the vocabulary (size {vocab_size})")
        self.ratio = ratio
        # a function of the (global) step giving the ratio in force, e.g. one that falls over a phase;
        # None: ``ratio`` throughout. Masks stay a pure function of (seed, sample index, step).
        self.ratio_schedule = ratio_schedule
        self.mask_token_id = mask_token_id
        self.mask_fraction, self.random_fraction = mask_fraction, random_fraction
        self.seed = seed
        self.chunk_size = chunk_size
        self.isolate_documents = isolate_documents
        # False reproduces the authors' code: logits at every position, unselected ones ignored.
        self.sparse_head = sparse_head
        self.logit_softcap = logit_softcap  # the model's final_logit_softcap (Gemma 2)
        special = sorted(set(special_token_ids) | {mask_token_id})
        self._special = torch.tensor(special, dtype=torch.long)
        regular = torch.ones(vocab_size, dtype=torch.bool)
        regular[self._special] = False
        self._regular_ids = regular.nonzero().squeeze(1)

    def ratio_at(self, step: int) -> float:
        """The masking ratio in force at ``step``."""
        return self.ratio if self.ratio_schedule is None else self.ratio_schedule(step)

    def corrupt(self, batch: TokenBatch, step: int) -> tuple[Tensor, Tensor]:
        """(corrupted input ids, selected positions) for ``batch`` at ``step``."""
        ids = batch.input_ids
        length = ids.shape[1]
        special = self._special.to(ids.device)
        eligible = ~torch.isin(ids, special)
        if batch.document_ids is not None:
            eligible &= batch.document_ids != PAD_DOCUMENT
        # streams: 0 selects, 1 picks the replacement, 2 the random token (hashed in one pass)
        streams = (0, 1, 2) if self.random_fraction > 0 else (0, 1)
        uniforms = counter_uniforms(self.seed, batch.sample_index, step, length, streams)
        select_u, replace_u = uniforms[0], uniforms[1]
        selected = eligible & (select_u < self.ratio_at(step))
        corrupted = torch.where(selected & (replace_u < self.mask_fraction), self.mask_token_id, ids)
        if self.random_fraction > 0:
            regular = self._regular_ids.to(ids.device)
            token_u = uniforms[2]
            random_ids = regular[(token_u * len(regular)).long().clamp_(max=len(regular) - 1)]
            use_random = selected & (replace_u >= self.mask_fraction) & (
                replace_u < self.mask_fraction + self.random_fraction
            )
            corrupted = torch.where(use_random, random_ids, corrupted)
        return corrupted, selected

    def num_targets(self, batch: TokenBatch, step: int) -> Tensor:
        return self.corrupt(batch, step)[1].sum()

    def __call__(self, model: nn.Module, batch: TokenBatch, step: int) -> LossOutput:
        corrupted, selected = self.corrupt(batch, step)
        if self.sparse_head:
            index = flat_positions(selected)
            targets = batch.input_ids.flatten().index_select(0, index)

            def head(hidden: Tensor, weight: Tensor) -> Tensor:  # the LM head only at selected positions
                return linear_cross_entropy(hidden.flatten(0, 1).index_select(0, index), weight, targets,
                                            self.chunk_size, self.logit_softcap)
        else:
            targets = torch.where(selected, batch.input_ids, IGNORE_INDEX).flatten()

            def head(hidden: Tensor, weight: Tensor) -> Tensor:
                return linear_cross_entropy(hidden.flatten(0, 1), weight, targets, self.chunk_size, self.logit_softcap)

        out = model(
            corrupted, attention=self.attention, document_ids=batch.document_ids,
            isolate_documents=self.isolate_documents, head=head,
        )
        return LossOutput(out.head_output, selected.sum())


class MNTPObjective(MLMObjective):
    """Masked next-token prediction (LLM2Vec, BehnamGhader et al. 2024, arXiv 2404.05961).

    Tokens are selected and corrupted exactly as MLM, attention is bidirectional, but the token at
    a selected position i is predicted from the hidden state at i-1, as the decoder's LM head was
    trained to. A selected token that opens a document (nothing before it in the document) has no
    position to be predicted from and is not a target.
    """

    name = "mntp"

    def targets(self, batch: TokenBatch, step: int) -> tuple[Tensor, Tensor]:
        """(corrupted input ids, (B, T) mask of the predicted positions i, whose source is i-1)."""
        corrupted, selected = self.corrupt(batch, step)
        has_previous = torch.zeros_like(selected)
        if batch.document_ids is None:
            has_previous[:, 1:] = True
        elif self.isolate_documents:
            has_previous[:, 1:] = batch.document_ids[:, 1:] == batch.document_ids[:, :-1]
        else:
            has_previous[:, 1:] = batch.document_ids[:, :-1] != PAD_DOCUMENT
        return corrupted, selected & has_previous

    def num_targets(self, batch: TokenBatch, step: int) -> Tensor:
        return self.targets(batch, step)[1].sum()

    def __call__(self, model: nn.Module, batch: TokenBatch, step: int) -> LossOutput:
        corrupted, predicted = self.targets(batch, step)
        index = flat_positions(predicted)  # flat positions i of the targets; i - 1 stays in the row
        targets = batch.input_ids.flatten().index_select(0, index)

        def head(hidden: Tensor, weight: Tensor) -> Tensor:  # the LM head at i - 1 only
            return linear_cross_entropy(hidden.flatten(0, 1).index_select(0, index - 1), weight, targets,
                                        self.chunk_size, self.logit_softcap)

        out = model(
            corrupted, attention=self.attention, document_ids=batch.document_ids,
            isolate_documents=self.isolate_documents, head=head,
        )
        return LossOutput(out.head_output, predicted.sum())


def rows_of(batch: TokenBatch, index: Tensor) -> TokenBatch:
    """The rows ``index`` of ``batch`` (their global sample indices kept, so masks are unchanged)."""
    return TokenBatch(batch.input_ids.index_select(0, index), batch.sample_index.index_select(0, index),
                      None if batch.document_ids is None else batch.document_ids.index_select(0, index))


class MixtureObjective:
    """CLM and a masked objective (MLM or MNTP) mixed in one phase (GPT-BERT, arXiv 2410.24159).

    Each *sample* of a step is trained with CLM (causal attention) with probability
    ``clm_fraction``, else with the masked objective (bidirectional attention), by a pure function
    of (seed, sample index, step), as masks are: the choice does not depend on how samples are cut
    into micro-batches or spread over processes, so resuming and re-sharding stay exact. A
    micro-batch runs as two parts, one forward pass per objective on its rows; the loss is the sum
    over both objectives' targets, so the step's loss stays token-weighted. A part with no sample
    runs on the micro-batch's first row at weight 0 (no gradient, no target): every process then
    makes the same number of forward passes, which FSDP2's parameter all-gathers require.
    """

    name = "mixture"
    SELECT_STREAM = 7  # the counter stream of the per-sample choice (MLM uses 0-2)

    def __init__(self, clm: CLMObjective, masked: MLMObjective, clm_fraction: float, seed: int = 0):
        if not 0.0 < clm_fraction < 1.0:
            raise ValueError(f"mixture: clm_fraction must be in (0, 1), got {clm_fraction}")
        self.clm, self.masked, self.clm_fraction, self.seed = clm, masked, clm_fraction, seed

    def is_clm(self, batch: TokenBatch, step: int) -> Tensor:
        """(B,) True for the samples trained with CLM at ``step``."""
        uniforms = counter_uniforms(self.seed, batch.sample_index, step, 1, (self.SELECT_STREAM,))
        return uniforms[0][:, 0] < self.clm_fraction

    def parts(self, batch: TokenBatch, step: int) -> list[tuple[object, TokenBatch, float]]:
        """(objective, its rows of ``batch``, weight) for CLM, then the masked objective."""
        chosen = self.is_clm(batch, step)
        out = []
        for objective, rows in ((self.clm, chosen), (self.masked, ~chosen)):
            index, weight = flat_positions(rows[:, None]), 1.0
            if index.numel() == 0:  # no sample of this objective: a forward at weight 0 (see the class doc)
                index, weight = torch.zeros(1, dtype=torch.long, device=rows.device), 0.0
            out.append((objective, rows_of(batch, index), weight))
        return out

    def num_targets(self, batch: TokenBatch, step: int) -> Tensor:
        return sum(o.num_targets(b, step) for o, b, weight in self.parts(batch, step) if weight)


def objective_parts(objective, batch: TokenBatch, step: int) -> list[tuple[object, TokenBatch, float]]:
    """What a micro-batch runs: ``(objective, rows, weight)`` per forward pass (one for a plain objective)."""
    if isinstance(objective, MixtureObjective):
        return objective.parts(batch, step)
    return [(objective, batch, 1.0)]


__all__ = ["CLMObjective", "MLMObjective", "MNTPObjective", "MixtureObjective", "TokenBatch", "LossOutput",
           "IGNORE_INDEX", "objective_parts", "rows_of"]
