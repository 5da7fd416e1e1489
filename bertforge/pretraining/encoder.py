"""Fast exact token ids for a corpus: a cache of whitespace-separated chunks.

BERT's tokenisation never looks across whitespace: every rule (cleaning, accents, case,
CJK spacing, punctuation splitting, WordPiece) acts inside a whitespace-separated chunk,
and ``" "``, tab, CR and LF always end a chunk. So the ids of a text are the ids of its
chunks, concatenated. A corpus repeats its chunks ("the", "said,") millions of times; this
encoder tokenises each distinct chunk once with the Rust engine and afterwards only looks
it up. Texts holding any other character that Python's ``str.split`` treats as whitespace
(form feed, NBSP, U+2028, ...) are tokenised whole, so the result always equals
``BertTokenizer.tokenize_ids`` (the tests check this on real corpora).
"""

from __future__ import annotations

import gc
import re
from collections.abc import Sequence
from itertools import chain, repeat

import numpy as np

from bertforge.pretraining.npyio import offsets_from_lengths, ragged_ranges
from bertforge.tokenization import BertTokenizer

# characters str.split() splits on that are not one of " \t\n\r"
_OTHER_SPACE = re.compile("[\x0b\x0c\x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029"
                          "\u202f\u205f\u3000]")
_GROUP_CHARS = 1 << 16  # characters per text sent to the Rust engine for new chunks
_SEP = "[SEP]"


