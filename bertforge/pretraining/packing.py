"""Sequence packing for MLM-only data: several ``[CLS] segment [SEP]`` per row.

Without a sentence objective nothing ties a row to one pair, so instead of padding short
sequences up to ``max_seq_length`` whole segments (chunks of one document, in reading
order) are put side by side in a row. The model keeps them apart (block-diagonal
attention, positions restarting at each segment; ``BertModel(sequence_ids=...)``), so a
segment is trained on exactly as if it had a row of its own.

Rows are filled best-fit: each segment goes into the open row with the least room that
still holds it (a new row when none does). No randomness: the rows of a block of
documents depend on its segments only, so the output stays independent of ``workers``.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from dataclasses import dataclass

import numpy as np

from bertforge.pretraining.instances import InstanceSpans, Materialized, materialize
from bertforge.pretraining.npyio import offsets_from_lengths

_ROW_BITS = 32  # open rows are kept sorted as room << _ROW_BITS | row


@dataclass
class PackedRows:
    """N packed rows holding G segments: the rows as ``Materialized`` (``b_start`` = row
    length), ``segment_offsets`` [N + 1] (row i holds segments [o[i], o[i + 1])),
    ``segment_starts`` [G] (position of each segment's [CLS] in its row) and
    ``segment_doc`` [G] (stored document index of each segment)."""

    mat: Materialized
    segment_offsets: np.ndarray
    segment_starts: np.ndarray
    segment_doc: np.ndarray


def assign_rows(lengths: np.ndarray, capacity: int) -> np.ndarray:
    """Best-fit row of each segment of ``lengths`` (each <= ``capacity``): int64 [G], rows
    numbered in the order they are opened."""
    out = np.empty(len(lengths), dtype=np.int64)
    open_rows: list[int] = []  # room << _ROW_BITS | row, ascending
    n_rows = 0
    for i, n in enumerate(np.asarray(lengths).tolist()):
        if n > capacity:
            raise ValueError(f"segment of {n} tokens is longer than a row of {capacity}")
        k = bisect_left(open_rows, n << _ROW_BITS)
        if k < len(open_rows):
            entry = open_rows.pop(k)
            row, room = entry & ((1 << _ROW_BITS) - 1), entry >> _ROW_BITS
        else:
            row, room, n_rows = n_rows, capacity, n_rows + 1
        out[i] = row
        if room - n > 0:
            insort(open_rows, (room - n) << _ROW_BITS | row)
    return out


def pack(spans: InstanceSpans, tokens: np.ndarray, cls_id: int, sep_id: int,
         max_seq_length: int) -> PackedRows:
    """Single-segment instances ``spans`` as packed rows of at most ``max_seq_length``."""
    lengths = spans.a_hi - spans.a_lo + 2  # [CLS] A [SEP]
    row = assign_rows(lengths, max_seq_length)
    order = np.argsort(row, kind="stable")  # by row; within a row, in reading order
    spans = InstanceSpans(*(getattr(spans, f)[order] for f in (
        "a_lo", "a_hi", "b_lo", "b_hi", "label", "a_doc", "b_doc")))
    segs = materialize(spans, tokens, cls_id, sep_id, single_segment=True)
    per_row = np.bincount(row, minlength=int(row.max(initial=-1)) + 1)
    seg_offsets = offsets_from_lengths(per_row)
    row_offsets = segs.offsets[seg_offsets]  # token offsets of the rows
    owner = np.repeat(np.arange(len(per_row)), per_row)
    starts = segs.offsets[:-1] - row_offsets[owner]
    mat = Materialized(segs.input_ids, row_offsets, np.diff(row_offsets))
    return PackedRows(mat, seg_offsets, starts, spans.a_doc)
