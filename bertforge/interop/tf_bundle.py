"""Read TensorFlow tensor-bundle (V2) checkpoints, like Google's BERT releases, without TensorFlow.

A V2 checkpoint with prefix ``P`` (for instance ``uncased_L-12_H-768_A-12/bert_model.ckpt``) is:

- ``P.index``: a LevelDB-style SSTable. Its data blocks hold prefix-compressed
  ``key -> value`` entries followed by restart points; each block is followed by a one-byte
  compression type and a masked crc32c; the file ends in a 48-byte footer holding the
  metaindex and index BlockHandles and a magic number. The empty key ``""`` maps to a
  ``BundleHeaderProto`` (number of data shards, endianness, format version); every other key
  is a tensor name mapped to a ``BundleEntryProto`` (dtype, shape, shard, byte offset and size,
  masked crc32c of the bytes).
- ``P.data-00000-of-0000N``: the raw tensor bytes, row-major, concatenated.

Everything is parsed here by hand (varints and protobuf wire types) with numpy only.

Returned dtypes: float32, float64, float16, int8/16/32/64, uint8/16/32/64, complex64/128 and
bool come back as the numpy dtype of the same name. ``bfloat16`` (which numpy lacks) comes back
as float32, widened exactly (the 16 stored bits become the top half of a float32), so casting
it back to bfloat16 is lossless; :func:`list_variables` still reports ``"bfloat16"``. String
tensors come back as numpy object arrays of ``bytes``. Partitioned (sliced) variables and
resource/variant/quantized dtypes are not supported and raise :class:`CheckpointFormatError`
when read.
"""

from __future__ import annotations

import codecs
import difflib
import math
import os
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

__all__ = ["CheckpointFormatError", "crc32c", "list_variables", "read_checkpoint"]


class CheckpointFormatError(ValueError):
    """A checkpoint file is missing, truncated, corrupt or uses a feature this reader lacks."""


class _DecodeError(Exception):
    """Malformed bytes; re-raised as CheckpointFormatError naming the file."""


# --------------------------------------------------------------------------------------------
# crc32c (Castagnoli), as used by LevelDB tables and TF bundles
# --------------------------------------------------------------------------------------------

_CRC_POLY = 0x82F63B78  # the Castagnoli polynomial, bit-reflected
_CRC_MASK_DELTA = 0xA282EAD8
_MAX_CHUNK = 256  # bytes per independent stream in the vectorised path
_SEGMENT = 1 << 22  # bytes per vectorised pass (cache-sized); a multiple of every chunk
_PY_ONLY_BELOW = 4096  # below this many bytes the plain loop is faster than numpy


def _make_crc_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(_CRC_POLY), table >> 1)
    return table.astype(np.uint32)


_TABLE = _make_crc_table()
_TABLE_LIST = [int(v) for v in _TABLE]


def _crc_update(reg: int, data: bytes) -> int:
    """Advance the raw (unfinalised) crc register over ``data``, one byte at a time."""
    table = _TABLE_LIST
    for byte in data:
        reg = table[(reg ^ byte) & 0xFF] ^ (reg >> 8)
    return reg


def _apply(images: list[int], reg: int) -> int:
    """Apply a GF(2)-linear map, given by the images of the 32 unit vectors, to ``reg``."""
    out = 0
    bit = 0
    while reg:
        if reg & 1:
            out ^= images[bit]
        reg >>= 1
        bit += 1
    return out


@lru_cache(maxsize=256)
def _shift_tables(nbytes: int) -> np.ndarray:
    """[4, 256] tables for the map 'advance the register over ``nbytes`` zero bytes'.

    That map is linear over GF(2), so it is the XOR of ``tables[k][byte k of reg]``. It is
    built by squaring the one-zero-byte map, so any length costs O(log nbytes).
    """
    step = [_crc_update(1 << bit, b"\0") for bit in range(32)]
    result = [1 << bit for bit in range(32)]
    while nbytes:
        if nbytes & 1:
            result = [_apply(step, image) for image in result]
        step = [_apply(step, image) for image in step]
        nbytes >>= 1
    tables = np.zeros((4, 256), dtype=np.uint32)
    values = np.arange(256)
    for bit, image in enumerate(result):
        byte, offset = divmod(bit, 8)
        tables[byte][(values >> offset) & 1 == 1] ^= np.uint32(image)
    return tables


