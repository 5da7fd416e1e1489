"""Reading a corpus into document pieces, and splitting plain text into sentences.

Formats (``input_format``):

- ``sentences``: Google's format, one sentence per line, blank lines between documents;
- ``text``: plain text; documents are separated by blank lines (``doc_sep="blank-line"``)
  or are whole files (``doc_sep="file"``); sentences are found by ``split_sentences``;
- ``jsonl``: one JSON object per line, the document text in ``jsonl_field``.

Files are read in pieces of about ``piece_bytes`` so memory stays flat however large a
file or a document is: a document longer than a piece arrives as several pieces with the
same document index. Invalid UTF-8 is replaced (U+FFFD) and the lines are counted; files
with NUL bytes in their first 8 KiB are skipped as binary and counted.
"""

from __future__ import annotations

import gzip
import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

FORMATS = ("sentences", "text", "jsonl")
DOC_SEPS = ("blank-line", "file")

_BLANK = re.compile(r"\n\s*\n")
_LEADING_BLANK = re.compile(r"[^\S\n]*\n")
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr st jr sr prof rev gen col capt lt sgt hon gov messrs mme mlle no nos vol "
    "vols ch chap fig p pp ed eds vs etc e.g i.e cf al approx dept est inc ltd co corp mt ft "
    "jan feb mar apr jun jul aug sep sept oct nov dec".split())
_SENTENCE_END = re.compile(
    r"(?P<en>[.!?]+[\"'\u201d\u2019)\]]*)(?=\s+[\"'\u201c\u2018(\[]*[A-Z0-9\u00c0-\u00de])"
    r"|(?P<zh>(?:[\u3002\uff01\uff1f]+|\u2026+)[\u201d\u2019\u300d\u300f\uff09\"']*)"
    r"(?=[^\u201d\u2019\u300d\u300f\uff09\"'\u3002\uff01\uff1f\u2026])")


@dataclass
class Piece:
    """Text of (part of) one document: ``doc`` is its index in reading order over all
    files; ``source`` and ``line`` (1-based) say where the piece starts."""

    doc: int
    text: str
    source: str
    line: int


@dataclass
class ReadStats:
    """Counts of what reading met; ``warnings`` lists the first few problems by file."""

    files: int = 0
    bytes: int = 0
    replaced_lines: int = 0
    binary_files: int = 0
    long_lines: int = 0
    warnings: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        if len(self.warnings) < 20:
            self.warnings.append(message)


def split_sentences(text: str) -> list[str]:
    """Sentences of a paragraph of English or Chinese text.

    English ends a sentence at ``.``/``!``/``?`` (plus closing quotes or brackets) followed
    by space and a capital letter or digit, except after common abbreviations (Mr., Dr.,
    e.g.) and single initials; Chinese ends one at 。！？ or … (plus closing quotes).
    """
    out, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        if m.group("en") is not None and _is_abbreviation(text, m.start()):
            continue
        sentence = text[start:m.end()].strip()
        if sentence:
            out.append(sentence)
        start = m.end()
    tail = text[start:].strip()
    if tail:
        out.append(tail)
    return out


def _is_abbreviation(text: str, dot: int) -> bool:
    """Whether the ``.`` at ``dot`` ends an abbreviation or an initial, not a sentence."""
    if text[dot] != ".":
        return False
    head = text[max(0, dot - 12):dot].rsplit(None, 1)
    word = head[-1].lstrip("\"'(\u201c\u2018[") if head else ""
    return word.lower() in _ABBREVIATIONS or (len(word) == 1 and word.isupper())


def iter_pieces(files: Sequence[Path], input_format: str, doc_sep: str, stats: ReadStats,
                piece_bytes: int = 1 << 22) -> Iterator[Piece]:
    """Document pieces of all ``files`` in order, with global document indices."""
    next_doc = 0
    for path in files:
        stats.files += 1
        reader = _open_text(path, stats, piece_bytes)
        if reader is None:
            continue
        if input_format == "text" and doc_sep == "file":
            pieces = _file_pieces(reader, next_doc, str(path))
        elif input_format == "jsonl":
            pieces = _line_pieces(reader, next_doc, str(path))
        else:
            pieces = _blank_line_pieces(reader, next_doc, str(path))
        for piece in pieces:
            next_doc = max(next_doc, piece.doc + 1)
            yield piece


