"""Your own classification files (CSV, TSV, JSONL), SWAG files, and batching."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _helpers import need_data

from bertforge.tasks.batching import batch_order, collate
from bertforge.tasks.classify import Columns, read_classification
from bertforge.tasks.common import LabelMap, TaskDataError
from bertforge.tasks.features import encode_examples
from bertforge.tasks.multiple_choice import build_features, read_choices
from bertforge.tokenization import load_tokenizer


@pytest.fixture(scope="module")
def tokenizer():  # noqa: ANN201
    return load_tokenizer(need_data("vocab", "bert_uncased_en_vocab.txt"))


def test_csv_pair_single_label(tmp_path: Path, tokenizer) -> None:  # noqa: ANN001
    path = tmp_path / "d.csv"
    path.write_text('q,a,y\n"Is it, really?",Yes.,pos\nNo?,No.,neg\n')
    examples = read_classification(path, Columns("q", "a", "y"))
    assert examples[0].text_a == "Is it, really?" and examples[0].label == "pos"
    labels = LabelMap.from_labels([e.label for e in examples])
    rows = encode_examples(tokenizer, examples, 16, labels)
    assert rows[0]["labels"] == 1 and rows[1]["labels"] == 0
    assert 1 in rows[0]["token_type_ids"]


def test_jsonl_multi_label_and_tsv_regression(tmp_path: Path, tokenizer) -> None:  # noqa: ANN001
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"text": "goal!", "tags": ["sport", "news"]}) + "\n\n"
                    + json.dumps({"text": "vote", "tags": ["politics"]}) + "\n")
    examples = read_classification(path, Columns("text", label="tags"), "multi_label")
    labels = LabelMap.from_labels([e.label for e in examples])
    assert labels.names == ["news", "politics", "sport"]
    rows = encode_examples(tokenizer, examples, 16, labels, "multi_label")
    assert rows[0]["labels"] == [1.0, 0.0, 1.0]
    tsv = tmp_path / "d.tsv"
    tsv.write_text("s\tscore\nfine\t3.5\n")
    rows = encode_examples(tokenizer, read_classification(tsv, Columns("s", label="score"),
                                                          "regression"), 16, None, "regression")
    assert rows[0]["labels"] == 3.5


def test_errors_name_file_line_and_field(tmp_path: Path, tokenizer) -> None:  # noqa: ANN001
    path = tmp_path / "d.csv"
    path.write_text("text,label\nfine,a\n")
    with pytest.raises(TaskDataError, match=r"d.csv:2: no field 'sentence'"):
        read_classification(path, Columns("sentence"))
    path.write_text("text,label\n  ,a\n")
    with pytest.raises(TaskDataError, match=r"d.csv:2: field 'text' is empty"):
        read_classification(path, Columns("text"))
    path.write_text("text,label\nok,b\n")
    dev = read_classification(path, Columns("text", label="label"))
    with pytest.raises(TaskDataError, match=r"d.csv:2: label 'b' was not seen in training"):
        encode_examples(tokenizer, dev, 16, LabelMap(["a", "c"]))
    path.write_text("text,label\nok,high\n")
    with pytest.raises(TaskDataError, match=r"d.csv:2: field 'label' should be a number"):
        read_classification(path, Columns("text", label="label"), "regression")


def test_swag_csv(tmp_path: Path, tokenizer) -> None:  # noqa: ANN001
    path = tmp_path / "val.csv"
    head = "video-id,fold-ind,startphrase,sent1,sent2,gold-source,ending0,ending1,ending2,ending3"
    path.write_text(f"{head},label\nv1,5,A man. He,A man sits.,He,gold,runs.,sleeps.,eats.,"
                    "sings.,2\n")
    examples = read_choices(path)
    assert examples[0].label == 2 and examples[0].endings[1] == "sleeps."
    rows = build_features(tokenizer, examples, 16)
    assert len(rows[0]["input_ids"]) == 4
    batch = collate(rows)
    assert batch["input_ids"].shape[:2] == (1, 4) and batch["labels"].tolist() == [2]
    path.write_text(f"{head},label\nv1,5,x,A.,He,gold,a,b,c,d,7\n")
    with pytest.raises(TaskDataError, match=r"val.csv:2: field 'label' is 7"):
        read_choices(path)


def test_collate_pads_and_masks() -> None:
    rows = [{"input_ids": [2, 5, 3], "token_type_ids": [0, 0, 0], "labels": [-100, 1, -100]},
            {"input_ids": [2, 3], "token_type_ids": [0, 0], "labels": [-100, -100]}]
    batch = collate(rows, pad_id=0)
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist()[1] == [-100, -100, -100]
    assert batch["labels"].dtype == torch.long


def test_length_grouped_batches_cover_every_row_once() -> None:
    rng = np.random.default_rng(0)
    lengths = list(rng.integers(1, 100, size=1000))
    batches = batch_order(lengths, 32, np.random.default_rng(1))
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(1000))
    spread = np.mean([np.ptp([lengths[i] for i in b]) for b in batches])
    random = np.mean([np.ptp([lengths[i] for i in b])
                      for b in batch_order(lengths, 32, np.random.default_rng(1), False)])
    assert spread < random / 3  # grouping by length cuts padding
