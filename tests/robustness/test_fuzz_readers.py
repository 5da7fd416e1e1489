"""Hypothesis fuzzing of the task readers: GLUE (TSV), SQuAD (JSON), CoNLL (NER) and the
CSV/TSV/JSONL tables of ``finetune classify``. Whatever bytes a file holds, a reader either
returns examples whose fields have the documented types, or raises ``TaskDataError`` naming
the file; never IndexError, KeyError, AttributeError, TypeError or UnicodeDecodeError."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bertforge.tasks.classify import Columns, read_classification
from bertforge.tasks.common import TaskDataError, TextExample
from bertforge.tasks.glue import read_glue
from bertforge.tasks.ner import read_conll
from bertforge.tasks.squad import read_squad

FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])

# pieces that make malformed input look like the real thing, so fuzzing reaches deep code
CELL = st.one_of(st.text(max_size=12), st.sampled_from(
    ["0", "1", "2.5", "nan", "inf", "-1", "entailment", "not_entailment", "B-PER", "I-ORG",
     "O", "-DOCSTART-", "\ufeff", "\x00", "\r", '"', "a\u2028b"]))
LINE = st.lists(CELL, max_size=5).map("\t".join)
BAD_BYTES = st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\r", b"\xef\xbb\xbf"])


def _lines_to_bytes(lines: list[str], junk: list[bytes]) -> bytes:
    """Lines joined with newlines, with some invalid UTF-8 spliced in."""
    data = "\n".join(lines).encode("utf-8", "surrogatepass")
    for k, piece in enumerate(junk):
        at = (len(data) * (k + 1)) // (len(junk) + 1)
        data = data[:at] + piece + data[at:]
    return data


TSV_FILES = st.one_of(
    st.binary(max_size=300),
    st.builds(_lines_to_bytes, st.lists(LINE, max_size=8), st.lists(BAD_BYTES, max_size=2)))


def _is_clear_error(err: TaskDataError, path: Path) -> bool:
    return str(path) in str(err)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


# ------------------------------------------------------------------ GLUE
@FUZZ
@given(data=TSV_FILES, task=st.sampled_from(["CoLA", "STS-B", "MRPC", "RTE", "SST-2"]),
       split=st.sampled_from(["train", "test"]),
       header=st.booleans())
@example(data=b"\xff\xfe", task="RTE", split="train", header=False)
@example(data=b"score\tsentence1\tsentence2\nnan\ta\tb\n", task="STS-B", split="train",
         header=False)
def test_glue_reader_parses_or_names_the_file(folder: Path, data: bytes, task: str, split: str,
                                              header: bool) -> None:
    headers = {"CoLA": "index\tsentence", "STS-B": "index\tsentence1\tsentence2\tscore",
               "MRPC": "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String",
               "RTE": "index\tsentence1\tsentence2\tlabel", "SST-2": "sentence\tlabel"}
    if header:  # a real header, then the fuzzed rows: reaches the cell and label checks
        data = headers[task].encode() + b"\n" + data
    path = folder / f"{split}.tsv"
    path.write_bytes(data)
    try:
        examples = read_glue(folder, task, split)
    except TaskDataError as err:
        assert _is_clear_error(err, path), str(err)
        return
    assert examples and all(isinstance(e, TextExample) for e in examples)
    for e in examples:
        assert isinstance(e.text_a, str) and e.text_a.strip()
        if split == "train" and task == "STS-B":
            assert isinstance(e.label, float) and math.isfinite(e.label)


# ------------------------------------------------------------------ SQuAD
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 40) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=12)
ANY = JSON | st.sampled_from(["", "Paris", "the Paris river"])


def _qa(draw_id: object, question: object, answers: object, impossible: object) -> dict:
    qa = {"id": draw_id, "question": question, "answers": answers}
    if impossible is not None:
        qa["is_impossible"] = impossible
    return qa


ANSWER = st.one_of(
    st.fixed_dictionaries({"text": ANY, "answer_start": ANY}),
    st.fixed_dictionaries({"text": st.just("Paris"), "answer_start": st.integers(-2, 12)}),
    JSON)
QA = st.one_of(st.builds(_qa, ANY, ANY, st.lists(ANSWER, max_size=2) | JSON,
                         st.none() | st.booleans() | JSON), JSON)
PARAGRAPH = st.one_of(st.fixed_dictionaries({"context": ANY, "qas": st.lists(QA, max_size=2)
                                             | JSON}), JSON)
ARTICLE = st.one_of(st.fixed_dictionaries({"title": ANY, "paragraphs": st.lists(
    PARAGRAPH, max_size=2) | JSON}), JSON)
SQUAD = st.one_of(st.fixed_dictionaries({"version": ANY, "data": st.lists(ARTICLE, max_size=2)
                                         | JSON}), JSON)


@FUZZ
@given(document=SQUAD, version=st.sampled_from(["1.1", "2.0"]), labelled=st.booleans(),
       skip=st.booleans())
@example(document={"data": [{"paragraphs": [{"context": "Paris is big", "qas": [
    {"id": 1, "question": ["not", "text"], "answers": [{"text": "Paris", "answer_start": 0}]}]}
]}]}, version="1.1", labelled=True, skip=False)
@example(document={"data": [7, "x"]}, version="1.1", labelled=True, skip=False)
def test_squad_reader_parses_or_names_the_file(folder: Path, document: object, version: str,
                                               labelled: bool, skip: bool) -> None:
    path = folder / "squad.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    _check_squad(path, version, labelled, skip)


@FUZZ
@given(data=st.binary(max_size=200) | st.builds(
    lambda d, junk: json.dumps(d).encode() + junk, SQUAD, BAD_BYTES))
@example(data=b"[" * 5000)
@example(data=b'{"data": [], "version": ' + b"9" * 5000 + b"}")
def test_squad_reader_on_any_bytes(folder: Path, data: bytes) -> None:
    path = folder / "squad-bytes.json"
    path.write_bytes(data)
    _check_squad(path, "2.0", True, False)


def _check_squad(path: Path, version: str, labelled: bool, skip: bool) -> None:
    try:
        examples = read_squad(path, version, skip_bad_answers=skip, labelled=labelled)
    except TaskDataError as err:
        assert _is_clear_error(err, path), str(err)
        return
    for e in examples:
        assert isinstance(e.qid, str) and isinstance(e.question, str) and e.question
        assert isinstance(e.context, str) and isinstance(e.title, str)
        for text, start in e.answers:
            assert isinstance(text, str) and e.context[start:start + len(text)] == text


# ------------------------------------------------------------------ CoNLL
CONLL_LINE = st.lists(CELL, max_size=4).map(" ".join)


@FUZZ
@given(data=st.binary(max_size=300) | st.builds(_lines_to_bytes, st.lists(CONLL_LINE, max_size=10),
                                                 st.lists(BAD_BYTES, max_size=2)),
       labelled=st.booleans())
@example(data=b"EU B-ORG\n\xff rejects O\n", labelled=True)
def test_conll_reader_parses_or_names_the_file(folder: Path, data: bytes,
                                               labelled: bool) -> None:
    path = folder / "ner.txt"
    path.write_bytes(data)
    try:
        sentences = read_conll(path, labelled=labelled)
    except TaskDataError as err:
        assert _is_clear_error(err, path), str(err)
        return
    for s in sentences:
        assert s.words and all(isinstance(w, str) and w for w in s.words)
        assert len(s.tags) == (len(s.words) if labelled else 0)


# ------------------------------------------------------------------ classify tables
@FUZZ
@given(data=TSV_FILES | st.binary(max_size=200),
       suffix=st.sampled_from([".csv", ".tsv", ".jsonl"]),
       problem=st.sampled_from(["single_label", "multi_label", "regression"]))
@example(data=b'text,label\n"a,b\n', suffix=".csv", problem="single_label")
@example(data=b'{"text": "a", "label": [1, {}]}\n', suffix=".jsonl", problem="multi_label")
@example(data=b'{"text": "\\ud800", "label": "x"}\n', suffix=".jsonl", problem="single_label")
@example(data=b'{"text": "a", "label": ' + b"7" * 5000 + b"}\n", suffix=".jsonl",
         problem="regression")
@example(data=b'"' + b"a" * 140_000 + b'",x\n', suffix=".csv", problem="single_label")
def test_classify_tables_parse_or_name_the_file(folder: Path, data: bytes, suffix: str,
                                                problem: str) -> None:
    path = folder / f"table{suffix}"
    path.write_bytes(b"text,label\n" + data if suffix == ".csv" else data)
    try:
        examples = read_classification(path, Columns("text", label="label"), problem)
    except TaskDataError as err:
        assert _is_clear_error(err, path), str(err)
        return
    for e in examples:
        assert isinstance(e.text_a, str) and e.text_a.strip()
        if problem == "regression":
            assert isinstance(e.label, float)
        elif problem == "multi_label":
            assert isinstance(e.label, tuple) and all(isinstance(x, str) for x in e.label)
        else:
            assert isinstance(e.label, str)
