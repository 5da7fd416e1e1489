"""The TensorFlow tensor-bundle reader against a checkpoint written by TensorFlow itself.

``tests/fixtures/google_tiny`` was made once by ``scripts/make_tf_fixture.py`` with real
TensorFlow; ``expected.safetensors`` holds the arrays it saved, so no test needs TensorFlow.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from bertforge.interop.tf_bundle import (
    CheckpointFormatError,
    crc32c,
    list_variables,
    read_checkpoint,
)

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "google_tiny"
PREFIX = FIXTURE / "bert_model.ckpt"
DATA_NAME = "bert_model.ckpt.data-00000-of-00001"
INDEX_NAME = "bert_model.ckpt.index"


@pytest.fixture(scope="module")
def expected() -> dict[str, np.ndarray]:
    return load_file(str(FIXTURE / "expected.safetensors"))


@pytest.fixture()
def copy(tmp_path: Path) -> Path:
    """A writable copy of the fixture checkpoint; returns its prefix."""
    for name in (INDEX_NAME, DATA_NAME):
        shutil.copyfile(FIXTURE / name, tmp_path / name)
    return tmp_path / "bert_model.ckpt"


def test_reads_exactly_what_tensorflow_saved(expected: dict[str, np.ndarray]) -> None:
    arrays = read_checkpoint(PREFIX)
    assert sorted(arrays) == sorted(expected)
    for name, want in expected.items():
        got = arrays[name]
        assert got.dtype == want.dtype, name
        assert got.shape == want.shape, name
        assert got.tobytes() == want.tobytes(), name


def test_global_step_is_an_int64_scalar() -> None:
    step = read_checkpoint(PREFIX, names=["global_step"])["global_step"]
    assert step.dtype == np.int64 and step.shape == () and int(step) == 1000


def test_list_variables_agrees(expected: dict[str, np.ndarray]) -> None:
    variables = list_variables(PREFIX)
    assert sorted(variables) == sorted(expected)
    for name, (dtype, shape) in variables.items():
        assert dtype == expected[name].dtype.name, name
        assert shape == expected[name].shape, name


def test_fixture_has_googles_names_and_shapes() -> None:
    config = json.loads((FIXTURE / "bert_config.json").read_text())
    vocab = (FIXTURE / "vocab.txt").read_text().splitlines()
    assert config["vocab_size"] == len(vocab)
    h, i = config["hidden_size"], config["intermediate_size"]
    variables = list_variables(FIXTURE)
    assert variables["bert/embeddings/word_embeddings"] == ("float32", (len(vocab), h))
    assert variables["bert/encoder/layer_1/intermediate/dense/kernel"] == ("float32", (h, i))
    assert variables["bert/encoder/layer_1/output/dense/kernel"] == ("float32", (i, h))
    assert variables["cls/seq_relationship/output_weights"] == ("float32", (2, h))
    assert variables["cls/predictions/output_bias/adam_v"] == ("float32", (len(vocab),))
    assert variables["global_step"] == ("int64", ())


@pytest.mark.parametrize("form", [str(PREFIX), FIXTURE, FIXTURE / INDEX_NAME, FIXTURE / DATA_NAME])
def test_accepts_prefix_directory_and_file_names(form: str | Path) -> None:
    assert list_variables(form) == list_variables(PREFIX)


def test_follows_a_checkpoint_state_file(copy: Path) -> None:
    # A second index makes the directory ambiguous; the state file names the one to use,
    # by an absolute path from the machine that trained it.
    (copy.parent / "other.ckpt.index").write_bytes(b"")
    state = copy.parent / "checkpoint"
    state.write_text('model_checkpoint_path: "/gone/run/bert_model.ckpt"\n')
    assert list_variables(copy.parent) == list_variables(PREFIX)
    assert list_variables(state) == list_variables(PREFIX)


def test_names_filter_reads_only_those_in_that_order(expected: dict[str, np.ndarray]) -> None:
    names = ["cls/seq_relationship/output_weights", "bert/embeddings/word_embeddings"]
    arrays = read_checkpoint(PREFIX, names=names)
    assert list(arrays) == names
    for name in names:
        np.testing.assert_array_equal(arrays[name], expected[name])
    with pytest.raises(KeyError, match="bert/pooler/dense/kernal"):
        read_checkpoint(PREFIX, names=["bert/pooler/dense/kernal"])


def test_verify_catches_a_flipped_data_byte(copy: Path, expected: dict[str, np.ndarray]) -> None:
    data = copy.parent / DATA_NAME
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    data.write_bytes(bytes(raw))
    with pytest.raises(CheckpointFormatError, match="crc32c mismatch") as caught:
        read_checkpoint(copy)
    assert str(data) in str(caught.value)
    unchecked = read_checkpoint(copy, verify=False)
    assert any(unchecked[n].tobytes() != expected[n].tobytes() for n in expected)


@pytest.mark.parametrize("keep", [0, 30, 47, 4000, -1])
def test_truncated_index_is_reported(copy: Path, keep: int) -> None:
    index = copy.parent / INDEX_NAME
    raw = index.read_bytes()
    index.write_bytes(raw[:keep])
    with pytest.raises(CheckpointFormatError) as caught:
        list_variables(copy)
    assert str(index) in str(caught.value)


def test_corrupt_index_block_is_reported(copy: Path) -> None:
    index = copy.parent / INDEX_NAME
    raw = bytearray(index.read_bytes())
    raw[100] ^= 0x01
    index.write_bytes(bytes(raw))
    with pytest.raises(CheckpointFormatError, match="crc32c mismatch in the data block"):
        list_variables(copy)


def test_compressed_block_is_refused_clearly(copy: Path) -> None:
    # Mark the index's first (and only) data block snappy-compressed, with a valid checksum.
    index = copy.parent / INDEX_NAME
    raw = bytearray(index.read_bytes())
    block_size = _first_block_size(bytes(raw))
    raw[block_size] = 1
    raw[block_size + 1 : block_size + 5] = struct.pack("<I", _masked(raw[: block_size + 1]))
    index.write_bytes(bytes(raw))
    with pytest.raises(CheckpointFormatError, match="snappy-compressed") as caught:
        list_variables(copy)
    assert str(index) in str(caught.value)


def test_missing_data_shard_is_named(copy: Path) -> None:
    data = copy.parent / DATA_NAME
    data.unlink()
    assert "global_step" in list_variables(copy)  # the index alone still lists
    with pytest.raises(CheckpointFormatError, match="missing") as caught:
        read_checkpoint(copy)
    assert str(data) in str(caught.value)


def test_truncated_data_is_reported(copy: Path) -> None:
    data = copy.parent / DATA_NAME
    data.write_bytes(data.read_bytes()[:-7])
    with pytest.raises(CheckpointFormatError, match="truncated") as caught:
        read_checkpoint(copy, verify=False)
    assert str(data) in str(caught.value)


def test_missing_checkpoint_names_the_index(tmp_path: Path) -> None:
    with pytest.raises(CheckpointFormatError, match="no_such.ckpt.index"):
        read_checkpoint(tmp_path / "no_such.ckpt")
    with pytest.raises(CheckpointFormatError, match="no \\*.index file"):
        list_variables(tmp_path)


def test_crc32c_known_answer_and_vectorised_path() -> None:
    assert crc32c(b"") == 0
    assert crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value
    data = np.random.default_rng(0).integers(0, 256, 100_003, dtype=np.uint8).tobytes()
    table = [_crc_of_byte(b) for b in range(256)]
    reg = 0xFFFFFFFF
    for byte in data:
        reg = table[(reg ^ byte) & 0xFF] ^ (reg >> 8)
    assert crc32c(data) == reg ^ 0xFFFFFFFF


# ---- a hand-built bundle, for dtypes and layouts the BERT fixture lacks ----------------------
# The encodings (bfloat16 as raw uint16 bits, float16, bool as one byte, two shards) were
# checked once against TensorFlow 2.21's own SaveV2 + MergeV2Checkpoints output.


def test_other_dtypes_and_two_shards(tmp_path: Path) -> None:
    bf16_bits = np.array([0x3F80, 0xC000, 0x3EAB], dtype="<u2")  # 1.0, -2.0, 0.333984375
    tensors = {  # name -> (TF dtype enum, shard, array as stored)
        "bf": (14, 0, bf16_bits),
        "flags": (10, 0, np.array([True, False, True])),
        "half": (19, 1, np.array([[0.5, -1.25]], dtype="<f2")),
        "ids": (3, 1, np.arange(6, dtype="<i4").reshape(2, 3)),
    }
    prefix = tmp_path / "model.ckpt"
    _write_bundle(prefix, tensors)
    assert list_variables(prefix) == {
        "bf": ("bfloat16", (3,)),
        "flags": ("bool", (3,)),
        "half": ("float16", (1, 2)),
        "ids": ("int32", (2, 3)),
    }
    arrays = read_checkpoint(prefix)
    assert arrays["bf"].dtype == np.float32
    assert arrays["bf"].tolist() == [1.0, -2.0, 0.333984375]
    assert arrays["flags"].tolist() == [True, False, True]
    assert arrays["half"].dtype == np.float16 and arrays["half"].tolist() == [[0.5, -1.25]]
    np.testing.assert_array_equal(arrays["ids"], np.arange(6).reshape(2, 3))


def test_unsupported_dtype_is_named(tmp_path: Path) -> None:
    prefix = tmp_path / "model.ckpt"
    _write_bundle(prefix, {"v": (21, 0, np.zeros(2, np.uint8))})  # 21 = DT_VARIANT
    assert list_variables(prefix) == {"v": ("variant", (2,))}
    with pytest.raises(CheckpointFormatError, match="unsupported dtype variant"):
        read_checkpoint(prefix)


def test_bad_magic_is_reported(tmp_path: Path) -> None:
    prefix = tmp_path / "model.ckpt"
    _write_bundle(prefix, {"x": (1, 0, np.zeros(1, "<f4"))})
    index = tmp_path / "model.ckpt.index"
    index.write_bytes(index.read_bytes()[:-1] + b"\0")
    with pytest.raises(CheckpointFormatError, match="bad magic number"):
        read_checkpoint(prefix)


def _crc_of_byte(byte: int) -> int:
    for _ in range(8):
        byte = (byte >> 1) ^ 0x82F63B78 if byte & 1 else byte >> 1
    return byte


def _masked(data: bytes | bytearray) -> int:
    crc = crc32c(bytes(data))
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes(out + bytes([value]))


def _field(number: int, value: int | bytes) -> bytes:
    if isinstance(value, bytes):
        return _varint(number << 3 | 2) + _varint(len(value)) + value
    return _varint(number << 3) + _varint(value)


def _block(entries: list[tuple[bytes, bytes]]) -> bytes:
    """An SSTable block with a restart point at every entry (so no shared key prefixes)."""
    body, restarts = b"", []
    for key, value in entries:
        restarts.append(len(body))
        body += _varint(0) + _varint(len(key)) + _varint(len(value)) + key + value
    counts = restarts + [len(restarts)]
    return body + struct.pack(f"<{len(counts)}I", *counts)


def _table(entries: list[tuple[bytes, bytes]]) -> bytes:
    out = b""
    handles = []
    for block in (_block(entries), _block([])):
        handles.append(_varint(len(out)) + _varint(len(block)))
        out += block + b"\0" + struct.pack("<I", _masked(block + b"\0"))
    index = _block([(b"\xff", handles[0])])
    footer = handles[1] + _varint(len(out)) + _varint(len(index))
    out += index + b"\0" + struct.pack("<I", _masked(index + b"\0"))
    return out + footer.ljust(40, b"\0") + struct.pack("<Q", 0xDB4775248B80FB57)


def _write_bundle(prefix: Path, tensors: dict[str, tuple[int, int, np.ndarray]]) -> None:
    shards = [b"", b""]
    entries = [(b"", _field(1, len(shards)) + _field(3, _field(1, 1)))]
    for name, (dtype, shard, array) in sorted(tensors.items()):
        raw = array.tobytes()
        dims = b"".join(_field(2, _field(1, n)) for n in array.shape)
        entry = _field(1, dtype) + _field(2, dims) + _field(3, shard)
        entry += _field(4, len(shards[shard])) + _field(5, len(raw))
        entry += _varint(6 << 3 | 5) + struct.pack("<I", _masked(raw))
        entries.append((name.encode(), entry))
        shards[shard] += raw
    Path(f"{prefix}.index").write_bytes(_table(entries))
    for i, data in enumerate(shards):
        Path(f"{prefix}.data-{i:05d}-of-{len(shards):05d}").write_bytes(data)


def _first_block_size(index: bytes) -> int:
    """Size of the index file's first data block. TF writes the data blocks from byte 0, then
    the metaindex block, whose offset opens the footer; the fixture has one data block."""
    metaindex_offset = _read_varints(index[-48:], 1)[0]
    return metaindex_offset - 5  # less the block trailer


def _read_varints(buf: bytes, count: int) -> list[int]:
    values, pos = [], 0
    for _ in range(count):
        value, shift = 0, 0
        while True:
            byte = buf[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        values.append(value)
    return values
