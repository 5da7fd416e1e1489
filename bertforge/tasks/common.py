"""What every task shares: the error type, text examples, label maps, table readers.

A *row* (a feature) is a dict of plain Python values: ``input_ids`` and ``token_type_ids``
(lists of ints, or lists of lists for multiple choice), and task-specific targets
(``labels``, ``start_positions`` …). :mod:`bertforge.tasks.batching` pads rows into
tensors.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Row = dict[str, Any]


class TaskDataError(ValueError):
    """A data file is wrong; the message names the file, line and field and what to do."""


@dataclass
class TextExample:
    """One classification example. ``label``: a class name, a float score (regression),
    a tuple of class names (multi-label), or None (unlabelled test data). ``where`` is
    ``"file:line"`` for error messages."""

    guid: str
    text_a: str
    text_b: str | None = None
    label: str | float | tuple[str, ...] | None = None
    where: str = ""


@dataclass
class LabelMap:
    """Class names <-> ids, in a fixed order (the order of ``names``)."""

    names: list[str]

    @classmethod
    def from_labels(cls, labels: Sequence[str | tuple[str, ...]]) -> LabelMap:
        """Every distinct class seen, sorted (multi-label tuples are unpacked)."""
        seen: set[str] = set()
        for label in labels:
            seen.update(label if isinstance(label, tuple) else (label,))
        return cls(sorted(seen))

    @classmethod
    def from_id2label(cls, id2label: dict[int, str]) -> LabelMap:
        return cls([id2label[i] for i in range(len(id2label))])

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    def __len__(self) -> int:
        return len(self.names)

    def id(self, name: str, where: str, hint: str = "") -> int:
        """The id of ``name``; a TaskDataError naming ``where`` when it is unknown."""
        try:
            return self.names.index(name)
        except ValueError:
            shown = ", ".join(self.names[:20]) + (" …" if len(self.names) > 20 else "")
            raise TaskDataError(f"{where}: label {name!r} was not seen in training (known: "
                                f"{shown}){'; ' + hint if hint else ''}") from None


def check_text(value: object, where: str, field: str) -> str:
    """``value`` as a non-empty string, else a TaskDataError naming the field."""
    if value is None or (isinstance(value, float) and value != value):
        raise TaskDataError(f"{where}: field {field!r} is missing")
    text = str(value)
    if not text.strip():
        raise TaskDataError(f"{where}: field {field!r} is empty; remove the example or fill "
                            "in its text")
    if _SURROGATE.search(text):  # e.g. JSON's "\ud800": no UTF-8 for it, tokenizers fail
        raise TaskDataError(f"{where}: field {field!r} holds a lone surrogate code point "
                            f"(U+{ord(_SURROGATE.search(text).group()):04X}); fix the text")
    return text


# ------------------------------------------------------------------ text files
# Files are opened with errors="surrogateescape": a byte that is not UTF-8 becomes a lone
# surrogate U+DC80..U+DCFF (which valid UTF-8 never decodes to), found line by line.
_NOT_UTF8 = re.compile("[\udc80-\udcff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def open_text(path: str | os.PathLike, encoding: str = "utf-8",
              newline: str | None = None) -> Any:
    """``open`` for reading a data file whose bad bytes :func:`checked_lines` reports."""
    return open(path, encoding=encoding, errors="surrogateescape", newline=newline)


def checked_lines(path: str | os.PathLike, lines: Iterable[str]) -> Iterator[str]:
    """The lines of a file opened with :func:`open_text`; a TaskDataError naming the file
    and line at the first byte that is not UTF-8."""
    for number, line in enumerate(lines, start=1):
        bad = _NOT_UTF8.search(line)
        if bad:
            byte = ord(bad.group()) - 0xDC00
            raise TaskDataError(f"{path}:{number}: not valid UTF-8 (byte 0x{byte:02x} at "
                                f"column {bad.start() + 1}); save the file as UTF-8")
        yield line


# ------------------------------------------------------------------ table files
def table_format(path: str | os.PathLike) -> str:
    """``csv``, ``tsv`` or ``jsonl`` from the file name."""
    suffix = Path(path).suffix.lower()
    formats = {".csv": "csv", ".tsv": "tsv", ".txt": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}
    if suffix not in formats:
        raise TaskDataError(f"{path}: unknown file type {suffix!r}; use .csv, .tsv or .jsonl")
    return formats[suffix]


def read_table(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for every record of a CSV (header), TSV (header) or JSONL
    file. Line numbers are 1-based and count the header."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: data file not found")
    fmt = table_format(path)
    with open_text(path, newline="") as fh:
        lines = checked_lines(path, fh)
        if fmt == "jsonl":
            yield from _read_jsonl(path, lines)
            return
        # TSV as GLUE and Google's run_classifier read it: no quoting, a '"' is text (csv's
        # quoting dropped the quotes of a field starting with one, and an MRPC sentence
        # opening a quotation swallowed the rest of the line's fields)
        reader = (csv.DictReader(lines, delimiter=",") if fmt == "csv" else
                  csv.DictReader(lines, delimiter="\t", quoting=csv.QUOTE_NONE))
        try:
            yield from _csv_records(path, reader, fmt)
        except csv.Error as err:  # e.g. a field over csv's size limit
            raise TaskDataError(f"{path}:{reader.line_num + 1}: not a readable "
                                f"{fmt.upper()} line ({err})") from None


def _csv_records(path: Path, reader: csv.DictReader, fmt: str = "csv"
                 ) -> Iterator[tuple[int, dict[str, Any]]]:
    if not reader.fieldnames:
        raise TaskDataError(f"{path}: empty file (expected a header line)")
    fix = ("quote fields holding the delimiter" if fmt == "csv" else
           "a TSV field cannot hold a tab: replace it, or use CSV or JSONL")
    for record in reader:
        if None in record:  # more cells than the header has names
            raise TaskDataError(f"{path}:{reader.line_num}: more fields than the header's "
                                f"{len(reader.fieldnames)}; {fix}")
        yield reader.line_num, record


def _read_jsonl(path: Path, lines: Iterable[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise TaskDataError(f"{path}:{number}: not valid JSON ({err.msg})") from None
        except (ValueError, RecursionError) as err:  # a 5000-digit number, deep nesting
            raise TaskDataError(f"{path}:{number}: JSON this reader refuses "
                                f"({type(err).__name__}: {str(err)[:100]})") from None
        if not isinstance(record, dict):
            raise TaskDataError(f"{path}:{number}: expected a JSON object per line")
        yield number, record


def read_tsv_lines(path: str | os.PathLike) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of a tab-separated file read literally: no quoting, as GLUE's
    files need (MRPC and SST-2 hold unbalanced quote characters)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: data file not found")
    with open_text(path, encoding="utf-8-sig") as fh:
        for number, line in enumerate(checked_lines(path, fh), start=1):
            line = line.rstrip("\r\n")
            if line:
                yield number, line.split("\t")
