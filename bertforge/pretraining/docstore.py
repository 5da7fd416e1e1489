"""The document store: a tokenised corpus in memory-mapped arrays.

``tokens.npy``            token ids of every sentence, back to back   [T] uint16|int32
``sentence_offsets.npy``  where sentence s starts in ``tokens``       [S + 1] int64
``doc_offsets.npy``       where document d's sentences start         [D + 1] int64
``doc_ids.npy``           document d's index in reading order         [D] int64

Documents that hold no tokens are left out (their reading-order index is skipped), so a
stored document always has at least one sentence and a sentence at least one token.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bertforge.pretraining.encoder import CachedEncoder
from bertforge.pretraining.npyio import NpyAppender, offsets_from_lengths, open_array
from bertforge.pretraining.reader import _BLANK, Piece, split_sentences


@dataclass
class TokenizedDocs:
    """Tokenised document pieces: one entry per piece document, in order; consecutive
    entries with the same ``doc_ids`` value are parts of one document."""

    tokens: np.ndarray  # int32 [T]
    sentence_lengths: np.ndarray  # int64 [S], every value >= 1
    doc_ids: np.ndarray  # int64 [E]
    doc_sentences: np.ndarray  # int64 [E], sentences of each entry
    text_bytes: int = 0
    long_sentences: int = 0
    bad_json: int = 0
    warnings: list[str] = field(default_factory=list)


def tokenize_pieces(pieces: Sequence[Piece], input_format: str, encoder: CachedEncoder,
                    max_sentence_tokens: int, jsonl_field: str = "text", num_shards: int = 1,
                    shard_index: int = 0) -> TokenizedDocs:
    """Sentences of ``pieces`` -> token ids; sentences longer than ``max_sentence_tokens``
    are cut into pieces of at most that many tokens (counted in ``long_sentences``). Only
    documents with index ``shard_index`` mod ``num_shards`` are kept."""
    texts: list[str] = []
    doc_ids: list[int] = []
    n_texts: list[int] = []
    result = TokenizedDocs(np.zeros(0, np.int32), np.zeros(0, np.int64),
                           np.zeros(0, np.int64), np.zeros(0, np.int64))
    for piece in pieces:
        result.text_bytes += len(piece.text)
        for doc, sentences in _documents(piece, input_format, jsonl_field, result):
            if doc % num_shards != shard_index:
                continue
            doc_ids.append(doc)
            n_texts.append(len(sentences))
            texts.extend(sentences)
    ids, lengths = encoder.encode(texts)
    bounds = offsets_from_lengths(np.asarray(n_texts, dtype=np.int64))
    kept = np.concatenate([[0], np.cumsum(lengths > 0)])
    per_doc = kept[bounds[1:]] - kept[bounds[:-1]]  # non-empty sentences per entry
    lengths = lengths[lengths > 0]
    lengths, per_doc, n_long = _cut_long(lengths, per_doc, max_sentence_tokens)
    result.tokens, result.sentence_lengths = ids, lengths
    result.doc_ids, result.doc_sentences = np.asarray(doc_ids, np.int64), per_doc
    result.long_sentences = n_long
    return result


def _documents(piece: Piece, input_format: str, jsonl_field: str,
               result: TokenizedDocs) -> list[tuple[int, list[str]]]:
    """(document index, sentence texts) of each document in ``piece``."""
    if input_format == "sentences":
        return [(piece.doc, piece.text.split("\n"))]
    if input_format == "text":
        return [(piece.doc, _text_sentences(_BLANK.split(piece.text), join_lines=True))]
    return _jsonl_documents(piece, jsonl_field, result)


def _text_sentences(paragraphs: list[str], join_lines: bool) -> list[str]:
    out: list[str] = []
    for para in paragraphs:
        if join_lines:
            para = para.replace("\r\n", " ").replace("\n", " ")
            out.extend(split_sentences(para))
        else:
            for line in para.split("\n"):
                out.extend(split_sentences(line))
    return out


def _jsonl_documents(piece: Piece, jsonl_field: str,
                     result: TokenizedDocs) -> list[tuple[int, list[str]]]:
    """One document per non-blank line; a bad line is counted and gives an empty document."""
    out, doc = [], piece.doc
    for offset, line in enumerate(piece.text.split("\n")):
        if not line or line.isspace():
            continue
        try:
            value = json.loads(line)
            text = value[jsonl_field] if isinstance(value, dict) else None
        except (json.JSONDecodeError, KeyError):
            text = None
        if not isinstance(text, str):
            result.bad_json += 1
            if len(result.warnings) < 5:
                result.warnings.append(f"{piece.source}:{piece.line + offset}: not a JSON object "
                                       f"with a string field '{jsonl_field}'; skipped")
            text = ""
        out.append((doc, _text_sentences([text], join_lines=False)))
        doc += 1
    return out


def _cut_long(lengths: np.ndarray, per_doc: np.ndarray,
              cap: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Cut sentences longer than ``cap`` tokens into ceil(len / cap) pieces."""
    long = lengths > cap
    if not long.any():
        return lengths, per_doc, 0
    n_pieces = np.where(long, -(-lengths // cap), 1)
    last = lengths - (n_pieces - 1) * cap
    new_lengths = np.full(int(n_pieces.sum()), cap, dtype=np.int64)
    new_lengths[np.cumsum(n_pieces) - 1] = last
    sent_bounds = offsets_from_lengths(per_doc)
    extra = np.concatenate([[0], np.cumsum(n_pieces - 1)])
    per_doc = per_doc + extra[sent_bounds[1:]] - extra[sent_bounds[:-1]]
    return new_lengths, per_doc, int(long.sum())


class DocStoreWriter:
    """Appends ``TokenizedDocs`` to a document store folder, joining document parts."""

    def __init__(self, folder: str | os.PathLike, token_dtype: np.dtype) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._tokens = NpyAppender(self.folder / "tokens.npy", token_dtype)
        self._sentences = NpyAppender(self.folder / "sentence_offsets.npy", np.int64)
        self._docs = NpyAppender(self.folder / "doc_offsets.npy", np.int64)
        self._doc_ids = NpyAppender(self.folder / "doc_ids.npy", np.int64)
        self._sentences.append(np.zeros(1, np.int64))
        self._docs.append(np.zeros(1, np.int64))
        self.n_tokens = self.n_sentences = self.n_docs = self.empty_docs = 0
        self._open_id, self._open_sentences = -1, 0

    def add(self, batch: TokenizedDocs) -> None:
        """Append a batch; a first entry with the open document's index continues it."""
        self._tokens.append(batch.tokens)
        self._sentences.append(self.n_tokens + np.cumsum(batch.sentence_lengths))
        self.n_tokens += len(batch.tokens)
        for doc, count in zip(batch.doc_ids.tolist(), batch.doc_sentences.tolist(),
                              strict=True):
            if doc != self._open_id:
                self._close_doc()
                self._open_id = doc
            self._open_sentences += count
            self.n_sentences += count

    def _close_doc(self) -> None:
        if self._open_id < 0:
            return
        if self._open_sentences:
            self.n_docs += 1
            self._docs.append(np.array([self.n_sentences], np.int64))
            self._doc_ids.append(np.array([self._open_id], np.int64))
        else:
            self.empty_docs += 1
        self._open_sentences = 0

    def close(self) -> dict:
        """Finish the files; returns the counts (also written to ``docstore.json``)."""
        self._close_doc()
        for appender in (self._tokens, self._sentences, self._docs, self._doc_ids):
            appender.close()
        info = {"tokens": self.n_tokens, "sentences": self.n_sentences,
                "documents": self.n_docs, "empty_documents": self.empty_docs,
                "token_dtype": str(self._tokens.dtype)}
        (self.folder / "docstore.json").write_text(json.dumps(info, indent=1) + "\n")
        return info


class DocStore:
    """Read-only, memory-mapped view of a document store folder."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.tokens = open_array(self.folder / "tokens.npy")
        self.sentence_offsets = open_array(self.folder / "sentence_offsets.npy")
        self.doc_offsets = open_array(self.folder / "doc_offsets.npy")
        self.doc_ids = open_array(self.folder / "doc_ids.npy")

    def __len__(self) -> int:
        return len(self.doc_ids)

    def document(self, d: int) -> list[np.ndarray]:
        """Token ids of each sentence of stored document ``d``."""
        lo, hi = self.doc_offsets[d], self.doc_offsets[d + 1]
        bounds = self.sentence_offsets[lo:hi + 1]
        return [np.asarray(self.tokens[a:b]) for a, b in zip(bounds[:-1], bounds[1:],
                                                             strict=True)]

    def document_tokens(self, d: int) -> np.ndarray:
        """All token ids of stored document ``d``, sentences back to back."""
        lo, hi = self.doc_offsets[d], self.doc_offsets[d + 1]
        return np.asarray(self.tokens[self.sentence_offsets[lo]:self.sentence_offsets[hi]])
