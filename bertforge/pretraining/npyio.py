"""Streaming writes of 1-D ``.npy`` files and ragged-array index helpers.

A ``.npy`` file is a header (shape, dtype) followed by raw data. ``NpyAppender`` writes
the data as it comes and fixes the shape in the header when it is closed, so arrays far
larger than memory can be written in pieces and then opened with
``np.load(path, mmap_mode="r")``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

_MAGIC = b"\x93NUMPY\x01\x00"
_HEADER_BYTES = 128  # magic + length + dict, padded with spaces; fits a 20-digit shape


class NpyAppender:
    """Append 1-D chunks of one dtype to ``path`` (a ``.npy`` file); ``close()`` finishes it."""

    def __init__(self, path: str | os.PathLike, dtype: np.dtype | type) -> None:
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.length = 0
        self._fh = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        self._fh.write(_header(self.dtype, 0))

    def append(self, values: np.ndarray) -> None:
        """Append ``values`` (cast to the file's dtype; the caller checks the range)."""
        arr = np.ascontiguousarray(values, dtype=self.dtype).reshape(-1)
        self._fh.write(arr.tobytes())
        self.length += arr.size

    def close(self) -> None:
        """Write the final shape into the header and close the file."""
        if self._fh.closed:
            return
        self._fh.seek(0)
        self._fh.write(_header(self.dtype, self.length))
        self._fh.close()


def _header(dtype: np.dtype, length: int) -> bytes:
    descr = np.lib.format.dtype_to_descr(dtype)
    text = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': ({length},), }}"
    size = _HEADER_BYTES - len(_MAGIC) - 2
    body = text.ljust(size - 1) + "\n"
    return _MAGIC + len(body).to_bytes(2, "little") + body.encode("latin1")


def open_array(path: str | os.PathLike) -> np.ndarray:
    """A read-only memory map of a ``.npy`` file, as a plain ndarray view (indexing a
    ``np.memmap`` scalar by scalar is several times slower)."""
    try:
        arr = np.load(path, mmap_mode="r")
    except ValueError:  # numpy cannot map a file with no data
        return np.load(path)
    return arr.view(np.ndarray)


def ragged_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + n)`` for each (s, n): int64 [sum(lengths)]."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(lengths)
    shift = np.asarray(starts, dtype=np.int64) - (ends - lengths)
    return np.repeat(shift, lengths) + np.arange(total, dtype=np.int64)


def offsets_from_lengths(lengths: np.ndarray) -> np.ndarray:
    """``[0, l0, l0 + l1, ...]``: int64 [len(lengths) + 1]."""
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


def smallest_uint(max_value: int) -> np.dtype:
    """uint16 when ``max_value`` fits, else int32 (token ids, positions)."""
    return np.dtype(np.uint16) if max_value <= np.iinfo(np.uint16).max else np.dtype(np.int32)
