"""Documents -> pre-training instances: chunks of sentences, A/B pairs, truncation.

For each document, sentences are packed into a chunk until it reaches a target length
(``max_num_tokens``, or with probability ``short_seq_prob`` a uniform length in
[2, max_num_tokens]). The chunk is split at a random sentence boundary into A and B:

- ``nsp``: with probability 0.5 (always when the chunk holds one sentence) B is replaced
  by sentences from a random start in a different random document, enough to fill the
  target (NotNext, label 1), and the chunk's unused sentences are put back; otherwise B is
  the rest of the chunk (IsNext, label 0);
- ``sop``: B is always the rest of the chunk (a one-sentence chunk is cut at a random
  token); with probability 0.5 A and B are swapped (label 1);
- ``none``: the whole chunk is one segment, label -1.

A pair over ``max_num_tokens`` is truncated by trimming the longer side one token at a
time (B on ties), each time from a random end; that is done in closed form here: the
lengths are fixed by the rule and the number trimmed from the front is binomial.

An instance is kept as token spans of the document store (``InstanceSpans``) until
``materialize`` builds ``[CLS] A [SEP] B [SEP]`` for a whole block at once.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass

import numpy as np

from bertforge.pretraining.docstore import DocStore
from bertforge.pretraining.npyio import offsets_from_lengths, ragged_ranges

OBJECTIVES = ("nsp", "sop", "none")
_DRAWS = 6  # uniforms per chunk: short?, short length, split, swap/random, doc, start


@dataclass(frozen=True)
class PairRule:
    """Parameters of instance building."""

    max_seq_length: int = 128
    short_seq_prob: float = 0.1
    objective: str = "nsp"

    @property
    def max_num_tokens(self) -> int:
        """Tokens of A and B together: the length less [CLS] and the [SEP]s."""
        return self.max_seq_length - (2 if self.objective == "none" else 3)

    def check(self) -> None:
        """Raise ValueError naming the parameter when a value is out of range."""
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, "
                             f"got {self.objective!r}")
        if self.max_num_tokens < 2:
            raise ValueError(f"max_seq_length {self.max_seq_length} is too small; use 8 or more")
        if not 0.0 <= self.short_seq_prob <= 1.0:
            raise ValueError(f"short_seq_prob must be in [0, 1], got {self.short_seq_prob}")


@dataclass
class InstanceSpans:
    """N instances as spans [lo, hi) of the store's token array; B is empty for ``none``."""

    a_lo: np.ndarray
    a_hi: np.ndarray
    b_lo: np.ndarray
    b_hi: np.ndarray
    label: np.ndarray  # int8: 0 IsNext / in order, 1 NotNext / swapped, -1 no objective
    a_doc: np.ndarray  # stored document index of each segment
    b_doc: np.ndarray

    def __len__(self) -> int:
        return len(self.label)


class _Collector:
    """Rows of (a_lo, a_hi, b_lo, b_hi, label, a_doc, b_doc); a NotNext row's B is drawn
    later for all rows at once (``_random_segments``) from its ``pending`` entry
    (row, B's target length, uniform for the document, uniform for the start)."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, int, int, int, int, int, int]] = []
        self.pending: list[tuple[int, int, float, float]] = []

    def spans(self, store: DocStore) -> InstanceSpans:
        a_lo, a_hi, b_lo, b_hi, label, a_doc, b_doc = \
            np.array(self.rows, dtype=np.int64).reshape(-1, 7).T
        if self.pending:
            row, target, u_doc, u_start = np.array(self.pending, dtype=np.float64).T
            row = row.astype(np.int64)
            b_lo[row], b_hi[row], b_doc[row] = _random_segments(
                store, a_doc[row], target.astype(np.int64), u_doc, u_start)
        return InstanceSpans(a_lo, a_hi, b_lo, b_hi, label.astype(np.int8), a_doc, b_doc)


def document_spans(store: DocStore, doc_lo: int, doc_hi: int, dupe_factor: int,
                   rule: PairRule, rng: np.random.Generator) -> InstanceSpans:
    """Instances of stored documents [doc_lo, doc_hi), ``dupe_factor`` passes, in order
    (pass, document, chunk), drawing with ``rng``; truncated to the rule's limit."""
    if rule.objective == "nsp" and len(store) < 2:
        raise ValueError("next-sentence prediction needs at least 2 documents (NotNext "
                         "takes B from another one); add documents or use --objective sop "
                         "or none")
    out = _Collector()
    doc_offsets = np.asarray(store.doc_offsets)
    for _ in range(dupe_factor):
        for d in range(doc_lo, doc_hi):
            s_lo, s_hi = int(doc_offsets[d]), int(doc_offsets[d + 1])
            bounds = store.sentence_offsets[s_lo:s_hi + 1].tolist()
            draws = rng.random((s_hi - s_lo, _DRAWS)).tolist()
            _chunk_document(d, bounds, draws, rule, out)
    return truncate(out.spans(store), rule, rng)


