"""What each phase of a run trains: its objective (CLM, MLM, MNTP, or a mixture of CLM with one of
them; a masking ratio that may change over the phase) and the weights it leaves frozen."""

from __future__ import annotations

import re

from torch import nn

from encoderlab.objectives import CLMObjective, MixtureObjective, MLMObjective, MNTPObjective
from encoderlab.training.config import PretrainConfig, freeze_spec


def build_objectives(config: PretrainConfig) -> list:
    model = config.model
    special = tuple(i for i in (model.pad_token_id, model.bos_token_id, model.eos_token_id) if i is not None)
    objectives = []
    for phase in config.phases:
        clm = CLMObjective(chunk_size=config.loss_chunk_size, isolate_documents=config.isolate_documents,
                           logit_softcap=model.final_logit_softcap)
        if phase.objective == "clm":
            objectives.append(clm)
            continue
        kind = phase.masked_objective if phase.objective == "mixture" else phase.objective
        masked = (MNTPObjective if kind == "mntp" else MLMObjective)(
            phase.mask_ratio, mask_token_id=model.mask_token_id, vocab_size=model.vocab_size,
            special_token_ids=special, mask_fraction=phase.mask_fraction, random_fraction=phase.random_fraction,
            keep_fraction=phase.keep_fraction, seed=config.seed, isolate_documents=config.isolate_documents,
            chunk_size=config.loss_chunk_size, logit_softcap=model.final_logit_softcap,
            sparse_head=config.sparse_head,
            ratio_schedule=None if phase.mask_ratio_end is None else config.mask_ratio_at,
        )
        objectives.append(MixtureObjective(clm, masked, phase.clm_fraction, seed=config.seed)
                          if phase.objective == "mixture" else masked)
    return objectives


_WRAPPERS = re.compile(r"(module|_orig_mod|_checkpoint_wrapped_module|_fsdp_wrapped_module)\.")
_LAYER = re.compile(r"layers\.(\d+)\.")


def frozen_parameters(model: nn.Module, phase) -> list[nn.Parameter]:
    """The parameters ``phase.freeze`` names (layers, "embeddings", "head"), wrappers (DDP, compile,
    FSDP) seen through. Their gradients are dropped before clipping, so AdamW neither updates nor
    decays them, and they do not count in the gradient norm."""
    layers, parts = freeze_spec(phase.freeze)
    if not layers and not parts:
        return []
    out = []
    for name, parameter in model.named_parameters():
        name = _WRAPPERS.sub("", name)
        layer = _LAYER.match(name)
        if (layer and int(layer.group(1)) in layers) or ("embeddings" in parts and name.startswith("embed.")) or (
                "head" in parts and name.startswith("lm_head.")):
            out.append(parameter)
    return out
