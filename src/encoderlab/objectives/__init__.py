"""Pretraining objectives (CLM, MLM, MNTP, and a per-sample mixture of CLM with MLM or MNTP) and the
memory-lean LM loss they share."""

from encoderlab.objectives.cross_entropy import IGNORE_INDEX, linear_cross_entropy
from encoderlab.objectives.masking import counter_uniform, counter_uniforms
from encoderlab.objectives.objectives import (CLMObjective, LossOutput, MixtureObjective, MLMObjective, MNTPObjective,
                                              TokenBatch, objective_parts)

__all__ = ["CLMObjective", "IGNORE_INDEX", "LossOutput", "MLMObjective", "MNTPObjective", "MixtureObjective",
           "TokenBatch", "counter_uniform", "counter_uniforms", "linear_cross_entropy", "objective_parts"]
