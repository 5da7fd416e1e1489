"""Using a trained model: fill-mask, sentence embeddings, feature extraction, text
classification, ONNX export and an HTTP server. ``pipeline(task, model=DIR)`` is the
shortest way in; heavy modules load on first use."""

from __future__ import annotations

from typing import Any

from bertforge.inference.common import InferenceError, TruncationWarning
from bertforge.inference.pipelines import TASKS, pipeline

_LAZY = {
    "Embedder": "bertforge.inference.embed",
    "FillMask": "bertforge.inference.fill_mask",
    "MaskPrediction": "bertforge.inference.fill_mask",
    "FeatureExtractor": "bertforge.inference.extract",
    "TextClassifier": "bertforge.inference.classify",
    "export_onnx": "bertforge.inference.onnx_export",
    "InferenceService": "bertforge.inference.service",
    "ServerLimits": "bertforge.inference.service",
    "make_server": "bertforge.inference.server",
}

__all__ = ["TASKS", "InferenceError", "TruncationWarning", "pipeline", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'bertforge.inference' has no attribute {name!r}")
