"""Task types as plug-ins (``base.py``: the interface and the registry): sequence classification
(``sc``), token classification (``tc``), extractive QA (``qa``) and retrieval (``ir``), each one
module that registers itself. Importing this package registers the four."""

from encoderlab.evaluation.task_types import sc  # noqa: F401, I001 (each registers its type, in this order)
from encoderlab.evaluation.task_types import tc  # noqa: F401
from encoderlab.evaluation.task_types import qa  # noqa: F401
from encoderlab.evaluation.task_types import ir  # noqa: F401
from encoderlab.evaluation.task_types.base import (TASK_TYPES, Scored, TaskType, check_protocol_fits, main_metric,
                                                   register, task_type)

__all__ = ["TASK_TYPES", "Scored", "TaskType", "check_protocol_fits", "ir", "main_metric", "qa", "register", "sc",
           "task_type", "tc"]