def _shift(regs: np.ndarray, nbytes: int) -> np.ndarray:
    """Advance every register in ``regs`` (uint32) over ``nbytes`` zero bytes."""
    t = _shift_tables(nbytes)
    low = t[0][regs & 0xFF] ^ t[1][(regs >> 8) & 0xFF]
    return low ^ t[2][(regs >> 16) & 0xFF] ^ t[3][regs >> 24]


def _crc_chunks(segment: np.ndarray, chunk: int) -> int:
    """Raw crc (register starting at 0) of ``segment``, whose length is a multiple of ``chunk``.

    The segment is cut into M chunks whose crcs run side by side, one numpy operation per byte
    position; the chunk crcs are then merged pairwise: crc(A + B) = shift(crc(A), len(B)) ^
    crc(B) when the register starts at 0.
    """
    columns = segment.reshape(-1, chunk).T.copy()  # [chunk, M]: row j = byte j of every chunk
    regs = np.zeros(columns.shape[1], dtype=np.uint32)
    for row in columns:
        regs = _TABLE[(regs ^ row) & 0xFF] ^ (regs >> 8)
    # Zero-crc chunks in front change nothing (a zero register stays zero over zero bytes),
    # so pad to a power of two and merge level by level.
    padded = 1 << (regs.size - 1).bit_length()
    regs = np.concatenate([np.zeros(padded - regs.size, dtype=np.uint32), regs])
    length = chunk
    while regs.size > 1:
        regs = _shift(regs[0::2], length) ^ regs[1::2]
        length *= 2
    return int(regs[0])


def crc32c(data: bytes | bytearray | memoryview) -> int:
    """Standard (unmasked) CRC-32C of ``data``; numpy-vectorised for large inputs.

    Throughput is roughly 250 MB/s on one core for large buffers, about 10 MB/s below 4 KB.
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    if buf.size < _PY_ONLY_BELOW:
        return _crc_update(0xFFFFFFFF, buf.tobytes()) ^ 0xFFFFFFFF
    chunk = min(_MAX_CHUNK, 1 << (int(buf.size**0.5).bit_length() - 1))
    head = buf.size % chunk
    reg = _crc_update(0xFFFFFFFF, buf[:head].tobytes())
    for start in range(head, buf.size, _SEGMENT):
        segment = buf[start : start + _SEGMENT]
        shifted = int(_shift(np.array([reg], dtype=np.uint32), segment.size)[0])
        reg = shifted ^ _crc_chunks(segment, chunk)
    return reg ^ 0xFFFFFFFF


def _masked_crc32c(data: bytes | bytearray | memoryview) -> int:
    """LevelDB/TF's masked crc: rotate right by 15 bits and add a constant."""
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _CRC_MASK_DELTA) & 0xFFFFFFFF


# --------------------------------------------------------------------------------------------
# Varints, protobuf wire format
# --------------------------------------------------------------------------------------------


def _read_varint(buf: bytes, pos: int, what: str) -> tuple[int, int]:
    """Decode a base-128 varint at ``pos``; returns (value, position after it)."""
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise _DecodeError(f"truncated varint in {what}")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise _DecodeError(f"varint longer than 10 bytes in {what}")


