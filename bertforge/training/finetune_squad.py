"""SQuAD v1.1 / v2.0 set-up for the fine-tuning loop: windows, decoding, official scores,
``predictions.json``, ``nbest_predictions.json`` and ``null_odds.json``."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from bertforge import metrics
from bertforge.model.task_heads import BertForQuestionAnswering
from bertforge.tasks.common import Row, TaskDataError
from bertforge.tasks.squad import (
    SquadExample,
    SquadPredictions,
    apply_null_threshold,
    build_features,
    decode,
    read_squad,
    to_official,
)
from bertforge.tokenization import BertTokenizer, load_tokenizer
from bertforge.training.finetune import EvalResult, FinetuneTask
from bertforge.training.finetune_tasks import ModelOptions, Predict


@dataclass
class SquadOptions:
    """The paper's settings."""

    version: str = "1.1"
    max_seq_length: int = 384
    doc_stride: int = 128
    max_query_length: int = 64
    n_best: int = 20
    max_answer_length: int = 30
    null_threshold: float = 0.0


def features(tokenizer: BertTokenizer, examples: list[SquadExample], options: SquadOptions,
             training: bool) -> list[Row]:
    return build_features(tokenizer, examples, options.max_seq_length, options.doc_stride,
                          options.max_query_length, training)


def score(examples: list[SquadExample], found: SquadPredictions, options: SquadOptions
          ) -> dict[str, float]:
    """The official scores (percentages). v2.0 also searches the best null threshold and
    reports the scores at it (``best_exact``, ``best_f1`` and their thresholds)."""
    dataset = to_official(examples)
    if options.version == "1.1":
        return metrics.squad_evaluate(dataset, found.answers, version="1.1")
    return metrics.squad_evaluate(dataset, found.answers, na_probs=found.null_odds,
                                  na_prob_thresh=options.null_threshold, version="2.0")


def squad_evaluator(examples: list[SquadExample], rows: list[Row], options: SquadOptions
                    ) -> Callable[[nn.Module, Predict], EvalResult]:
    def evaluate(model: nn.Module, predict: Predict) -> EvalResult:
        out = predict(rows)
        found = decode(examples, rows, out["start_logits"], out["end_logits"], options.n_best,
                       options.max_answer_length, options.version, options.null_threshold)
        return EvalResult(score(examples, found, options), found)
    return evaluate


def write_squad_predictions(out: Path, result: EvalResult, version: str = "1.1") -> None:
    """``predictions.json`` (id -> answer), ``nbest_predictions.json`` and, for v2.0,
    ``null_odds.json`` and ``predictions_best_threshold.json`` (answers at the threshold
    that maximised dev F1)."""
    found: SquadPredictions = result.predictions
    _dump(out / "predictions.json", found.answers)
    _dump(out / "nbest_predictions.json", found.nbest)
    if version == "2.0":
        _dump(out / "null_odds.json", found.null_odds)
        threshold = result.metrics.get("best_f1_thresh")
        if threshold is not None:
            _dump(out / "predictions_best_threshold.json",
                  apply_null_threshold(found, float(threshold)))


def _dump(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def squad_setup(train_file: str | os.PathLike | None, dev_file: str | os.PathLike,
                model: ModelOptions, options: SquadOptions | None = None,
                train_articles: slice | None = None, dev_articles: slice | None = None,
                skip_bad_answers: bool = False) -> FinetuneTask:
    """SQuAD ready for :func:`~bertforge.training.finetune.finetune`. ``*_articles`` pick
    article slices (to train on part of dev and evaluate on the rest, split by article)."""
    options = options or SquadOptions()
    tokenizer = load_tokenizer(model.model_dir)
    train = (read_squad(train_file, options.version, skip_bad_answers, train_articles)
             if train_file else [])
    dev = read_squad(dev_file, options.version, False, dev_articles)
    if not dev:  # scoring nothing failed after training, on a missing model output
        raise TaskDataError(f"{dev_file}: no questions to evaluate on")
    dev_rows = features(tokenizer, dev, options, training=False)
    overrides = {} if model.dropout is None else {"hidden_dropout_prob": model.dropout}
    qa = BertForQuestionAnswering.from_pretrained(model.model_dir, **overrides)
    main = "f1" if options.version == "1.1" else "best_f1"
    return FinetuneTask(
        name=f"squad-{options.version}", model=qa,
        train_rows=features(tokenizer, train, options, training=True),
        evaluate=squad_evaluator(dev, dev_rows, options), main_metric=main,
        pad_id=tokenizer.pad_id, tokenizer=tokenizer,
        write_predictions=lambda out, result: write_squad_predictions(out, result,
                                                                      options.version))
