"""encoderlab: pretrain text encoders with CLM, MLM or CLM->MLM and evaluate them."""

__version__ = "0.1.0"
