"""`finetune classify` on STS-B scores without `--problem regression`: every score was
taken for a class name and the error only said that a dev score "was not seen in
training"; it now says how to predict numbers."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from _helpers import need_data

from bertforge.tasks.classify import Columns, read_classification
from bertforge.tasks.common import LabelMap, TaskDataError
from bertforge.tasks.features import encode_examples
from bertforge.tokenization import load_tokenizer


def _stsb_csv(split: str, n: int, folder: Path) -> Path:
    with open(need_data("glue", "STS-B", f"{split}.tsv"), encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))[:n]
    path = folder / f"{split}.csv"
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["s1", "s2", "score"])
        writer.writerows([r["sentence1"], r["sentence2"], r["score"]] for r in rows)
    return path


def test_scores_read_as_classes_suggest_regression(tmp_path: Path) -> None:
    columns = Columns("s1", "s2", "score")
    train = read_classification(_stsb_csv("train", 200, tmp_path), columns)
    dev = read_classification(_stsb_csv("dev", 200, tmp_path), columns)
    labels = LabelMap.from_labels([e.label for e in train])
    tokenizer = load_tokenizer(need_data("vocab", "bert_uncased_en_vocab.txt"))
    with pytest.raises(TaskDataError, match="pass --problem regression"):
        encode_examples(tokenizer, dev, 64, labels)


def test_word_labels_get_no_regression_hint(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("text,label\ngood film,pos\nbad film,neg\nso so,neutral\n")
    examples = read_classification(path, Columns("text", label="label"))
    labels = LabelMap.from_labels(["pos", "neg"])
    tokenizer = load_tokenizer(need_data("vocab", "bert_uncased_en_vocab.txt"))
    with pytest.raises(TaskDataError) as err:
        encode_examples(tokenizer, examples, 64, labels)
    assert "regression" not in str(err.value) and "d.csv:4" in str(err.value)
