"""Predictions of a fine-tuned sequence classifier (single-label, multi-label, regression)
for the server's ``/predict`` and ``pipeline("text-classification")``.

``bertforge predict`` (the fine-tuning side) covers the other task types in batch; this
module serves the one most often put behind an endpoint. Legend: B = batch, K = labels.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch

from bertforge.inference.batching import (
    as_list,
    encode_inputs,
    iter_batches,
)
from bertforge.inference.common import (
    InferenceError,
    check_max_length,
    default_max_length,
    resolve_device,
    warn_truncated,
)
from bertforge.interop.checkpoint import Checkpoint
from bertforge.model.task_heads import BertForSequenceClassification, resolve_problem_type
from bertforge.tokenization import BertTokenizer, load_tokenizer

ARCHITECTURE = "BertForSequenceClassification"


def is_sequence_classifier(ckpt: Checkpoint) -> bool:
    """Whether config.json names BertForSequenceClassification and the weights have its head."""
    archs = ckpt.config.extra.get("architectures") or []
    return ARCHITECTURE in archs and any(k.startswith("head.") for k in ckpt.state)


class TextClassifier:
    """Texts (or text pairs) -> labels with probabilities, or regression scores.

    >>> clf = TextClassifier.from_pretrained("sst2-model/")             # doctest: +SKIP
    >>> clf("a charming and often affecting journey")[0]["label"]
    """

    def __init__(self, model: BertForSequenceClassification, tokenizer: BertTokenizer,
                 max_length: int, device: torch.device | None = None) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.device = device or next(model.parameters()).device
        self.problem_type = resolve_problem_type(model.config, None)
        self.labels = _label_names(model)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | None = "cpu",
                        max_length: int | None = None) -> TextClassifier:
        dev = resolve_device(device)
        model = BertForSequenceClassification.from_pretrained(str(path), strict=True)
        limit = check_max_length(max_length, model.config, default_max_length(path, model.config))
        return cls(model.to(dev), load_tokenizer(path), limit, dev)

    def __call__(self, texts: str | Iterable[str], pairs: Iterable[str] | None = None,
                 batch_size: int = 32) -> list[dict]:
        """One dict per input: ``label``, ``score`` (its probability) and ``scores`` (every
        label's); for regression only ``score``; for multi-label, ``labels`` over 0.5."""
        texts = as_list(texts)
        pairs = None if pairs is None else as_list(pairs)
        if pairs is not None and len(pairs) != len(texts):
            raise InferenceError(f"{len(texts)} texts but {len(pairs)} pairs")
        encodings, truncated = encode_inputs(self.tokenizer, texts, pairs, self.max_length)
        warn_truncated(truncated, self.max_length)
        out: list[dict] = [{} for _ in texts]
        with torch.inference_mode():
            for batch in iter_batches(encodings, batch_size, self.tokenizer.pad_id, self.device):
                logits = self.model(batch.input_ids, batch.token_type_ids,
                                    batch.attention_mask).logits.float().cpu()  # [B, K]
                for row, i in enumerate(batch.indices):
                    out[i] = self._describe(logits[row])
        return out

    def _describe(self, logits: torch.Tensor) -> dict:
        if self.problem_type == "regression":
            return {"score": float(logits[0])}
        if self.problem_type == "multi_label_classification":
            probs = logits.sigmoid().tolist()
            return {"labels": [lab for lab, p in zip(self.labels, probs, strict=True)
                               if p > 0.5],
                    "scores": dict(zip(self.labels, probs, strict=True))}
        probs = logits.softmax(-1).tolist()
        best = max(range(len(probs)), key=probs.__getitem__)
        return {"label": self.labels[best], "score": probs[best],
                "scores": dict(zip(self.labels, probs, strict=True))}


def _label_names(model: BertForSequenceClassification) -> list[str]:
    """config.id2label in id order, else LABEL_0 … as transformers names them."""
    k = model.head.classifier.out_features
    names = model.config.id2label or {}
    return [str(names.get(i, f"LABEL_{i}")) for i in range(k)]
