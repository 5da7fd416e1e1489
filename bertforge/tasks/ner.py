"""Token tagging (NER) on CoNLL files: words and tags -> sub-token rows -> word tags.

CoNLL format: one token per line, whitespace-separated columns with the word first and
the tag last (``EU NNP B-NP B-ORG``), a blank line between sentences, ``-DOCSTART-``
lines skipped. Tag schemes IOB1, IOB2 (BIO) and IOBES are checked, not guessed silently.

The label goes on each word's first sub-token; the other sub-tokens, [CLS], [SEP] and
padding get -100 (ignored by the loss). Sentences longer than a window are cut into
consecutive word chunks that fit, so every word is tagged exactly once.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bertforge.tasks.common import LabelMap, Row, TaskDataError, checked_lines, open_text
from bertforge.tokenization import BertTokenizer

IGNORE_INDEX = -100
SCHEME_PREFIXES = {"IOB1": set("BIO"), "IOB2": set("BIO"), "IOBES": set("BIOES")}


@dataclass
class Sentence:
    """Words and their tags (tags empty for unlabelled input); ``where`` = ``file:line``."""

    words: list[str]
    tags: list[str]
    where: str = ""


# ------------------------------------------------------------------ reading
def read_conll(path: str | os.PathLike, labelled: bool = True) -> list[Sentence]:
    """Sentences of a CoNLL file (word first, tag last; one column = words only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: CoNLL file not found")
    out: list[Sentence] = []
    words: list[str] = []
    tags: list[str] = []
    first_line = 0
    with open_text(path) as fh:
        for number, line in enumerate(checked_lines(path, fh), start=1):
            cells = line.split()
            if not cells or cells[0] == "-DOCSTART-":
                if words:
                    out.append(Sentence(words, tags, f"{path}:{first_line}"))
                words, tags = [], []
                continue
            if labelled and len(cells) < 2:
                raise TaskDataError(f"{path}:{number}: one column {cells[0]!r}; expected "
                                    "'word ... tag' (the tag in the last column)")
            first_line = first_line if words else number
            words.append(cells[0])
            if labelled:
                tags.append(cells[-1])
    if words:
        out.append(Sentence(words, tags, f"{path}:{first_line}"))
    if not out:
        raise TaskDataError(f"{path}: no sentences")
    return out


def detect_scheme(sentences: Sequence[Sentence]) -> str:
    """IOBES when E-/S- tags occur; IOB1 when some chunk starts with I- (after O or
    another type); else IOB2."""
    iob1 = False
    for sentence in sentences:
        previous = "O"
        for tag in sentence.tags:
            if tag[:2] in ("E-", "S-"):
                return "IOBES"
            if tag.startswith("I-") and (previous == "O" or previous[2:] != tag[2:]):
                iob1 = True
            previous = tag
    return "IOB1" if iob1 else "IOB2"


def check_scheme(sentences: Sequence[Sentence], scheme: str) -> None:
    """TaskDataError at the first tag that ``scheme`` does not allow (mixed schemes)."""
    if scheme not in SCHEME_PREFIXES:
        raise TaskDataError(f"tag scheme {scheme!r} is not one of {', '.join(SCHEME_PREFIXES)}")
    allowed = SCHEME_PREFIXES[scheme]
    for sentence in sentences:
        previous = "O"
        for i, tag in enumerate(sentence.tags):
            prefix = tag.split("-", 1)[0]
            if prefix not in allowed or (prefix != "O" and "-" not in tag):
                raise _scheme_error(sentence, i, tag, scheme)
            if scheme == "IOB2" and prefix == "I" and (previous == "O"
                                                       or previous[2:] != tag[2:]):
                raise _scheme_error(sentence, i, tag, scheme, "an I- tag opening a chunk is "
                                    "IOB1; pass --scheme IOB1 (or convert the file)")
            previous = tag


def _scheme_error(sentence: Sentence, i: int, tag: str, scheme: str, why: str = ""
                  ) -> TaskDataError:
    return TaskDataError(f"{sentence.where} (+{i} lines): tag {tag!r} of word "
                         f"{sentence.words[i]!r} is not valid {scheme}"
                         f"{'; ' + why if why else '; the file mixes tag schemes'}")


def tag_map(sentences: Sequence[Sentence]) -> LabelMap:
    """Every tag in the training data, "O" first then sorted."""
    tags = {t for s in sentences for t in s.tags}
    return LabelMap(sorted(tags, key=lambda t: (t != "O", t)))


# ------------------------------------------------------------------ features
def word_pieces(tokenizer: BertTokenizer, sentences: Sequence[Sentence]) -> list[list[list[int]]]:
    """Per sentence, per word, the word's sub-token ids (possibly none for odd characters)."""
    backend = tokenizer.backend
    backend.no_truncation()
    backend.no_padding()
    encoded = backend.encode_batch([s.words for s in sentences], is_pretokenized=True,
                                   add_special_tokens=False)
    out = []
    for sentence, enc in zip(sentences, encoded, strict=True):
        pieces: list[list[int]] = [[] for _ in sentence.words]
        for token_id, word in zip(enc.ids, enc.word_ids, strict=True):
            if word is not None:
                pieces[word].append(token_id)
        out.append(pieces)
    return out


def _chunks(pieces: list[list[int]], room: int) -> list[tuple[int, int]]:
    """(first word, end word) chunks whose sub-tokens fit ``room`` (a word longer than
    ``room`` is cut to ``room`` tokens; its label is on the first, which is kept)."""
    out, start, used = [], 0, 0
    for w, p in enumerate(pieces):
        size = min(len(p), room)
        if used + size > room and w > start:
            out.append((start, w))
            start, used = w, 0
        used += size
    out.append((start, len(pieces)))
    return out


def build_features(tokenizer: BertTokenizer, sentences: Sequence[Sentence], max_length: int,
                   labels: LabelMap | None) -> list[Row]:
    """One row per word chunk: ``input_ids``, ``token_type_ids``, ``labels`` (with a label
    map and tagged sentences), ``sentence_index``, ``word_start`` and ``word_positions``
    (input position of each word's first sub-token, -1 for a word without tokens)."""
    rows: list[Row] = []
    for index, (sentence, pieces) in enumerate(zip(sentences, word_pieces(tokenizer, sentences),
                                                   strict=True)):
        for start, stop in _chunks(pieces, max_length - 2):
            rows.append(_row(tokenizer, sentence, pieces, index, start, stop, labels,
                             max_length - 2))
    return rows


def _row(tokenizer: BertTokenizer, sentence: Sentence, pieces: list[list[int]], index: int,
         start: int, stop: int, labels: LabelMap | None, room: int) -> Row:
    ids, targets, positions = [tokenizer.cls_id], [IGNORE_INDEX], []
    for w in range(start, stop):
        p = pieces[w][:room]
        positions.append(len(ids) if p else -1)
        ids.extend(p)
        if labels is not None and sentence.tags:
            tag_id = labels.id(sentence.tags[w], f"{sentence.where} (+{w} lines)",
                               "every tag must occur in the training file")
            targets.extend([tag_id] + [IGNORE_INDEX] * (len(p) - 1) if p else [])
    ids.append(tokenizer.sep_id)
    row: Row = {"input_ids": ids, "token_type_ids": [0] * len(ids), "sentence_index": index,
                "word_start": start, "word_positions": positions}
    if labels is not None and sentence.tags:
        row["labels"] = targets + [IGNORE_INDEX]
    return row


# ------------------------------------------------------------------ decoding
def decode_tags(sentences: Sequence[Sentence], rows: Sequence[Row],
                logits: Sequence[np.ndarray], labels: LabelMap) -> list[list[str]]:
    """Word tags per sentence from per-row token logits ([S_i, K] each): the argmax at each
    word's first sub-token; "O" for a word without sub-tokens."""
    out = [["O"] * len(s.words) for s in sentences]
    for row, row_logits in zip(rows, logits, strict=True):
        best = row_logits.argmax(-1)
        tags = out[row["sentence_index"]]
        for offset, position in enumerate(row["word_positions"]):
            if position >= 0:
                tags[row["word_start"] + offset] = labels.names[int(best[position])]
    return out


def write_conll(path: str | os.PathLike, sentences: Sequence[Sentence],
                predicted: Sequence[Sequence[str]]) -> None:
    """``word gold predicted`` per line (conlleval's input), blank line between sentences;
    unlabelled sentences give ``word predicted``."""
    lines = []
    for sentence, tags in zip(sentences, predicted, strict=True):
        for i, word in enumerate(sentence.words):
            gold = [sentence.tags[i]] if sentence.tags else []
            lines.append(" ".join([word, *gold, tags[i]]))
        lines.append("")
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
