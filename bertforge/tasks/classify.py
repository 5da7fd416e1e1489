"""Your own classification data: CSV, TSV (both with a header) or JSONL, one example per
record; single-label, multi-label or regression, one text or a text pair.

Multi-label labels are a JSON list in JSONL, or a ``label_sep``-separated string in CSV/TSV
(``"sports,politics"``). Regression labels are numbers.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from bertforge.tasks.common import TaskDataError, TextExample, check_text, read_table

PROBLEMS = ("single_label", "multi_label", "regression")


@dataclass(frozen=True)
class Columns:
    """Which fields hold the texts and the label (``label`` None for unlabelled files)."""

    text: str
    text_pair: str | None = None
    label: str | None = None
    id: str | None = None


def read_classification(path: str | os.PathLike, columns: Columns, problem: str = "single_label",
                        label_sep: str = ",", labelled: bool = True) -> list[TextExample]:
    """Examples from a table file. ``problem`` is one of :data:`PROBLEMS`; with
    ``labelled=False`` the label column is not read (prediction inputs)."""
    if problem not in PROBLEMS:
        raise TaskDataError(f"problem {problem!r} is not one of {', '.join(PROBLEMS)}")
    out = []
    for number, record in read_table(path):
        where = f"{path}:{number}"
        out.append(_example(record, columns, problem, label_sep, labelled, where, len(out)))
    if not out:
        raise TaskDataError(f"{path}: no examples")
    return out


def _field(record: dict[str, Any], name: str, where: str) -> Any:
    if name not in record:
        raise TaskDataError(f"{where}: no field {name!r} (fields: {', '.join(map(str, record))});"
                            " pass the right column name")
    return record[name]


def _example(record: dict[str, Any], columns: Columns, problem: str, label_sep: str,
             labelled: bool, where: str, position: int) -> TextExample:
    text = check_text(_field(record, columns.text, where), where, columns.text)
    pair = None
    if columns.text_pair:
        pair = check_text(_field(record, columns.text_pair, where), where, columns.text_pair)
    guid = str(record.get(columns.id, position)) if columns.id else str(position)
    label = None
    if labelled and columns.label:
        label = parse_label(_field(record, columns.label, where), problem, label_sep, where,
                            columns.label)
    return TextExample(guid, text, pair, label, where)


def parse_label(value: Any, problem: str, label_sep: str, where: str, field: str
                ) -> str | float | tuple[str, ...]:
    """A raw label as the problem wants it: a class name, a float, or a tuple of names."""
    if value is None or (isinstance(value, str) and not value.strip() and problem != "multi_label"):
        raise TaskDataError(f"{where}: field {field!r} (the label) is empty")
    if problem == "regression":
        try:
            score = float(value)
        except (TypeError, ValueError, OverflowError):
            score = math.nan
        if not math.isfinite(score):
            raise TaskDataError(f"{where}: field {field!r} should be a number for regression "
                                f"(a finite one), got {value!r}")
        return score
    if problem == "multi_label":
        parts = value if isinstance(value, list) else str(value).split(label_sep)
        return tuple(sorted({str(p).strip() for p in parts if str(p).strip()}))
    if isinstance(value, (list, dict)):
        raise TaskDataError(f"{where}: field {field!r} holds {type(value).__name__}; use "
                            "--problem multi_label for several labels per example")
    return str(value).strip()
