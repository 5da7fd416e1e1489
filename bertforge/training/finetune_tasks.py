"""Task set-ups for the fine-tuning loop: reader + features + model + scoring + prediction
files, for GLUE and your own classification data. (SQuAD, NER and multiple choice are in
``finetune_span.py`` and ``finetune_tagging.py``.)

Every ``*_setup`` function returns a :class:`~bertforge.training.finetune.FinetuneTask`
with a freshly loaded model, so calling it again (another seed) starts from scratch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from bertforge import metrics
from bertforge.model.task_heads import BertForSequenceClassification
from bertforge.tasks.classify import Columns, read_classification
from bertforge.tasks.common import LabelMap, Row, TaskDataError, TextExample
from bertforge.tasks.features import encode_examples
from bertforge.tasks.glue import GlueTask, glue_task, read_glue, split_path, write_submission
from bertforge.tokenization import BertTokenizer, load_tokenizer
from bertforge.training.finetune import EvalResult, FinetuneTask

Predict = Callable[[list[Row]], dict[str, list[np.ndarray]]]
GLUE_MAIN_METRIC = {"CoLA": "mcc", "MRPC": "f1", "QQP": "f1", "STS-B": "spearmanr"}
PROBLEM_TYPE = {"single_label": "single_label_classification",
                "multi_label": "multi_label_classification", "regression": "regression"}


@dataclass
class ModelOptions:
    """How to build the model: from ``model_dir`` with these config overrides."""

    model_dir: str
    max_length: int = 128
    dropout: float | None = None  # None keeps the checkpoint's (0.1 for BERT)
    pooling: str | None = None  # None keeps the checkpoint's ("cls" when it has none)


def load_classifier(options: ModelOptions, labels: LabelMap | None, problem: str
                    ) -> BertForSequenceClassification:
    """A sequence classifier from ``options.model_dir`` with the label map in its config."""
    overrides: dict[str, Any] = {
        "id2label": labels.id2label if labels is not None else {0: "score"},
        "problem_type": PROBLEM_TYPE[problem]}
    if options.dropout is not None:
        overrides["hidden_dropout_prob"] = options.dropout
    from bertforge.interop.checkpoint import config_from
    config = config_from(options.model_dir)
    extra = {**config.extra, **({"pooling": options.pooling} if options.pooling else {})}
    return BertForSequenceClassification.from_pretrained(options.model_dir, extra=extra,
                                                         **overrides)


# ------------------------------------------------------------------ scoring
def decide(logits: np.ndarray, problem: str) -> np.ndarray:
    """Class ids [N] (argmax), multi-hot [N, K] (sigmoid > 0.5, i.e. logit > 0), or scores."""
    if problem == "regression":
        return logits[:, 0]
    if problem == "multi_label":
        return (logits > 0).astype(np.int64)
    return logits.argmax(-1)


def classification_metrics(pred: np.ndarray, gold: np.ndarray, problem: str
                           ) -> dict[str, float]:
    """accuracy + macro F1; micro/macro F1 + subset accuracy; Pearson/Spearman + MSE."""
    if problem == "regression":
        return {"pearson": metrics.pearson(pred, gold), "spearmanr": metrics.spearman(pred, gold),
                "mse": float(np.mean((pred - gold) ** 2))}
    if problem == "multi_label":
        return {"micro_f1": metrics.multilabel_micro_f1(pred, gold),
                "macro_f1": metrics.multilabel_macro_f1(pred, gold),
                "subset_accuracy": metrics.subset_accuracy(pred, gold)}
    return {"accuracy": metrics.accuracy(pred, gold), "macro_f1": metrics.macro_f1(pred, gold)}


def gold_targets(rows: Sequence[Row]) -> np.ndarray:
    return np.asarray([r["labels"] for r in rows])


def stack_logits(outputs: dict[str, list[np.ndarray]]) -> np.ndarray:
    return np.stack(outputs["logits"])  # N x [K] -> [N, K]


def label_names(pred: np.ndarray, labels: LabelMap | None, problem: str) -> list[Any]:
    """Predictions as the data writes them: class names, name lists, or float scores."""
    if problem == "regression" or labels is None:
        return [float(p) for p in pred]
    if problem == "multi_label":
        return [[labels.names[k] for k in np.flatnonzero(p)] for p in pred]
    return [labels.names[int(p)] for p in pred]


# ------------------------------------------------------------------ GLUE
@dataclass
class GlueData:
    """A GLUE task's examples and rows."""

    task: GlueTask
    labels: LabelMap | None
    train: list[TextExample]
    train_rows: list[Row]
    dev: dict[str, tuple[list[TextExample], list[Row]]]