def _open_text(path: Path, stats: ReadStats, piece_bytes: int) -> Iterator[str] | None:
    """Text blocks of ``path`` ending at line ends (or a UTF-8 boundary within a very long
    line), or None for a binary file."""
    raw = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # noqa: SIM115
    try:
        head = raw.peek(8192)[:8192] if hasattr(raw, "peek") else b""
    except (OSError, EOFError) as err:
        raw.close()
        raise ValueError(f"{path}: cannot read ({err})") from None
    if b"\x00" in head:
        raw.close()
        stats.binary_files += 1
        stats.warn(f"{path}: skipped, looks binary (NUL bytes)")
        return None
    return _blocks(raw, path, stats, piece_bytes)


def _blocks(raw: io.BufferedIOBase, path: Path, stats: ReadStats,
            piece_bytes: int) -> Iterator[str]:
    carry = b""
    with raw:
        while True:
            data = carry + raw.read(piece_bytes)
            carry = b""
            if not data:
                return
            if not data.endswith(b"\n"):
                data += raw.readline(piece_bytes)
            if data and not data.endswith(b"\n") and raw.peek(1):
                stats.long_lines += 1
                data, carry = _cut_at_char(data)
            stats.bytes += len(data)
            yield _decode(data, path, stats)


def _cut_at_char(data: bytes) -> tuple[bytes, bytes]:
    """Split ``data`` before a trailing partial UTF-8 character (or after the last space)."""
    space = data.rfind(b" ", len(data) // 2)
    if space > 0:
        return data[:space + 1], data[space + 1:]
    cut = len(data)
    while cut > len(data) - 4 and cut > 0 and (data[cut - 1] & 0xC0) == 0x80:
        cut -= 1
    if cut > 0 and data[cut - 1] >= 0xC0:
        cut -= 1
    return data[:cut], data[cut:]


def _decode(data: bytes, path: Path, stats: ReadStats) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    lines = data.split(b"\n")
    out = []
    for line in lines:
        try:
            out.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            out.append(line.decode("utf-8", errors="replace"))
            if stats.replaced_lines == 0:
                stats.warn(f"{path}: invalid UTF-8 replaced by U+FFFD (first: {line[:40]!r})")
            stats.replaced_lines += 1
    return "\n".join(out)


def _blank_line_pieces(blocks: Iterator[str], first_doc: int, source: str) -> Iterator[Piece]:
    """Documents separated by whitespace-only lines; a block may end inside a document."""
    doc, open_doc, line = first_doc - 1, False, 1
    for block in blocks:
        if open_doc and _LEADING_BLANK.match(block):
            open_doc = False  # the previous block ended a line and this one starts blank
        parts = _BLANK.split(block)
        for j, part in enumerate(parts):
            if j > 0:
                open_doc = False
            if part and not part.isspace():
                if not open_doc:
                    doc += 1
                yield Piece(doc, part, source, line)
                open_doc = True
            line += part.count("\n") + (2 if j < len(parts) - 1 else 0)  # approximate


def _file_pieces(blocks: Iterator[str], doc: int, source: str) -> Iterator[Piece]:
    """The whole file is one document (if it holds any text)."""
    line = 1
    for block in blocks:
        if block and not block.isspace():
            yield Piece(doc, block, source, line)
        line += block.count("\n")


def _line_pieces(blocks: Iterator[str], first_doc: int, source: str) -> Iterator[Piece]:
    """Each non-blank line is one document (JSONL); a piece holds many of them, so the
    piece's ``doc`` is the first line's document and the worker numbers the rest."""
    doc, line = first_doc, 1
    for block in blocks:
        n_docs = sum(1 for x in block.split("\n") if x and not x.isspace())
        if n_docs:
            yield Piece(doc, block, source, line)
        doc += n_docs
        line += block.count("\n")