class CachedEncoder:
    """Token ids of many texts at once, identical to ``tokenizer.tokenize_ids``.

    ``max_entries`` bounds the cache (it is emptied when full, before a call, so memory
    stays flat);
    chunks longer than ``max_chunk_chars`` are tokenised but not cached.
    """

    def __init__(self, tokenizer: BertTokenizer, max_entries: int = 2_000_000,
                 max_chunk_chars: int = 48) -> None:
        self.tokenizer = tokenizer
        self.max_entries = max_entries
        self.max_chunk_chars = max_chunk_chars
        self._sep = _separator_id(tokenizer)
        self._reset()

    def _reset(self) -> None:
        self._index: dict[str, int] = {}
        self._start = np.zeros(1 << 16, dtype=np.int64)  # entry -> first id in _ids
        self._count = np.zeros(1 << 16, dtype=np.int64)  # entry -> number of ids
        self._ids = np.zeros(1 << 18, dtype=np.int32)
        self._n_ids = 0

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Ids of ``texts``: (flat int32 ids [sum(lengths)], int64 lengths [len(texts)])."""
        enabled = gc.isenabled()
        gc.disable()  # millions of short-lived strings; the collector would rescan them
        try:
            return self._encode(list(texts))
        finally:
            if enabled:
                gc.enable()

    def _encode(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        if len(self._index) > self.max_entries:
            self._reset()  # between calls only: entries looked up below stay valid
        pieces = list(map(str.split, texts))
        for i in _texts_with_other_space(texts):
            if pieces[i]:
                pieces[i] = [texts[i]]  # tokenised whole: see the module docstring
        n_chunks = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
        chunks = list(chain.from_iterable(pieces))
        del pieces
        entry = np.fromiter(map(self._index.get, chunks, repeat(-1)), dtype=np.int64,
                            count=len(chunks))
        missing = np.flatnonzero(entry < 0)
        if missing.size:
            self._add_missing(chunks, entry, missing)
        counts = self._count[entry]
        ids = self._ids[ragged_ranges(self._start[entry], counts)]
        per_chunk = offsets_from_lengths(counts)
        chunk_bounds = offsets_from_lengths(n_chunks)
        lengths = per_chunk[chunk_bounds[1:]] - per_chunk[chunk_bounds[:-1]]
        return ids, lengths

    def _add_missing(self, chunks: list[str], entry: np.ndarray, missing: np.ndarray) -> None:
        """Tokenise the distinct chunks not in the cache and fill in their entries."""
        distinct = dict.fromkeys([chunks[i] for i in missing.tolist()])
        short = [c for c in distinct if len(c) <= self.max_chunk_chars]
        new = short + [c for c in distinct if len(c) > self.max_chunk_chars]  # short first
        ids, counts = self._tokenize_chunks(new)
        first = len(self._index)
        self._reserve(first + len(new), self._n_ids + len(ids))
        n = len(new)
        self._start[first:first + n] = self._n_ids + offsets_from_lengths(counts)[:-1]
        self._count[first:first + n] = counts
        self._ids[self._n_ids:self._n_ids + len(ids)] = ids
        local = dict(zip(new, range(first, first + n), strict=True))
        entry[missing] = np.fromiter(map(local.__getitem__, [chunks[i] for i in missing]),
                                     dtype=np.int64, count=missing.size)
        # cache the short chunks; the long ones' entries (after them) serve this call only
        # and are overwritten by the next
        self._index.update(zip(short, range(first, first + len(short)), strict=True))
        self._n_ids += int(counts[:len(short)].sum())

    def _reserve(self, entries: int, ids: int) -> None:
        if entries > len(self._start):
            size = max(entries, 2 * len(self._start))
            self._start = np.resize(self._start, size)
            self._count = np.resize(self._count, size)
        if ids > len(self._ids):
            self._ids = np.resize(self._ids, max(ids, 2 * len(self._ids)))

    def _tokenize_chunks(self, chunks: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Ids of each chunk (flat int32, int64 counts). Chunks are joined with ``[SEP]``
        between them (a special token, matched whole and never merged with its
        neighbours) and encoded without offsets; the separators split the ids again.
        Chunks that themselves contain ``[SEP]`` go through ``_tokenize_by_offsets``."""
        sep = self._sep
        if sep is None:
            return self._tokenize_by_offsets(chunks)
        odd = [i for i, c in enumerate(chunks) if _SEP in c]
        if odd:
            keep = np.ones(len(chunks), dtype=bool)
            keep[odd] = False
            plain = [c for c, k in zip(chunks, keep.tolist(), strict=True) if k]
            ids_a, counts_a = self._tokenize_chunks(plain)
            ids_b, counts_b = self._tokenize_by_offsets([chunks[i] for i in odd])
            counts = np.zeros(len(chunks), dtype=np.int64)
            counts[keep], counts[~keep] = counts_a, counts_b
            starts = np.zeros(len(chunks), dtype=np.int64)
            starts[keep] = offsets_from_lengths(counts_a)[:-1]
            starts[~keep] = len(ids_a) + offsets_from_lengths(counts_b)[:-1]
            return np.concatenate([ids_a, ids_b])[ragged_ranges(starts, counts)], counts
        all_ids, all_counts = [], []
        groups = _sep_groups(chunks)
        for enc in self.tokenizer.backend.encode_batch_fast(groups, add_special_tokens=False):
            ids = np.asarray(enc.ids, dtype=np.int32)
            cuts = np.flatnonzero(ids == sep)
            edges = np.concatenate([[-1], cuts, [len(ids)]])
            all_counts.append(np.diff(edges) - 1)
            all_ids.append(np.delete(ids, cuts))
        if not all_ids:
            return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int64)
        return np.concatenate(all_ids), np.concatenate(all_counts).astype(np.int64)

    def _tokenize_by_offsets(self, chunks: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Ids of each chunk by encoding groups of chunks joined with spaces and assigning
        each token to a chunk by its character offset."""
        groups, bounds = _join_groups(chunks)
        encodings = self.tokenizer.backend.encode_batch(groups, add_special_tokens=False)
        all_ids, all_counts = [], []
        for enc, starts in zip(encodings, bounds, strict=True):
            ids = np.asarray(enc.ids, dtype=np.int32)
            if ids.size:
                first_char = np.fromiter((o[0] for o in enc.offsets), np.int64, ids.size)
                owner = np.searchsorted(starts, first_char, side="right") - 1
            else:
                owner = np.zeros(0, dtype=np.int64)
            all_ids.append(ids)
            all_counts.append(np.bincount(owner, minlength=len(starts)))
        return np.concatenate(all_ids), np.concatenate(all_counts).astype(np.int64)


def _separator_id(tokenizer: BertTokenizer) -> int | None:
    """The id of ``[SEP]`` if the engine matches it whole between chunks, else None."""
    if _SEP not in tokenizer.vocab:
        return None
    sep = tokenizer.vocab[_SEP]
    probe = tokenizer.backend.encode_batch_fast([f"a {_SEP} b"], add_special_tokens=False)
    return sep if probe[0].ids.count(sep) == 1 and len(probe[0].ids) == 3 else None


def _sep_groups(chunks: list[str]) -> list[str]:
    """Chunks joined by `` [SEP] `` into texts of about ``_GROUP_CHARS`` characters."""
    groups = []
    lo = 0
    cum = np.cumsum(np.fromiter(map(len, chunks), dtype=np.int64, count=len(chunks)) + 7)
    while lo < len(chunks):
        base = cum[lo - 1] if lo else 0
        hi = max(lo + 1, int(np.searchsorted(cum, base + _GROUP_CHARS, side="right")))
        hi = min(hi, len(chunks))
        groups.append(f" {_SEP} ".join(chunks[lo:hi]))
        lo = hi
    return groups


def _texts_with_other_space(texts: list[str]) -> list[int]:
    """Indices of the texts holding a character of ``_OTHER_SPACE`` (one regex pass)."""
    joined = "\n".join(texts)
    hits = [m.start() for m in _OTHER_SPACE.finditer(joined)]
    if not hits:
        return []
    ends = np.cumsum(np.fromiter(map(len, texts), np.int64, len(texts)) + 1)
    return np.unique(np.searchsorted(ends, hits, side="right")).tolist()


def _join_groups(chunks: list[str]) -> tuple[list[str], list[np.ndarray]]:
    """Chunks joined by spaces into texts of about ``_GROUP_CHARS`` characters, and the
    character offset where each chunk starts in its text."""
    groups, bounds = [], []
    lo = 0
    lengths = np.fromiter(map(len, chunks), dtype=np.int64, count=len(chunks)) + 1
    cum = np.cumsum(lengths)
    while lo < len(chunks):
        base = cum[lo - 1] if lo else 0
        hi = max(lo + 1, int(np.searchsorted(cum, base + _GROUP_CHARS, side="right")))
        hi = min(hi, len(chunks))
        groups.append(" ".join(chunks[lo:hi]))
        bounds.append(np.concatenate([[0], cum[lo:hi - 1] - base]))
        lo = hi
    return groups, bounds