def load_glue_data(data_dir: str | os.PathLike, name: str, tokenizer: BertTokenizer,
                   max_length: int = 128, train_limit: int | None = None,
                   dev_limit: int | None = None, with_train: bool = True) -> GlueData:
    """Read and encode the train and dev splits (the first ``*_limit`` examples if given)."""
    task = glue_task(name)
    labels = LabelMap(list(task.labels)) if task.labels else None
    problem = "regression" if task.is_regression else "single_label"
    train = read_glue(data_dir, task, "train")[:train_limit] if with_train else []
    dev = {}
    for split in task.dev_splits:
        examples = read_glue(data_dir, task, split)[:dev_limit]
        dev[split] = (examples, encode_examples(tokenizer, examples, max_length, labels, problem))
    return GlueData(task, labels, train,
                    encode_examples(tokenizer, train, max_length, labels, problem), dev)


def _split_prefix(split: str) -> str:
    return {"dev_mismatched": "mismatched_"}.get(split, "")


def glue_evaluate(data: GlueData) -> Callable[[nn.Module, Predict], EvalResult]:
    """Scores every dev split with GLUE's metrics (MNLI mismatched keys get a prefix)."""
    problem = "regression" if data.task.is_regression else "single_label"

    def evaluate(model: nn.Module, predict: Predict) -> EvalResult:
        scores: dict[str, float] = {}
        predictions: dict[str, list[Any]] = {}
        for split, (_, rows) in data.dev.items():
            pred = decide(stack_logits(predict(rows)), problem)
            found = metrics.glue_metrics(data.task.name, pred, gold_targets(rows))
            scores |= {_split_prefix(split) + k: v for k, v in found.items()}
            predictions[split] = label_names(pred, data.labels, problem)
        return EvalResult(scores, predictions)

    return evaluate


def write_dev_predictions(data: GlueData) -> Callable[[Path, EvalResult], None]:
    """``OUT/predictions_{split}.tsv``: guid, prediction, gold label, text(s)."""
    def write(out: Path, result: EvalResult) -> None:
        for split, (examples, _) in data.dev.items():
            lines = ["guid\tprediction\tlabel"]
            for example, pred in zip(examples, result.predictions[split], strict=True):
                lines.append(f"{example.guid}\t{pred}\t{example.label}")
            (out / f"predictions_{split}.tsv").write_text("\n".join(lines) + "\n",
                                                          encoding="utf-8")
    return write


def glue_setup(data_dir: str | os.PathLike, name: str, options: ModelOptions,
               data: GlueData | None = None, train_limit: int | None = None,
               dev_limit: int | None = None) -> FinetuneTask:
    """A GLUE task ready for :func:`~bertforge.training.finetune.finetune`."""
    tokenizer = load_tokenizer(options.model_dir)
    if data is None:
        data = load_glue_data(data_dir, name, tokenizer, options.max_length, train_limit,
                              dev_limit)
    problem = "regression" if data.task.is_regression else "single_label"
    model = load_classifier(options, data.labels, problem)
    main = GLUE_MAIN_METRIC.get(data.task.name, "accuracy")
    return FinetuneTask(name=data.task.name, model=model, train_rows=data.train_rows,
                        evaluate=glue_evaluate(data), main_metric=main,
                        pad_id=tokenizer.pad_id, tokenizer=tokenizer,
                        write_predictions=write_dev_predictions(data),
                        extra={"data": data, "data_dir": str(data_dir)})


