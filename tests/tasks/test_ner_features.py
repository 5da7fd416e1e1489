"""CoNLL reading, tag schemes, and the word <-> sub-token round trip on real CoNLL-2003."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _helpers import need_data

from bertforge.metrics import entity_scores
from bertforge.tasks.common import TaskDataError
from bertforge.tasks.ner import (
    build_features,
    check_scheme,
    decode_tags,
    detect_scheme,
    read_conll,
    tag_map,
    write_conll,
)
from bertforge.tokenization import load_tokenizer


@pytest.fixture(scope="module")
def tokenizer():  # noqa: ANN201
    return load_tokenizer(need_data("vocab", "bert_cased_en_vocab.txt"), lowercase=False)


def _oracle_logits(rows: list[dict], k: int) -> list[np.ndarray]:
    out = []
    for row in rows:
        logits = np.zeros((len(row["input_ids"]), k))
        for i, y in enumerate(row["labels"]):
            if y >= 0:
                logits[i, y] = 1.0
        out.append(logits)
    return out


@pytest.mark.parametrize("max_length", [128, 12])
def test_labels_survive_the_subtoken_round_trip(tokenizer, max_length: int) -> None:  # noqa: ANN001
    sentences = read_conll(need_data("conll2003", "valid.txt"))
    assert len(sentences) == 3250 and detect_scheme(sentences) == "IOB2"
    labels = tag_map(sentences)
    assert labels.names[0] == "O" and len(labels) == 9
    rows = build_features(tokenizer, sentences, max_length, labels)
    assert all(len(r["input_ids"]) <= max_length for r in rows)
    for row in rows[:200]:  # one label per word, on its first sub-token
        assert sum(y >= 0 for y in row["labels"]) == sum(p >= 0 for p in row["word_positions"])
    pred = decode_tags(sentences, rows, _oracle_logits(rows, len(labels)), labels)
    assert pred == [s.tags for s in sentences]
    assert entity_scores([s.tags for s in sentences], pred)["f1"] == 1.0


def test_docstart_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n\n"
                    "Peter NNP B-NP B-PER\n")
    sentences = read_conll(path)
    assert [s.words for s in sentences] == [["EU", "rejects"], ["Peter"]]
    assert sentences[1].where.endswith("a.txt:7")


def test_schemes_detected_and_mixing_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("Peter x I-PER\nBlackburn x I-PER\nvisits x O\nBonn x I-LOC\n")
    sentences = read_conll(path)
    assert detect_scheme(sentences) == "IOB1"
    check_scheme(sentences, "IOB1")
    with pytest.raises(TaskDataError, match=r"a.txt:1 \(\+0 lines\): tag 'I-PER'.*IOB1"):
        check_scheme(sentences, "IOB2")
    path.write_text("Peter x B-PER\nBlackburn x E-PER\nBonn x S-LOC\n")
    assert detect_scheme(read_conll(path)) == "IOBES"
    with pytest.raises(TaskDataError, match="E-PER.*mixes tag schemes"):
        check_scheme(read_conll(path), "IOB2")


def test_unseen_dev_tag_is_named(tokenizer, tmp_path: Path) -> None:  # noqa: ANN001
    (tmp_path / "t.txt").write_text("Peter x B-PER\n")
    (tmp_path / "d.txt").write_text("Bonn x B-LOC\n")
    labels = tag_map(read_conll(tmp_path / "t.txt"))
    with pytest.raises(TaskDataError, match=r"d.txt:1 \(\+0 lines\): label 'B-LOC' was not seen"):
        build_features(tokenizer, read_conll(tmp_path / "d.txt"), 32, labels)


def test_conlleval_output_file(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text("Peter x B-PER\nsleeps x O\n")
    sentences = read_conll(tmp_path / "t.txt")
    write_conll(tmp_path / "p.txt", sentences, [["B-PER", "B-PER"]])
    assert (tmp_path / "p.txt").read_text() == "Peter B-PER B-PER\nsleeps O B-PER\n\n"
