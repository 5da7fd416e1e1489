"""bertforge: BERT as a working tool.

The top-level names are imported lazily, so that ``bertforge info`` or the tokenizer
do not pay for importing torch.
"""

from __future__ import annotations

import os
from importlib import import_module
from typing import Any

# OpenMP threads that spin while they wait lose 10x and more as soon as another process
# shares the cores (measured: a MiniLM training step on 2 loaded cores took 7.4 s with
# spinning threads, 0.57 s with sleeping ones). libgomp reads this when torch loads, so it
# is set here, before any torch import; an explicit setting in the environment wins.
OMP_POLICY_FROM_USER = os.environ.get("OMP_WAIT_POLICY")  # None: bertforge chose
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

_LAZY = {
    "BertConfig": "bertforge.config",
    "preset": "bertforge.config",
    "ConfigError": "bertforge.config",
    "BertModel": "bertforge.model.bert",
    "BertOutput": "bertforge.model.bert",
    "BertForPreTraining": "bertforge.model.heads",
    "PreTrainingOutput": "bertforge.model.heads",
    "BertForSequenceClassification": "bertforge.model.task_heads",
    "BertForTokenClassification": "bertforge.model.task_heads",
    "BertForQuestionAnswering": "bertforge.model.task_heads",
    "BertForMultipleChoice": "bertforge.model.task_heads",
    "TaskOutput": "bertforge.model.task_heads",
    "load_tokenizer": "bertforge.tokenization",
    "train_wordpiece": "bertforge.tokenization",
    "BertTokenizer": "bertforge.tokenization",
    "CheckpointError": "bertforge.interop.checkpoint",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'bertforge' has no attribute {name!r}")
