"""GLUE's nine tasks (and the AX diagnostic set) in ``download_glue_data.py``'s layout.

``DIR/{train,dev,test}.tsv`` per task; MNLI has ``dev_matched``, ``dev_mismatched``,
``test_matched``, ``test_mismatched``. Files are read literally (tab-split, no quoting).
Columns are found by header name, except CoLA's train/dev files, which have no header
(source, label, original label, sentence). Test predictions are written in the GLUE
submission format: ``index<TAB>prediction`` per line under the header, in files named
as the leaderboard expects (``CoLA.tsv``, ``MNLI-m.tsv``, ``AX.tsv`` …).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bertforge.tasks.common import TaskDataError, TextExample, check_text, read_tsv_lines


@dataclass(frozen=True)
class GlueTask:
    """Where a task's fields are. ``labels`` None means regression (STS-B).
    Column specs are header names, or 0-based positions for header-less files."""

    name: str
    text_a: str | int
    text_b: str | int | None
    label: str | int
    labels: tuple[str, ...] | None
    dev_splits: tuple[str, ...] = ("dev",)
    test_splits: tuple[str, ...] = ("test",)
    submission: dict[str, str] = field(default_factory=dict)  # split -> file name
    has_header: bool = True
    test_id: str = "index"
    test_text_a: str | None = None  # when the test file names the column differently

    @property
    def is_regression(self) -> bool:
        return self.labels is None


GLUE: dict[str, GlueTask] = {t.name: t for t in (
    GlueTask("CoLA", 3, None, 1, ("0", "1"), has_header=False,
             submission={"test": "CoLA.tsv"}, test_text_a="sentence"),
    GlueTask("SST-2", "sentence", None, "label", ("0", "1"), submission={"test": "SST-2.tsv"}),
    GlueTask("MRPC", "#1 String", "#2 String", "Quality", ("0", "1"),
             submission={"test": "MRPC.tsv"}),
    GlueTask("STS-B", "sentence1", "sentence2", "score", None, submission={"test": "STS-B.tsv"}),
    GlueTask("QQP", "question1", "question2", "is_duplicate", ("0", "1"),
             submission={"test": "QQP.tsv"}, test_id="id"),
    GlueTask("MNLI", "sentence1", "sentence2", "gold_label",
             ("contradiction", "entailment", "neutral"),
             dev_splits=("dev_matched", "dev_mismatched"),
             test_splits=("test_matched", "test_mismatched", "diagnostic"),
             submission={"test_matched": "MNLI-m.tsv", "test_mismatched": "MNLI-mm.tsv",
                         "diagnostic": "AX.tsv"}),
    GlueTask("QNLI", "question", "sentence", "label", ("entailment", "not_entailment"),
             submission={"test": "QNLI.tsv"}),
    GlueTask("RTE", "sentence1", "sentence2", "label", ("entailment", "not_entailment"),
             submission={"test": "RTE.tsv"}),
    GlueTask("WNLI", "sentence1", "sentence2", "label", ("0", "1"),
             submission={"test": "WNLI.tsv"}),
)}


def glue_task(name: str) -> GlueTask:
    """The task named ``name`` (any case: ``sst-2``, ``SST2``, ``mnli``)."""
    key = name.upper().replace("_", "-")
    aliases = {t.upper(): t for t in GLUE} | {t.upper().replace("-", ""): t for t in GLUE}
    if key not in aliases:
        raise TaskDataError(f"unknown GLUE task {name!r}; choose one of {', '.join(GLUE)}")
    return GLUE[aliases[key]]


def split_path(data_dir: str | os.PathLike, task: GlueTask, split: str) -> Path:
    """``DIR/split.tsv``; MNLI's diagnostic split is ``DIR/../diagnostic/diagnostic.tsv``."""
    folder = Path(data_dir)
    if split == "diagnostic":
        return folder.parent / "diagnostic" / "diagnostic.tsv"
    return folder / f"{split}.tsv"


def read_glue(data_dir: str | os.PathLike, task: GlueTask | str, split: str
              ) -> list[TextExample]:
    """The examples of ``split`` (``train``, ``dev``, ``dev_matched``, ``test`` …).
    Test splits come unlabelled with ``guid`` = the file's index column."""
    task = glue_task(task) if isinstance(task, str) else task
    path = split_path(data_dir, task, split)
    is_test = split.startswith("test") or split == "diagnostic"
    lines = read_tsv_lines(path)
    header = _header(path, lines, task, is_test)
    out = []
    for number, cells in lines:
        where = f"{path}:{number}"
        out.append(_example(task, cells, header, where, is_test, split, len(out)))
    if not out:
        raise TaskDataError(f"{path}: no examples")
    return out


def _header(path: Path, lines: object, task: GlueTask, is_test: bool) -> dict[str, int]:
    """Column name -> position (empty for CoLA's header-less train/dev files)."""
    if not task.has_header and not is_test:
        return {}
    try:
        _, cells = next(lines)
    except StopIteration:
        raise TaskDataError(f"{path}: empty file") from None
    return {name: i for i, name in enumerate(cells)}


def _cell(cells: list[str], header: dict[str, int], column: str | int, where: str) -> str:
    """The cell at ``column`` (a header name or a position), with errors naming both."""
    if isinstance(column, str):
        if column not in header:
            raise TaskDataError(f"{where}: the header has no column {column!r} (it has "
                                f"{', '.join(header)}); is this the right task's file?")
        index = header[column]
    else:
        index = column
    if index >= len(cells):
        raise TaskDataError(f"{where}: {len(cells)} fields, but field {column!r} is number "
                            f"{index + 1}; the line is truncated or the file is not GLUE's")
    return cells[index]


def _example(task: GlueTask, cells: list[str], header: dict[str, int], where: str,
             is_test: bool, split: str, position: int) -> TextExample:
    column_a = task.test_text_a if is_test and task.test_text_a else task.text_a
    text_a = check_text(_cell(cells, header, column_a, where), where, str(column_a))
    text_b = None
    if task.text_b is not None:
        text_b = check_text(_cell(cells, header, task.text_b, where), where, str(task.text_b))
    if is_test:
        guid = _cell(cells, header, task.test_id, where) if task.test_id in header \
            else str(position)
        return TextExample(guid, text_a, text_b, None, where)
    raw = _cell(cells, header, task.label, where).strip()
    return TextExample(f"{split}-{position}", text_a, text_b, _label(task, raw, where), where)


def _label(task: GlueTask, raw: str, where: str) -> str | float:
    if task.is_regression:
        try:
            score = float(raw)
        except ValueError:
            score = math.nan
        if not math.isfinite(score):
            raise TaskDataError(f"{where}: field {task.label!r} should be a number, got "
                                f"{raw!r}")
        return score
    if raw not in task.labels:
        raise TaskDataError(f"{where}: field {task.label!r} is {raw!r}, not one of {task.name}'s "
                            f"labels {', '.join(task.labels)}")
    return raw


def write_submission(path: str | os.PathLike, guids: Sequence[str],
                     predictions: Sequence[str | float]) -> None:
    """GLUE's submission file: header ``index<TAB>prediction``, then one line per example
    (class names as in the data, STS-B scores clipped to [0, 5] with 3 decimals)."""
    lines = ["index\tprediction"]
    for guid, pred in zip(guids, predictions, strict=True):
        value = f"{min(5.0, max(0.0, pred)):.3f}" if isinstance(pred, float) else str(pred)
        lines.append(f"{guid}\t{value}")
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
