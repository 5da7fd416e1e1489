"""``pipeline(task, model=DIR)``: one call from a model directory to a ready predictor, in
the spirit users know from ``transformers``.

>>> from bertforge.inference import pipeline
>>> embed = pipeline("embed", model="all-MiniLM-L6-v2/")           # doctest: +SKIP
>>> embed(["A man is eating food."]).shape                          # (1, 384)
"""

from __future__ import annotations

import os
from typing import Any

from bertforge.inference.common import InferenceError

TASKS = {
    "fill-mask": "bertforge.inference.fill_mask:FillMask",
    "embed": "bertforge.inference.embed:Embedder",
    "feature-extraction": "bertforge.inference.extract:FeatureExtractor",
    "text-classification": "bertforge.inference.classify:TextClassifier",
}
ALIASES = {"embeddings": "embed", "sentence-embedding": "embed", "extract": "feature-extraction",
           "classify": "text-classification", "predict": "text-classification"}


def pipeline(task: str, model: str | os.PathLike, device: str | None = "cpu",
             **options: Any) -> Any:
    """The predictor for ``task`` loaded from the directory ``model``.

    Tasks: ``fill-mask`` (:class:`FillMask`), ``embed`` (:class:`Embedder`; options
    ``pooling``, ``normalize``), ``feature-extraction`` (:class:`FeatureExtractor`),
    ``text-classification`` (:class:`TextClassifier`). Every task takes ``device`` and
    ``max_length``.
    """
    from importlib import import_module

    key = ALIASES.get(task, task)
    if key not in TASKS:
        raise InferenceError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    module, name = TASKS[key].split(":")
    return getattr(import_module(module), name).from_pretrained(model, device=device, **options)
