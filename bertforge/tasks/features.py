"""Sentence (pair) classification examples -> rows of token ids and targets."""

from __future__ import annotations

from collections.abc import Sequence

from bertforge.tasks.common import LabelMap, Row, TaskDataError, TextExample
from bertforge.tokenization import BertTokenizer

CHUNK = 2048  # examples encoded per call into the tokenizer's parallel batch encoder


def encode_examples(tokenizer: BertTokenizer, examples: Sequence[TextExample], max_length: int,
                    labels: LabelMap | None, problem: str = "single_label") -> list[Row]:
    """``[CLS] a [SEP] (b [SEP])`` truncated longest-first to ``max_length`` tokens.

    Targets (when examples are labelled): ``labels`` = class id (single-label), a multi-hot
    float list [K] (multi-label), or a float score (regression).
    """
    pairs = examples[0].text_b is not None if examples else False
    rows: list[Row] = []
    for start in range(0, len(examples), CHUNK):
        chunk = examples[start:start + CHUNK]
        batch = tokenizer.encode_batch([e.text_a for e in chunk],
                                       [e.text_b or "" for e in chunk] if pairs else None,
                                       max_length=max_length, truncation="longest_first")
        for example, enc in zip(chunk, batch.encodings, strict=True):
            row: Row = {"input_ids": enc.ids, "token_type_ids": enc.type_ids}
            if example.label is not None:
                row["labels"] = target(example, labels, problem)
            rows.append(row)
    return rows


def target(example: TextExample, labels: LabelMap | None, problem: str) -> int | float | list:
    """The training target of one example (see :func:`encode_examples`)."""
    if problem == "regression":
        return float(example.label)
    if labels is None:
        raise TaskDataError(f"{example.where}: a classification label needs a label map")
    if problem == "multi_label":
        hot = [0.0] * len(labels)
        for name in example.label:
            hot[labels.id(name, example.where)] = 1.0
        return hot
    hint = "every class must occur in the training file"
    if len(labels) > 10 and all(_is_number(n) for n in [*labels.names, str(example.label)]):
        hint += "; for numbers to predict (a score), pass --problem regression"
    return labels.id(str(example.label), example.where, hint)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
