"""Evaluation: metrics, statistics and the results store (the fine-tuning runner comes next)."""