def _chunk_document(d: int, bounds: list[int], draws: list[list[float]], rule: PairRule,
                    out: _Collector) -> None:
    """Append the instances of one document (``bounds``: token offsets of its sentences)."""
    n, i, c, limit = len(bounds) - 1, 0, 0, rule.max_num_tokens
    while i < n:
        u = draws[c]
        c += 1
        target = limit if u[0] >= rule.short_seq_prob else 2 + int(u[1] * (limit - 1))
        end = bisect_left(bounds, bounds[i] + target, i + 1, n)  # sentences [i, end)
        if rule.objective == "none":
            out.rows.append((bounds[i], bounds[end], 0, 0, -1, d, d))
            i = end
            continue
        split = i + 1 + int(u[2] * (end - i - 1)) if end - i >= 2 else i + 1
        if rule.objective == "sop":
            _sop_pair(bounds, i, split, end, u[3], d, out, u[2])
            i = end
        elif end - i == 1 or u[3] < 0.5:  # NotNext: B drawn later, see _random_segments
            out.pending.append((len(out.rows), target - (bounds[split] - bounds[i]), u[4], u[5]))
            out.rows.append((bounds[i], bounds[split], 0, 0, 1, d, d))
            i = split  # the chunk's sentences after A go back for the next chunk
        else:
            out.rows.append((bounds[i], bounds[split], bounds[split], bounds[end], 0, d, d))
            i = end


def _sop_pair(bounds: list[int], i: int, split: int, end: int, u_swap: float, d: int,
              out: _Collector, u_cut: float) -> None:
    """Sentence-order pair: A then B in order, swapped with probability 0.5."""
    lo, hi = bounds[i], bounds[end]
    cut = bounds[split]
    if end - i == 1:  # one sentence: cut it at a random token
        if hi - lo < 2:
            return
        cut = lo + 1 + int(u_cut * (hi - lo - 1))
    if u_swap < 0.5:
        out.rows.append((cut, hi, lo, cut, 1, d, d))
    else:
        out.rows.append((lo, cut, cut, hi, 0, d, d))


def _random_segments(store: DocStore, doc: np.ndarray, target: np.ndarray, u_doc: np.ndarray,
                     u_start: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each NotNext instance of document ``doc``: another random document, a random
    start sentence in it, and sentences from there until ``target`` tokens (at least one,
    at most to the document's end). Returns (token lo, token hi, document), int64."""
    doc_offsets = np.asarray(store.doc_offsets)
    offsets = np.asarray(store.sentence_offsets)
    r = (u_doc * (len(store) - 1)).astype(np.int64)
    r += r >= doc  # never the same document
    s_lo, s_hi = doc_offsets[r], doc_offsets[r + 1]
    start = s_lo + (u_start * (s_hi - s_lo)).astype(np.int64)
    lo = offsets[start]
    end = np.searchsorted(offsets, lo + target, side="left")
    end = np.clip(end, start + 1, s_hi)
    return lo, offsets[end], r


def truncate(spans: InstanceSpans, rule: PairRule, rng: np.random.Generator) -> InstanceSpans:
    """Trim pairs to ``rule.max_num_tokens`` (see module doc); returns new spans."""
    la, lb = spans.a_hi - spans.a_lo, spans.b_hi - spans.b_lo
    total = np.minimum(la + lb, rule.max_num_tokens)
    a_longer = la > lb
    keep_a = np.where(a_longer, np.maximum(total - lb, (total + 1) // 2),
                      total - np.maximum(total - la, total // 2))
    keep_a = np.minimum(keep_a, la)
    keep_b = total - keep_a
    front_a = rng.binomial(la - keep_a, 0.5)
    front_b = rng.binomial(lb - keep_b, 0.5)
    a_lo, b_lo = spans.a_lo + front_a, spans.b_lo + front_b
    return InstanceSpans(a_lo, a_lo + keep_a, b_lo, b_lo + keep_b, spans.label,
                         spans.a_doc, spans.b_doc)


@dataclass
class Materialized:
    """Instances as arrays: ids back to back [T], offsets [N + 1], B's start [N]."""

    input_ids: np.ndarray
    offsets: np.ndarray
    b_start: np.ndarray


def materialize(spans: InstanceSpans, tokens: np.ndarray, cls_id: int, sep_id: int,
                single_segment: bool) -> Materialized:
    """``[CLS] A [SEP] B [SEP]`` (or ``[CLS] A [SEP]``) for every instance at once."""
    la, lb = spans.a_hi - spans.a_lo, spans.b_hi - spans.b_lo
    extra = 2 if single_segment else 3
    offsets = offsets_from_lengths(la + lb + extra)
    out = np.empty(int(offsets[-1]), dtype=tokens.dtype)
    out[offsets[:-1]] = cls_id
    out[offsets[:-1] + 1 + la] = sep_id
    out[ragged_ranges(offsets[:-1] + 1, la)] = tokens[ragged_ranges(spans.a_lo, la)]
    if not single_segment:
        out[offsets[1:] - 1] = sep_id
        out[ragged_ranges(offsets[:-1] + 2 + la, lb)] = tokens[ragged_ranges(spans.b_lo, lb)]
    return Materialized(out, offsets, la + 2)
