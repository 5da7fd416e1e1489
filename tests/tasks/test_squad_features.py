"""SQuAD windows and decoding on the real dev set: gold token positions decoded back through
the pipeline reproduce the gold answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _helpers import need_data

from bertforge.metrics import squad_evaluate
from bertforge.tasks.common import TaskDataError
from bertforge.tasks.squad import (
    SquadExample,
    apply_null_threshold,
    build_features,
    decode,
    max_context_window,
    read_squad,
    to_official,
    window_starts,
)
from bertforge.tokenization import load_tokenizer


@pytest.fixture(scope="module")
def tokenizer():  # noqa: ANN201
    return load_tokenizer(need_data("vocab", "bert_uncased_en_vocab.txt"))


def _gold_logits(rows: list[dict]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Logits peaking at each window's gold start/end (at [CLS] when outside the window)."""
    starts, ends = [], []
    for row in rows:
        s, e = np.zeros(len(row["input_ids"])), np.zeros(len(row["input_ids"]))
        s[row["start_positions"]] += 10
        e[row["end_positions"]] += 10
        starts.append(s)
        ends.append(e)
    return starts, ends


def test_gold_positions_decode_to_gold_answers_on_all_of_dev(tokenizer) -> None:  # noqa: ANN001
    path = need_data("squad-v1.1", "dev-v1.1.json")
    examples = read_squad(path)
    assert len(examples) == 10570
    rows = build_features(tokenizer, examples, training=True)
    found = decode(examples, rows, *_gold_logits(rows))
    scores = squad_evaluate(json.loads(Path(path).read_text()), found.answers)
    # The misses (41 of 10,570) are: gold answers that end or start inside a WordPiece
    # word ("18" for gold "8", "golden" for "gold", "£20,980" for "20,980": the token holds
    # more characters than the answer), and gold answers longer than max_answer_length (30)
    # tokens, which the decoder may not output by design.
    assert scores["exact_match"] > 99.6 and scores["f1"] > 99.7


def test_many_windows_and_the_max_context_rule(tokenizer) -> None:  # noqa: ANN001
    examples = read_squad(need_data("squad-v1.1", "dev-v1.1.json"), articles=slice(0, 3))
    rows = build_features(tokenizer, examples, max_seq_length=96, doc_stride=24,
                          max_query_length=32, training=True)
    assert len(rows) > 3 * len(examples)  # every context is split into several windows
    assert all(len(r["input_ids"]) <= 96 for r in rows)
    found = decode(examples, rows, *_gold_logits(rows), max_answer_length=30)
    scores = squad_evaluate(to_official(examples), found.answers)
    assert scores["exact_match"] > 98.0
    # each context token is max-context in exactly one window
    for index in range(5):
        windows = [r for r in rows if r["example_index"] == index]
        chosen = sum(sum(r["max_context"]) for r in windows)
        assert chosen == len(tokenizer.tokenize(examples[index].context))


def test_window_starts_cover_the_document() -> None:
    assert window_starts(10, 4, 2) == [0, 2, 4, 6]
    assert window_starts(3, 4, 2) == [0]
    starts = window_starts(10, 4, 2)
    # token 3 is in windows 0 (left 3, right 0) and 1 (1, 2) and 2 (left -1: not in it)
    assert max_context_window(3, starts, 4, 10) == 1


def test_bad_answer_offset_is_an_error_naming_the_question(tmp_path: Path) -> None:
    data = {"data": [{"title": "T", "paragraphs": [{"context": "Paris is in France.", "qas": [
        {"id": "q1", "question": "Where?", "answers": [{"text": "France", "answer_start": 3}]}
    ]}]}]}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(TaskDataError, match=r"qas\[0\] \(id q1\): answer text is not at"):
        read_squad(path)
    assert read_squad(path, skip_bad_answers=True) == []


def _v2_example() -> SquadExample:
    return SquadExample("q", "Who?", "Ada Lovelace wrote notes.", [], True)


def test_v2_null_odds_and_threshold(tokenizer) -> None:  # noqa: ANN001
    examples = [_v2_example()]
    rows = build_features(tokenizer, examples, training=True)
    assert rows[0]["start_positions"] == 0 and rows[0]["end_positions"] == 0
    n = len(rows[0]["input_ids"])
    start, end = np.zeros(n), np.zeros(n)
    offsets = rows[0]["offsets"]
    first, last = offsets.index((0, 3)), offsets.index((8, 12))  # "ada", "##lace"
    start[first], end[last] = 4.0, 4.0  # span "Ada Lovelace" scores 8
    start[0] = end[0] = 5.0  # null scores 10
    found = decode(examples, rows, [start], [end], version="2.0", null_threshold=0.0)
    assert found.answers["q"] == "" and found.null_odds["q"] == pytest.approx(2.0)
    assert apply_null_threshold(found, 2.5)["q"] == "Ada Lovelace"
    again = decode(examples, rows, [start], [end], version="2.0", null_threshold=3.0)
    assert again.answers["q"] == "Ada Lovelace"
    assert abs(sum(e["probability"] for e in found.nbest["q"]) - 1.0) < 1e-9
