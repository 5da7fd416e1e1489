"""NER (fine-tuned or the paper's feature-based BiLSTM) and multiple-choice set-ups for the
fine-tuning loop."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from bertforge import metrics
from bertforge.interop.checkpoint import config_from
from bertforge.model.task_heads import (
    BertFeatureTagger,
    BertForMultipleChoice,
    BertForTokenClassification,
)
from bertforge.tasks import multiple_choice as mc
from bertforge.tasks import ner
from bertforge.tasks.common import LabelMap, Row, TaskDataError
from bertforge.tokenization import load_tokenizer
from bertforge.training.finetune import EvalResult, FinetuneTask
from bertforge.training.finetune_tasks import ModelOptions, Predict, write_jsonl


@dataclass
class NerData:
    scheme: str
    labels: LabelMap
    train_rows: list[Row]
    dev: list[ner.Sentence]
    dev_rows: list[Row]


SCHEME_ALIASES = {"BIO": "IOB2", "BIOES": "IOBES"}


def load_ner_data(train_file: str | os.PathLike | None, dev_file: str | os.PathLike,
                  tokenizer: Any, max_length: int = 128, scheme: str | None = None,
                  labels: LabelMap | None = None) -> NerData:
    """Read both files, check (or detect) the tag scheme, build rows. Dev tags unseen in
    training are an error naming the line. Without a training file (evaluating a
    fine-tuned model) ``labels`` must be given."""
    train = ner.read_conll(train_file) if train_file else []
    dev = ner.read_conll(dev_file)
    scheme = (scheme or ner.detect_scheme(train or dev)).upper()
    scheme = SCHEME_ALIASES.get(scheme, scheme)
    ner.check_scheme(train, scheme)
    ner.check_scheme(dev, scheme)
    if labels is None:
        if not train:
            raise TaskDataError(f"{dev_file}: no tag set: give a training file or a model "
                                "whose config.json has id2label")
        labels = ner.tag_map(train)
    return NerData(scheme, labels, ner.build_features(tokenizer, train, max_length, labels),
                   dev, ner.build_features(tokenizer, dev, max_length, labels))


def entity_metrics(gold: list[list[str]], pred: list[list[str]], scheme: str
                   ) -> dict[str, float]:
    """conlleval's micro precision/recall/F1, token accuracy and ``f1_TYPE`` per type."""
    found = metrics.entity_scores(gold, pred, scheme)
    flat = {k: found[k] for k in ("precision", "recall", "f1", "accuracy")}
    flat |= {f"f1_{t}": v["f1"] for t, v in found["per_type"].items()}
    return flat


def ner_evaluator(data: NerData) -> Callable[[nn.Module, Predict], EvalResult]:
    def evaluate(model: nn.Module, predict: Predict) -> EvalResult:
        pred = ner.decode_tags(data.dev, data.dev_rows, predict(data.dev_rows)["logits"],
                               data.labels)
        return EvalResult(entity_metrics([s.tags for s in data.dev], pred, data.scheme), pred)
    return evaluate


def ner_setup(data: NerData, options: ModelOptions, feature_based: bool = False,
              lstm_size: int = 256) -> FinetuneTask:
    """NER ready for :func:`~bertforge.training.finetune.finetune`; ``feature_based`` trains
    only a BiLSTM on the frozen encoder's last four layers (train it with lr ~1e-3)."""
    tokenizer = load_tokenizer(options.model_dir)
    overrides: dict[str, Any] = {"id2label": data.labels.id2label}
    if options.dropout is not None:
        overrides["hidden_dropout_prob"] = options.dropout
    if feature_based:
        extra = {**config_from(options.model_dir).extra, "lstm_size": lstm_size,
                 "tag_scheme": data.scheme}
        model = BertFeatureTagger.from_pretrained(options.model_dir, extra=extra, **overrides)
    else:
        extra = {**config_from(options.model_dir).extra, "tag_scheme": data.scheme}
        model = BertForTokenClassification.from_pretrained(options.model_dir, extra=extra,
                                                           **overrides)

    def write(out: Path, result: EvalResult) -> None:
        ner.write_conll(out / "predictions_dev.conll", data.dev, result.predictions)

    return FinetuneTask(name="ner-feature-bilstm" if feature_based else "ner", model=model,
                        train_rows=data.train_rows, evaluate=ner_evaluator(data),
                        main_metric="f1", pad_id=tokenizer.pad_id, tokenizer=tokenizer,
                        write_predictions=write)


# ------------------------------------------------------------------ multiple choice
def choice_setup(train_file: str | os.PathLike | None, dev_file: str | os.PathLike,
                 options: ModelOptions, columns: mc.ChoiceColumns | None = None
                 ) -> FinetuneTask:
    """SWAG-style multiple choice ready for :func:`~bertforge.training.finetune.finetune`."""
    columns = columns or mc.ChoiceColumns()
    tokenizer = load_tokenizer(options.model_dir)
    train = mc.read_choices(train_file, columns) if train_file else []
    dev = mc.read_choices(dev_file, columns)
    counts = {len(e.endings) for e in train + dev}
    if len(counts) != 1:
        raise TaskDataError(f"{train_file}, {dev_file}: examples have different numbers of "
                            f"endings {sorted(counts)}")
    dev_rows = mc.build_features(tokenizer, dev, options.max_length)
    overrides = {} if options.dropout is None else {"hidden_dropout_prob": options.dropout}
    model = BertForMultipleChoice.from_pretrained(options.model_dir, **overrides)

    def evaluate(model: nn.Module, predict: Predict) -> EvalResult:
        pred = np.stack(predict(dev_rows)["logits"]).argmax(-1)
        gold = np.asarray([r["labels"] for r in dev_rows])
        return EvalResult({"accuracy": metrics.accuracy(pred, gold)}, pred.tolist())

    def write(out: Path, result: EvalResult) -> None:
        write_jsonl(out / "predictions_dev.jsonl",
                    ({"id": e.guid, "prediction": p, "label": e.label}
                     for e, p in zip(dev, result.predictions, strict=True)))

    return FinetuneTask(name="multiple-choice", model=model,
                        train_rows=mc.build_features(tokenizer, train, options.max_length),
                        evaluate=evaluate, main_metric="accuracy", pad_id=tokenizer.pad_id,
                        tokenizer=tokenizer, write_predictions=write)