def _signed64(value: int) -> int:
    """Reinterpret a decoded varint as a two's-complement int64 (negative int32/64 fields)."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >> 63 else value


def _take(buf: bytes, pos: int, size: int, what: str) -> tuple[bytes, int]:
    if pos + size > len(buf):
        raise _DecodeError(f"{what} needs {size} bytes at offset {pos}, only {len(buf) - pos} left")
    return buf[pos : pos + size], pos + size


def _proto_fields(buf: bytes, what: str) -> list[tuple[int, int, int | bytes]]:
    """Split a serialized protobuf message into (field number, wire type, raw value)."""
    fields: list[tuple[int, int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        tag, pos = _read_varint(buf, pos, what)
        number, wire = tag >> 3, tag & 7
        value: int | bytes
        if wire == 0:
            value, pos = _read_varint(buf, pos, what)
        elif wire == 1:
            raw, pos = _take(buf, pos, 8, what)
            (value,) = struct.unpack("<Q", raw)
        elif wire == 2:
            size, pos = _read_varint(buf, pos, what)
            value, pos = _take(buf, pos, size, what)
        elif wire == 5:
            raw, pos = _take(buf, pos, 4, what)
            (value,) = struct.unpack("<I", raw)
        else:
            raise _DecodeError(f"unsupported protobuf wire type {wire} (field {number}) in {what}")
        fields.append((number, wire, value))
    return fields


def _parse_message(buf: bytes, what: str, wires: dict[int, int]) -> dict[int, list]:
    """Group the fields named in ``wires`` (number -> wire type); unknown fields are skipped.

    Repeated varint fields may arrive packed (wire type 2) and are unpacked here.
    """
    out: dict[int, list] = {}
    for number, wire, value in _proto_fields(buf, what):
        expected = wires.get(number)
        if expected is None:
            continue
        if expected == 0 and wire == 2 and isinstance(value, bytes):
            out.setdefault(number, []).extend(_unpack_varints(value, what))
            continue
        if wire != expected:
            raise _DecodeError(f"field {number} of {what} has wire type {wire}, not {expected}")
        out.setdefault(number, []).append(value)
    return out


def _unpack_varints(buf: bytes, what: str) -> list[int]:
    values = []
    pos = 0
    while pos < len(buf):
        value, pos = _read_varint(buf, pos, what)
        values.append(value)
    return values


def _last(fields: dict[int, list], number: int, default: int | bytes = 0) -> Any:
    """Protobuf semantics: the last occurrence of a singular field wins; absent means default."""
    values = fields.get(number)
    return values[-1] if values else default


# --------------------------------------------------------------------------------------------
# SSTable (the .index file)
# --------------------------------------------------------------------------------------------

_FOOTER_SIZE = 48  # two BlockHandles padded to 40 bytes, then the 8-byte magic
_TABLE_MAGIC = 0xDB4775248B80FB57
_BLOCK_TRAILER = 5  # 1 byte compression type + 4 bytes masked crc32c
_COMPRESSION_NAMES = {1: "snappy"}  # the only codec TF tables define; the index never uses it


def _read_block(data: bytes, offset: int, size: int, what: str) -> bytes:
    """Return the contents of the block at [offset, offset + size), checking its trailer."""
    end = offset + size
    if end + _BLOCK_TRAILER > len(data):
        raise _DecodeError(
            f"{what} block at bytes [{offset}, {end}) plus its 5-byte trailer runs past the end "
            f"of the file ({len(data)} bytes); the file is truncated"
        )
    kind = data[end]
    (stored,) = struct.unpack_from("<I", data, end + 1)
    if _masked_crc32c(data[offset : end + 1]) != stored:
        raise _DecodeError(f"crc32c mismatch in the {what} block at byte {offset}; file corrupt")
    if kind != 0:
        name = _COMPRESSION_NAMES.get(kind, f"unknown-type-{kind}")
        raise _DecodeError(
            f"{what} block at byte {offset} is {name}-compressed; TensorFlow writes bundle "
            "indexes uncompressed and this reader does not decompress blocks"
        )
    return data[offset:end]


def _block_entries(block: bytes, what: str) -> list[tuple[bytes, bytes]]:
    """Decode a block's prefix-compressed entries: shared, unshared, value length, key, value."""
    if len(block) < 4:
        raise _DecodeError(f"{what} block is {len(block)} bytes, too short for its restart count")
    (num_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    limit = len(block) - 4 - 4 * num_restarts
    if limit < 0:
        raise _DecodeError(f"{what} block claims {num_restarts} restart points; too many")
    entries: list[tuple[bytes, bytes]] = []
    key = b""
    pos = 0
    while pos < limit:
        shared, pos = _read_varint(block, pos, what)
        unshared, pos = _read_varint(block, pos, what)
        value_size, pos = _read_varint(block, pos, what)
        if shared > len(key) or pos + unshared + value_size > limit:
            raise _DecodeError(f"{what} block entry at offset {pos} overruns its block")
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        entries.append((key, block[pos : pos + value_size]))
        pos += value_size
    return entries


def _read_handle(buf: bytes, pos: int, what: str) -> tuple[int, int, int]:
    """Decode a BlockHandle (varint offset, varint size); returns (offset, size, next pos)."""
    offset, pos = _read_varint(buf, pos, what)
    size, pos = _read_varint(buf, pos, what)
    return offset, size, pos


def _table_items(data: bytes) -> list[tuple[bytes, bytes]]:
    """All (key, value) pairs of an SSTable, in key order."""
    if len(data) < _FOOTER_SIZE:
        raise _DecodeError(
            f"file is {len(data)} bytes, shorter than the {_FOOTER_SIZE}-byte SSTable footer; "
            "truncated or not a checkpoint index"
        )
    footer = data[-_FOOTER_SIZE:]
    (magic,) = struct.unpack_from("<Q", footer, _FOOTER_SIZE - 8)
    if magic != _TABLE_MAGIC:
        raise _DecodeError(
            f"bad magic number 0x{magic:016x} at the end of the file (expected "
            f"0x{_TABLE_MAGIC:016x}); truncated, or not a TensorFlow V2 checkpoint index"
        )
    _, _, pos = _read_handle(footer, 0, "footer metaindex handle")
    index_offset, index_size, _ = _read_handle(footer, pos, "footer index handle")
    index = _read_block(data, index_offset, index_size, "index")
    items: list[tuple[bytes, bytes]] = []
    for _, handle in _block_entries(index, "index"):
        offset, size, _ = _read_handle(handle, 0, "index entry")
        items.extend(_block_entries(_read_block(data, offset, size, "data"), "data"))
    return items


# --------------------------------------------------------------------------------------------
# Bundle protos
# --------------------------------------------------------------------------------------------

# TF DataType enum -> (name, numpy dtype code; None = strings). bfloat16 is read as its bits.
_DTYPES: dict[int, tuple[str, str | None]] = {
    1: ("float32", "f4"),
    2: ("float64", "f8"),
    3: ("int32", "i4"),
    4: ("uint8", "u1"),
    5: ("int16", "i2"),
    6: ("int8", "i1"),
    7: ("string", None),
    8: ("complex64", "c8"),
    9: ("int64", "i8"),
    10: ("bool", "?"),
    14: ("bfloat16", "u2"),
    17: ("uint16", "u2"),
    18: ("complex128", "c16"),
    19: ("float16", "f2"),
    22: ("uint32", "u4"),
    23: ("uint64", "u8"),
}
_UNSUPPORTED_DTYPES = {
    11: "qint8",
    12: "quint8",
    13: "qint32",
    15: "qint16",
    16: "quint16",
    20: "resource",
    21: "variant",
}
_BFLOAT16 = 14
_STRING = 7
_BUNDLE_VERSION = 1  # the consumer version this reader implements (TF's kTensorBundleVersion)


@dataclass(frozen=True)
class _Entry:
    """One BundleEntryProto: where a tensor's bytes live and what they are."""

    name: str
    dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc: int
    sliced: bool

    @property
    def dtype_name(self) -> str:
        if self.dtype in _DTYPES:
            return _DTYPES[self.dtype][0]
        return _UNSUPPORTED_DTYPES.get(self.dtype, f"dtype_enum_{self.dtype}")


@dataclass(frozen=True)
class _Bundle:
    prefix: Path
    index_path: Path
    num_shards: int
    big_endian: bool
    entries: dict[str, _Entry]

    def shard_path(self, shard_id: int) -> Path:
        return Path(f"{self.prefix}.data-{shard_id:05d}-of-{self.num_shards:05d}")


def _parse_shape(buf: bytes, what: str) -> tuple[int, ...]:
    """TensorShapeProto: repeated Dim dim = 2 (Dim: int64 size = 1), bool unknown_rank = 3."""
    fields = _parse_message(buf, what, {2: 2, 3: 0})
    if _last(fields, 3):
        raise _DecodeError(f"{what} has unknown rank")
    dims = []
    for dim in fields.get(2, []):
        size = _signed64(_last(_parse_message(dim, what, {1: 0}), 1))
        if size < 0:
            raise _DecodeError(f"{what} has an unknown ({size}) dimension")
        dims.append(size)
    return tuple(dims)


def _parse_entry(name: str, buf: bytes) -> _Entry:
    """BundleEntryProto: dtype 1, shape 2, shard_id 3, offset 4, size 5, crc32c 6 (fixed32),
    slices 7."""
    what = f"the entry for tensor '{name}'"
    fields = _parse_message(buf, what, {1: 0, 2: 2, 3: 0, 4: 0, 5: 0, 6: 5, 7: 2})
    return _Entry(
        name=name,
        dtype=_last(fields, 1),
        shape=_parse_shape(_last(fields, 2, b""), f"the shape of tensor '{name}'"),
        shard_id=_signed64(_last(fields, 3)),
        offset=_signed64(_last(fields, 4)),
        size=_signed64(_last(fields, 5)),
        crc=_last(fields, 6),
        sliced=bool(fields.get(7)),
    )


def _parse_header(buf: bytes) -> tuple[int, bool]:
    """BundleHeaderProto: num_shards 1, endianness 2 (0 little, 1 big), version 3 (VersionDef:
    producer 1, min_consumer 2, repeated bad_consumers 3). Returns (num_shards, big_endian)."""
    what = "the bundle header"
    fields = _parse_message(buf, what, {1: 0, 2: 0, 3: 2})
    version = _parse_message(_last(fields, 3, b""), what, {1: 0, 2: 0, 3: 0})
    min_consumer = _signed64(_last(version, 2))
    if min_consumer > _BUNDLE_VERSION or _BUNDLE_VERSION in version.get(3, []):
        raise _DecodeError(
            f"bundle format version needs a reader of version >= {min_consumer}; "
            f"this reader implements version {_BUNDLE_VERSION}"
        )
    num_shards = _signed64(_last(fields, 1))
    if num_shards < 1:
        raise _DecodeError(f"the bundle header declares {num_shards} data shards")
    return num_shards, _last(fields, 2) == 1


def _parse_items(items: list[tuple[bytes, bytes]]) -> tuple[int, bool, dict[str, _Entry]]:
    header: tuple[int, bool] | None = None
    entries: dict[str, _Entry] = {}
    for key, value in items:
        if key == b"":
            header = _parse_header(value)
        elif not key.startswith(b"\0"):  # keys starting with NUL hold slices of partitioned vars
            try:
                name = key.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _DecodeError(f"tensor name {key!r} is not UTF-8") from exc
            entries[name] = _parse_entry(name, value)
    if header is None:
        raise _DecodeError(
            "no bundle header (empty key); not a V2 tensor-bundle index (V1 checkpoints, a "
            "single 'model.ckpt' file, are not supported)"
        )
    return header[0], header[1], entries


# --------------------------------------------------------------------------------------------
# Locating the checkpoint
# --------------------------------------------------------------------------------------------

_DATA_SUFFIX = re.compile(r"\.data-\d{5}-of-\d{5}$")
_STATE_LINE = re.compile(r'^\s*model_checkpoint_path\s*:\s*"((?:[^"\\]|\\.)*)"', re.MULTILINE)


def _prefix_from_state_file(state: Path) -> Path:
    """The prefix named by a TF ``checkpoint`` file's ``model_checkpoint_path``."""
    match = _STATE_LINE.search(state.read_text(encoding="utf-8", errors="replace"))
    if match is None:
        raise CheckpointFormatError(f"{state}: no model_checkpoint_path line in this file")
    try:
        raw = codecs.escape_decode(match.group(1).encode("utf-8"))[0].decode("utf-8", "replace")
    except ValueError as exc:
        message = f"{state}: bad escape in model_checkpoint_path: {exc}"
        raise CheckpointFormatError(message) from None
    target = Path(raw)
    if not target.is_absolute():
        return state.parent / target
    if Path(f"{target}.index").exists():
        return target
    return state.parent / target.name  # an absolute path from the machine that trained it


def _prefix_in_directory(directory: Path) -> Path:
    indexes = sorted(directory.glob("*.index"))
    if len(indexes) == 1:
        return indexes[0].with_suffix("")
    state = directory / "checkpoint"
    if state.is_file():
        return _prefix_from_state_file(state)
    if not indexes:
        raise CheckpointFormatError(f"{directory}: no *.index file and no 'checkpoint' file here")
    names = ", ".join(p.name for p in indexes)
    raise CheckpointFormatError(
        f"{directory}: {len(indexes)} checkpoint indexes ({names}) and no 'checkpoint' file; "
        "pass a prefix such as " + str(indexes[0].with_suffix(""))
    )


def _resolve_prefix(prefix: str | Path) -> Path:
    path = Path(prefix)
    if path.is_dir():
        return _prefix_in_directory(path)
    if path.name == "checkpoint" and path.is_file():
        return _prefix_from_state_file(path)
    text = str(path)
    if text.endswith(".index"):
        return Path(text[: -len(".index")])
    match = _DATA_SUFFIX.search(text)
    return Path(text[: match.start()]) if match else path


def _load_bundle(prefix: str | Path) -> _Bundle:
    resolved = _resolve_prefix(prefix)
    index_path = Path(f"{resolved}.index")
    try:
        data = index_path.read_bytes()
    except OSError as exc:
        raise CheckpointFormatError(
            f"{index_path}: cannot read the checkpoint index ({exc.strerror}); pass the prefix "
            "(e.g. 'dir/bert_model.ckpt') or the directory holding it"
        ) from exc
    try:
        num_shards, big_endian, entries = _parse_items(_table_items(data))
    except _DecodeError as exc:
        raise CheckpointFormatError(f"{index_path}: {exc}") from None
    return _Bundle(resolved, index_path, num_shards, big_endian, entries)


# --------------------------------------------------------------------------------------------
# Reading tensors
# --------------------------------------------------------------------------------------------


def _read_bytes(handle: BinaryIO, path: Path, entry: _Entry) -> bytearray:
    """The tensor's bytes, after checking they lie inside the file (before allocating)."""
    end = entry.offset + entry.size
    if entry.offset < 0 or entry.size < 0:
        raise CheckpointFormatError(f"{path}: tensor '{entry.name}' has a negative offset or size")
    file_size = os.fstat(handle.fileno()).st_size
    if end > file_size:
        raise CheckpointFormatError(
            f"{path}: truncated; tensor '{entry.name}' needs bytes [{entry.offset}, {end}) but "
            f"the file is {file_size} bytes"
        )
    handle.seek(entry.offset)
    raw = bytearray(entry.size)
    if handle.readinto(raw) != entry.size:
        raise CheckpointFormatError(f"{path}: short read for tensor '{entry.name}'")
    return raw


def _length_word(length: int, order: str) -> bytes:
    """A string length as TF checksums it: the first 4 (or, past 4 GiB, all 8) bytes of a
    uint64 in the writer's byte order."""
    word = struct.pack(f"{order}Q", length)
    return word[:4] if length <= 0xFFFFFFFF else word


def _decode_strings(raw: bytearray, entry: _Entry, big_endian: bool, verify: bool) -> np.ndarray:
    """String tensors: varint64 lengths, a 4-byte masked crc32c of the lengths, the bytes.

    TF's checksums cover each length not as the varint stored but as a fixed-width word
    (:func:`_length_word`), kept so for backward compatibility.
    """
    what = f"string tensor '{entry.name}'"
    data = bytes(raw)
    lengths = []
    pos = 0
    for _ in range(math.prod(entry.shape)):
        length, pos = _read_varint(data, pos, what)
        lengths.append(length)
    if verify:
        words = b"".join(_length_word(n, ">" if big_endian else "<") for n in lengths)
        _check_crc(words + data[pos:], entry)
    _, pos = _take(data, pos, 4, what)  # the lengths' own checksum, covered by the one above
    values = np.empty(len(lengths), dtype=object)
    for i, length in enumerate(lengths):
        values[i], pos = _take(data, pos, length, what)
    if pos != len(data):
        raise _DecodeError(f"{what} has {len(data) - pos} unexpected trailing bytes")
    return values.reshape(entry.shape)


def _decode_numeric(raw: bytearray, entry: _Entry, big_endian: bool) -> np.ndarray:
    code = _DTYPES[entry.dtype][1]
    stored = np.dtype(code).newbyteorder(">" if big_endian else "<")
    count = math.prod(entry.shape)
    if count * stored.itemsize != len(raw):
        raise _DecodeError(
            f"tensor '{entry.name}' ({entry.dtype_name}{list(entry.shape)}) should take "
            f"{count * stored.itemsize} bytes but its entry says {len(raw)}"
        )
    array = np.frombuffer(raw, dtype=stored).reshape(entry.shape)
    if entry.dtype == _BFLOAT16:  # exact widening: the bf16 bits are the top half of a float32
        return (array.astype(np.uint32) << 16).view(np.float32)
    return array.astype(stored.newbyteorder("="), copy=False)


def _check_crc(checksummed: bytes | bytearray, entry: _Entry) -> None:
    if _masked_crc32c(checksummed) != entry.crc:
        raise _DecodeError(
            f"crc32c mismatch for tensor '{entry.name}' (bytes [{entry.offset}, "
            f"{entry.offset + entry.size})); the data file is corrupt or belongs to another index"
        )


def _check_readable(entry: _Entry, bundle: _Bundle) -> None:
    if entry.sliced:
        raise CheckpointFormatError(
            f"{bundle.index_path}: tensor '{entry.name}' is a partitioned (sliced) variable; "
            "this reader supports whole tensors only"
        )
    if entry.dtype not in _DTYPES:
        raise CheckpointFormatError(
            f"{bundle.index_path}: tensor '{entry.name}' has unsupported dtype "
            f"{entry.dtype_name}; pass names=... to read the other tensors"
        )


def _read_tensor(
    handle: BinaryIO, path: Path, entry: _Entry, bundle: _Bundle, verify: bool
) -> np.ndarray:
    _check_readable(entry, bundle)
    raw = _read_bytes(handle, path, entry)
    try:
        if entry.dtype == _STRING:
            return _decode_strings(raw, entry, bundle.big_endian, verify)
        if verify:
            _check_crc(raw, entry)
        return _decode_numeric(raw, entry, bundle.big_endian)
    except _DecodeError as exc:
        raise CheckpointFormatError(f"{path}: {exc}") from None


def _select(bundle: _Bundle, names: Iterable[str] | None) -> list[_Entry]:
    if names is None:
        return list(bundle.entries.values())
    selected = []
    for name in names:
        if name not in bundle.entries:
            close = difflib.get_close_matches(name, bundle.entries, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise KeyError(f"no tensor named '{name}' in {bundle.index_path}{hint}")
        selected.append(bundle.entries[name])
    return selected


def _open_shard(bundle: _Bundle, entry: _Entry) -> tuple[Path, BinaryIO]:
    if not 0 <= entry.shard_id < bundle.num_shards:
        raise CheckpointFormatError(
            f"{bundle.index_path}: tensor '{entry.name}' is in shard {entry.shard_id} but the "
            f"bundle has {bundle.num_shards} shard(s)"
        )
    path = bundle.shard_path(entry.shard_id)
    try:
        return path, open(path, "rb")  # closed by the caller
    except OSError as exc:
        raise CheckpointFormatError(
            f"{path}: missing or unreadable data shard {entry.shard_id} of {bundle.num_shards} "
            f"for checkpoint {bundle.prefix} ({exc.strerror}); needed by tensor '{entry.name}'"
        ) from exc


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def list_variables(prefix: str | Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Map every tensor name in a checkpoint to (dtype name, shape), in the index's key order.

    ``prefix`` is the checkpoint prefix (``dir/bert_model.ckpt``), its ``.index`` file, a
    directory holding exactly one ``*.index``, or a directory / file ``checkpoint`` whose
    ``model_checkpoint_path`` names it. Dtype names are TensorFlow's (``"float32"``,
    ``"bfloat16"``, ``"int64"``, ...). Only the index is read; no data shard is needed.

    Raises:
        CheckpointFormatError: the index is missing, truncated or corrupt.
    """
    bundle = _load_bundle(prefix)
    return {name: (e.dtype_name, e.shape) for name, e in bundle.entries.items()}


def read_checkpoint(
    prefix: str | Path, names: Iterable[str] | None = None, verify: bool = True
) -> dict[str, np.ndarray]:
    """Read tensors of a TensorFlow V2 checkpoint into numpy arrays, keyed by variable name.

    Args:
        prefix: as for :func:`list_variables`.
        names: the tensors to read (returned in this order); ``None`` reads every tensor, in
            key order, and so fails if any is partitioned or of an unsupported dtype.
        verify: check each tensor's masked crc32c against its data bytes, as TensorFlow does.
            The check is numpy-vectorised (roughly 250 MB/s on one core), so it adds about
            2 s to a 440 MB BERT-base checkpoint; pass ``False`` to skip it.
            The index's own block checksums are always checked.

    Returns:
        Arrays in the stored shapes (TensorFlow kernels are ``[in, out]``), in native byte
        order. bfloat16 tensors come back as float32 (exact), float16 stays float16, strings
        are object arrays of ``bytes``.

    Raises:
        CheckpointFormatError: a file is missing, truncated or corrupt (the message names it),
            or a tensor is partitioned or of an unsupported dtype.
        KeyError: a name in ``names`` is not in the checkpoint.
    """
    bundle = _load_bundle(prefix)
    selected = _select(bundle, names)
    arrays: dict[str, np.ndarray] = {}
    by_shard: dict[int, list[_Entry]] = {}
    for entry in selected:
        by_shard.setdefault(entry.shard_id, []).append(entry)
    for entries in by_shard.values():
        path, handle = _open_shard(bundle, entries[0])
        with handle:
            for entry in sorted(entries, key=lambda e: e.offset):
                arrays[entry.name] = _read_tensor(handle, path, entry, bundle, verify)
    return {entry.name: arrays[entry.name] for entry in selected}
