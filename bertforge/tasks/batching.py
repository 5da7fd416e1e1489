"""Rows -> padded tensors, and length-grouped batch orders.

Legend: B = batch, S = longest sequence in the batch, C = choices.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from bertforge.tasks.common import Row

IGNORE_INDEX = -100
# keys padded along their last dimension, and the value they are padded with (None = pad id)
SEQUENCE_KEYS: dict[str, int | None] = {"input_ids": None, "token_type_ids": 0,
                                        "attention_mask": 0}
TOKEN_LABEL_KEYS = ("labels",)  # padded with -100 when they are sequences (token tagging)
TENSOR_KEYS = ("input_ids", "token_type_ids", "attention_mask", "labels",
               "start_positions", "end_positions")


def _pad(values: Sequence[Sequence[int]], width: int, fill: int) -> np.ndarray:
    out = np.full((len(values), width), fill, dtype=np.int64)
    for i, v in enumerate(values):
        out[i, : len(v)] = v
    return out


def _width(rows: Sequence[Row]) -> int:
    ids = [r["input_ids"] for r in rows]
    if ids and ids[0] and isinstance(ids[0][0], list):  # multiple choice: [C][S]
        return max(len(choice) for row in ids for choice in row)
    return max(len(row) for row in ids)


def collate(rows: Sequence[Row], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Pad rows into tensors: ``input_ids`` etc. [B, S] (or [B, C, S]); ``attention_mask``
    made from the lengths when absent; sequence ``labels`` padded with -100; scalar or
    vector targets stacked. Keys outside :data:`TENSOR_KEYS` are left out."""
    width = _width(rows)
    batch: dict[str, torch.Tensor] = {}
    first = rows[0]
    nested = isinstance(first["input_ids"][0], list)
    for key, fill in SEQUENCE_KEYS.items():
        if key == "attention_mask" and key not in first:
            values = [_ones(r["input_ids"], nested) for r in rows]
        elif key in first:
            values = [r[key] for r in rows]
        else:
            continue
        batch[key] = _pad_any(values, width, pad_id if fill is None else fill, nested)
    for key in ("labels", "start_positions", "end_positions"):
        if key in first:
            batch[key] = _targets([r[key] for r in rows], width)
    return batch


def _ones(ids: list, nested: bool) -> list:
    return [[1] * len(c) for c in ids] if nested else [1] * len(ids)


def _pad_any(values: list, width: int, fill: int, nested: bool) -> torch.Tensor:
    if not nested:
        return torch.from_numpy(_pad(values, width, fill))  # [B, S]
    b, c = len(values), len(values[0])
    flat = _pad([choice for row in values for choice in row], width, fill)
    return torch.from_numpy(flat.reshape(b, c, width))  # [B*C, S] -> [B, C, S]


def _targets(values: list, width: int) -> torch.Tensor:
    """Token labels [B, S] padded with -100; class ids [B]; scores [B]; multi-hot [B, K]."""
    first = values[0]
    if isinstance(first, list) and first and isinstance(first[0], int):
        return torch.from_numpy(_pad(values, width, IGNORE_INDEX))
    if isinstance(first, float) or (isinstance(first, list) and isinstance(first[0], float)):
        return torch.tensor(values, dtype=torch.float32)
    return torch.tensor(values, dtype=torch.long)


def row_length(row: Row) -> int:
    """Tokens in a row (the longest choice for multiple choice)."""
    ids = row["input_ids"]
    return max(len(c) for c in ids) if ids and isinstance(ids[0], list) else len(ids)


def batch_order(lengths: Sequence[int], batch_size: int, rng: np.random.Generator,
                group_by_length: bool = True, megabatch: int = 50) -> list[list[int]]:
    """Shuffled batches of row indices. With ``group_by_length``, rows are shuffled, cut into
    mega-batches of ``megabatch`` batches, sorted by length inside each, then cut into
    batches whose order is shuffled: little padding, still random."""
    order = rng.permutation(len(lengths))
    if group_by_length:
        size = batch_size * megabatch
        chunks = [order[i:i + size] for i in range(0, len(order), size)]
        order = np.concatenate([c[np.argsort([-lengths[j] for j in c], kind="stable")]
                                for c in chunks]) if chunks else order
    batches = [order[i:i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def sequential_batches(rows: Sequence[Row], batch_size: int) -> Iterator[list[Row]]:
    """Rows in file order, ``batch_size`` at a time (for evaluation)."""
    for i in range(0, len(rows), batch_size):
        yield list(rows[i:i + batch_size])
