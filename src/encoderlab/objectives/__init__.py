"""Pretraining objectives (CLM, MLM) and the memory-lean LM loss they share."""

from encoderlab.objectives.cross_entropy import IGNORE_INDEX, linear_cross_entropy
from encoderlab.objectives.masking import counter_uniform, counter_uniforms
from encoderlab.objectives.objectives import CLMObjective, LossOutput, MLMObjective, TokenBatch

__all__ = ["CLMObjective", "IGNORE_INDEX", "LossOutput", "MLMObjective", "TokenBatch", "counter_uniform",
           "counter_uniforms", "linear_cross_entropy"]
