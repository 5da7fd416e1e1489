"""Multiple choice in SWAG's CSV layout: a context, a question start and N endings.

SWAG's files (``train.csv``, ``val.csv``, ``test.csv``) have the columns ``video-id,
fold-ind, startphrase, sent1, sent2, gold-source, ending0 … ending3, label``. Each choice
is encoded as ``[CLS] sent1 [SEP] sent2 + " " + ending_i [SEP]``; the model scores every
choice and a softmax over the N scores picks one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from bertforge.tasks.common import Row, TaskDataError, check_text, read_table
from bertforge.tokenization import BertTokenizer


@dataclass(frozen=True)
class ChoiceColumns:
    context: str = "sent1"
    start: str | None = "sent2"
    endings: tuple[str, ...] = ("ending0", "ending1", "ending2", "ending3")
    label: str | None = "label"
    id: str | None = None


@dataclass
class ChoiceExample:
    guid: str
    context: str
    start: str
    endings: list[str]
    label: int | None
    where: str = ""


def read_choices(path: str | os.PathLike, columns: ChoiceColumns | None = None,
                 labelled: bool = True) -> list[ChoiceExample]:
    """Examples of a SWAG-style CSV/TSV/JSONL file; the label is the right ending's index."""
    columns = columns or ChoiceColumns()
    out = []
    for number, record in read_table(path):
        where = f"{path}:{number}"
        out.append(_example(record, columns, labelled, where, len(out)))
    if not out:
        raise TaskDataError(f"{path}: no examples")
    return out


def _get(record: dict, name: str, where: str) -> str:
    if name not in record:
        raise TaskDataError(f"{where}: no field {name!r} (fields: {', '.join(record)})")
    return check_text(record[name], where, name)


def _example(record: dict, columns: ChoiceColumns, labelled: bool, where: str, position: int
             ) -> ChoiceExample:
    context = _get(record, columns.context, where)
    start = _get(record, columns.start, where) if columns.start else ""
    endings = [_get(record, name, where) for name in columns.endings]
    label = None
    if labelled and columns.label:
        raw = record.get(columns.label)
        try:
            label = int(raw)
        except (TypeError, ValueError):
            raise TaskDataError(f"{where}: field {columns.label!r} should be an ending index, "
                                f"got {raw!r}") from None
        if not 0 <= label < len(endings):
            raise TaskDataError(f"{where}: field {columns.label!r} is {label}, but there are "
                                f"{len(endings)} endings")
    guid = str(record.get(columns.id, position)) if columns.id else str(position)
    return ChoiceExample(guid, context, start, endings, label, where)


def build_features(tokenizer: BertTokenizer, examples: Sequence[ChoiceExample],
                   max_length: int = 128) -> list[Row]:
    """One row per example: ``input_ids``/``token_type_ids`` as [C][S_c] lists, ``labels``."""
    rows = []
    for example in examples:
        seconds = [f"{example.start} {e}".strip() for e in example.endings]
        batch = tokenizer.encode_batch([example.context] * len(seconds), seconds,
                                       max_length=max_length, truncation="longest_first")
        row: Row = {"input_ids": [e.ids for e in batch.encodings],
                    "token_type_ids": [e.type_ids for e in batch.encodings]}
        if example.label is not None:
            row["labels"] = example.label
        rows.append(row)
    return rows