def predict_glue_test(model: nn.Module, predict: Predict, tokenizer: BertTokenizer,
                      data_dir: str | os.PathLike, name: str, out: str | os.PathLike,
                      max_length: int = 128) -> list[Path]:
    """Write GLUE submission files for every test split present; returns their paths."""
    task = glue_task(name)
    problem = "regression" if task.is_regression else "single_label"
    labels = LabelMap(list(task.labels)) if task.labels else None
    written = []
    for split in task.test_splits:
        if not split_path(data_dir, task, split).is_file():
            continue
        examples = read_glue(data_dir, task, split)
        rows = encode_examples(tokenizer, examples, max_length, None, problem)
        pred = decide(stack_logits(predict(rows)), problem)
        path = Path(out) / task.submission[split]
        write_submission(path, [e.guid for e in examples], label_names(pred, labels, problem))
        written.append(path)
    return written


# ------------------------------------------------------------------ your own data
@dataclass
class ClassifyData:
    """Your own data: label map, problem, examples and rows."""

    problem: str
    labels: LabelMap | None
    train_rows: list[Row]
    dev: list[TextExample]
    dev_rows: list[Row]


def load_classify_data(train_file: str | os.PathLike | None, dev_file: str | os.PathLike,
                       columns: Columns, tokenizer: BertTokenizer, problem: str = "single_label",
                       max_length: int = 128, label_sep: str = ",",
                       labels: LabelMap | None = None) -> ClassifyData:
    """Read both files; the label map comes from the training file unless given. A dev
    label never seen in training is an error naming its line. Without a training file
    (evaluation of a fine-tuned model) ``labels`` must be given for classification."""
    train = read_classification(train_file, columns, problem, label_sep) if train_file else []
    if not train and labels is None and problem != "regression":
        raise TaskDataError(f"{dev_file}: no label map: give a training file or a model whose "
                            "config.json has id2label")
    dev = read_classification(dev_file, columns, problem, label_sep)
    if labels is None and problem != "regression":
        labels = LabelMap.from_labels([e.label for e in train])
    if labels is not None and len(labels) < 2 and problem == "single_label":
        raise TaskDataError(f"{train_file}: only one class ({labels.names}) in field "
                            f"{columns.label!r}; classification needs at least two")
    return ClassifyData(problem, labels,
                        encode_examples(tokenizer, train, max_length, labels, problem),
                        dev, encode_examples(tokenizer, dev, max_length, labels, problem))


def classify_setup(data: ClassifyData, options: ModelOptions) -> FinetuneTask:
    """Your own data ready for :func:`~bertforge.training.finetune.finetune`."""
    tokenizer = load_tokenizer(options.model_dir)
    model = load_classifier(options, data.labels, data.problem)
    main = {"single_label": "accuracy", "multi_label": "micro_f1",
            "regression": "pearson"}[data.problem]

    def evaluate(model: nn.Module, predict: Predict) -> EvalResult:
        pred = decide(stack_logits(predict(data.dev_rows)), data.problem)
        found = classification_metrics(pred, gold_targets(data.dev_rows), data.problem)
        return EvalResult(found, label_names(pred, data.labels, data.problem))

    def write(out: Path, result: EvalResult) -> None:
        write_jsonl(out / "predictions_dev.jsonl",
                    ({"id": e.guid, "prediction": p, "label": e.label}
                     for e, p in zip(data.dev, result.predictions, strict=True)))

    return FinetuneTask(name="classify", model=model, train_rows=data.train_rows,
                        evaluate=evaluate, main_metric=main, pad_id=tokenizer.pad_id,
                        tokenizer=tokenizer, write_predictions=write)


def write_jsonl(path: Path, records: Any) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
