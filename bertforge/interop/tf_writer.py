"""Write TensorFlow tensor-bundle (V2) checkpoints, like Google's BERT releases, without
TensorFlow: the inverse of :mod:`bertforge.interop.tf_bundle`.

What TensorFlow's ``SaveV2`` op does, with one data shard:

- ``P.data-00000-of-00001``: each tensor's bytes (little-endian, row-major), one after
  another in key order, unpadded;
- ``P.index``: an SSTable (uncompressed blocks of at most 256 KiB, a restart point every
  16 keys, index-block keys shortened to a separator, a 48-byte footer) mapping ``""`` to
  the ``BundleHeaderProto`` (one shard, little-endian, producer version 1) and every tensor
  name to its ``BundleEntryProto`` (dtype, shape, offset, size, masked crc32c).

On ``tests/fixtures/google_tiny`` (written by TensorFlow 2.21) this writer reproduces
both files byte for byte; TensorFlow's own reader loads what it writes.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from bertforge.interop.tf_bundle import _DTYPES, _masked_crc32c

__all__ = ["write_checkpoint"]

BLOCK_SIZE = 256 * 1024  # TensorFlow's table::Options default
RESTART_INTERVAL = 16
TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
_DTYPE_ENUM = {np.dtype(code): enum for enum, (name, code) in _DTYPES.items()
               if code is not None and name not in ("bfloat16", "uint16")}
_DTYPE_ENUM[np.dtype("u2")] = 17  # uint16 (bfloat16 shares numpy's u2 in the reader)


def write_checkpoint(prefix: str | os.PathLike, tensors: Mapping[str, np.ndarray]) -> Path:
    """Write ``tensors`` (name -> numpy array) as the V2 checkpoint ``prefix``
    (``prefix.index`` and ``prefix.data-00000-of-00001``); returns the index path.
    Both files are written under temporary names and renamed into place."""
    prefix = Path(prefix)
    names = sorted(tensors)
    if "" in names:
        raise ValueError("a tensor name must not be empty: the empty key holds the header")
    data_path = Path(f"{prefix}.data-00000-of-00001")
    index_path = Path(f"{prefix}.index")
    entries: list[tuple[bytes, bytes]] = [(b"", _header())]
    offset = 0
    tmp_data = data_path.with_name(data_path.name + ".tmp")
    with open(tmp_data, "wb") as f:
        for name in names:
            array = np.asarray(tensors[name])
            raw = _tensor_bytes(name, array)
            f.write(raw)
            entries.append((name.encode("utf-8"),
                            _entry(array, offset, len(raw), _masked_crc32c(raw))))
            offset += len(raw)
    tmp_index = index_path.with_name(index_path.name + ".tmp")
    tmp_index.write_bytes(_table(entries))
    os.replace(tmp_data, data_path)
    os.replace(tmp_index, index_path)
    return index_path


# ------------------------------------------------------------------ tensors and protos
def _tensor_bytes(name: str, array: np.ndarray) -> bytes:
    dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
    if np.dtype(dtype) not in _DTYPE_ENUM:
        raise ValueError(f"{name}: dtype {array.dtype} cannot be written to a TF checkpoint")
    return np.ascontiguousarray(array, dtype=dtype).tobytes()


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1  # negative int64s as two's complement, as protobuf does
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field_varint(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value) if value else b""  # proto3: 0 is omitted


def _field_bytes(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _header() -> bytes:
    """BundleHeaderProto: num_shards 1, endianness LITTLE (0, omitted), version {producer 1}."""
    return _field_varint(1, 1) + _field_bytes(3, _field_varint(1, 1))


def _entry(array: np.ndarray, offset: int, size: int, crc: int) -> bytes:
    """BundleEntryProto: dtype, shape (always present), shard 0, offset, size, crc32c."""
    shape = b"".join(_field_bytes(2, _field_varint(1, int(d))) for d in array.shape)
    return (_field_varint(1, _DTYPE_ENUM[np.dtype(array.dtype.newbyteorder("="))])
            + _field_bytes(2, shape) + _field_varint(4, offset) + _field_varint(5, size)
            + _varint(6 << 3 | 5) + struct.pack("<I", crc))


# ------------------------------------------------------------------ the SSTable
class _Block:
    """A LevelDB table block: prefix-compressed entries, then the restart offsets."""

    def __init__(self, restart_interval: int) -> None:
        self.interval, self.buf, self.restarts = restart_interval, bytearray(), [0]
        self.count, self.last = 0, b""

    def add(self, key: bytes, value: bytes) -> None:
        shared = 0
        if self.count < self.interval:
            limit = min(len(key), len(self.last))
            while shared < limit and key[shared] == self.last[shared]:
                shared += 1
        else:
            self.restarts.append(len(self.buf))
            self.count = 0
        self.buf += (_varint(shared) + _varint(len(key) - shared) + _varint(len(value))
                     + key[shared:] + value)
        self.last, self.count = key, self.count + 1

    def size(self) -> int:
        return len(self.buf) + 4 * len(self.restarts) + 4

    def finish(self) -> bytes:
        return bytes(self.buf) + struct.pack(f"<{len(self.restarts) + 1}I", *self.restarts,
                                             len(self.restarts))

    def empty(self) -> bool:
        return not self.buf


def _table(entries: list[tuple[bytes, bytes]]) -> bytes:
    """An SSTable of ``entries`` (sorted by key), as TensorFlow's TableBuilder writes it."""
    out = bytearray()
    index = _Block(1)
    block = _Block(RESTART_INTERVAL)
    pending: tuple[bytes, bytes] | None = None  # (last key of a written block, its handle)

    def write(contents: bytes) -> bytes:
        handle = _varint(len(out)) + _varint(len(contents))
        out.extend(contents + b"\x00" + struct.pack("<I", _masked_crc32c(contents + b"\x00")))
        return handle

    for key, value in entries:
        if pending is not None:
            index.add(_separator(pending[0], key), pending[1])
            pending = None
        block.add(key, value)
        if block.size() >= BLOCK_SIZE:
            pending = (key, write(block.finish()))
            block = _Block(RESTART_INTERVAL)
    if not block.empty():
        pending = (block.last, write(block.finish()))
    meta = write(_Block(RESTART_INTERVAL).finish())
    if pending is not None:
        index.add(_successor(pending[0]), pending[1])
    index_handle = write(index.finish())
    footer = (meta + index_handle).ljust(FOOTER_SIZE - 8, b"\x00")
    return bytes(out + footer + struct.pack("<Q", TABLE_MAGIC))


def _separator(start: bytes, limit: bytes) -> bytes:
    """LevelDB's FindShortestSeparator: a short key in [start, limit)."""
    n = 0
    while n < min(len(start), len(limit)) and start[n] == limit[n]:
        n += 1
    if n < min(len(start), len(limit)):
        byte = start[n]
        if byte < 0xFF and byte + 1 < limit[n]:
            return start[:n] + bytes([byte + 1])
    return start


def _successor(key: bytes) -> bytes:
    """LevelDB's FindShortSuccessor: a short key >= ``key``."""
    for i, byte in enumerate(key):
        if byte != 0xFF:
            return key[:i] + bytes([byte + 1])
    return key
