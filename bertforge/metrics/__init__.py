"""Metrics BERT's fine-tuning tasks are judged by, as their official definitions compute them.

- :mod:`~bertforge.metrics.classification`: accuracy, F1 (binary, macro, micro), Matthews
  correlation, Pearson and Spearman correlation, multi-label F1 and subset accuracy, and
  :func:`glue_metrics` (GLUE's metrics per task).
- :mod:`~bertforge.metrics.squad`: SQuAD v1.1 / v2.0 exact match and token F1
  (:func:`squad_evaluate`; :func:`f1_score` here is SQuAD's token F1).
- :mod:`~bertforge.metrics.ner`: conlleval's entity-level precision / recall / F1, chunk
  extraction and tag-scheme conversion.

Pure functions over plain Python values and numpy arrays; nothing here imports torch.
"""

from .classification import (
    GLUE_TASKS,
    accuracy,
    binary_f1,
    glue_metrics,
    macro_f1,
    matthews_corrcoef,
    micro_f1,
    multilabel_macro_f1,
    multilabel_micro_f1,
    pearson,
    spearman,
    subset_accuracy,
)
from .ner import SCHEMES, convert_tags, entity_scores, get_entities
from .squad import exact_match_score, f1_score, normalize_answer, squad_evaluate

__all__ = [
    "GLUE_TASKS",
    "SCHEMES",
    "accuracy",
    "binary_f1",
    "convert_tags",
    "entity_scores",
    "exact_match_score",
    "f1_score",
    "get_entities",
    "glue_metrics",
    "macro_f1",
    "matthews_corrcoef",
    "micro_f1",
    "multilabel_macro_f1",
    "multilabel_micro_f1",
    "normalize_answer",
    "pearson",
    "spearman",
    "squad_evaluate",
    "subset_accuracy",
]
