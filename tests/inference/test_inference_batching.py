"""Length-sorted batching, input reading and truncation bookkeeping."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bertforge.inference import InferenceError, pipeline
from bertforge.inference.batching import encode_inputs, sorted_batches
from bertforge.inference.common import read_lines, split_pairs


@given(st.lists(st.integers(1, 512), max_size=200), st.integers(1, 40),
       st.one_of(st.none(), st.integers(512, 4096)))
def test_sorted_batches_cover_every_input_once(lengths: list[int], size: int,
                                               max_tokens: int | None) -> None:
    batches = sorted_batches(lengths, size, max_tokens)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert 1 <= len(batch) <= size
        widths = [lengths[i] for i in batch]
        assert widths == sorted(widths, reverse=True)
        if max_tokens is not None and len(batch) > 1:
            assert len(batch) * widths[0] <= max_tokens
    firsts = [lengths[b[0]] for b in batches]
    assert firsts == sorted(firsts, reverse=True)


def test_read_lines(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_bytes(b"\xef\xbb\xbffirst\r\n\nthird\x0bstill third\n")
    assert read_lines(path) == ["first", "", "third\x0bstill third"]
    path.write_bytes(b"ok\n\xc3(\n")
    with pytest.raises(InferenceError, match=r"in.txt:2:1: not valid UTF-8 \(byte 0xc3\)"):
        read_lines(path)
    with pytest.raises(FileNotFoundError, match="input file not found"):
        read_lines(tmp_path / "missing.txt")


def test_split_pairs() -> None:
    assert split_pairs(["a", "b"]) == (["a", "b"], None)
    assert split_pairs(["a ||| b", "c"]) == (["a", "c"], ["b", None])


def test_encode_inputs_reports_truncation(tiny_mlm_dir: Path) -> None:
    tok = pipeline("fill-mask", model=tiny_mlm_dir).tokenizer
    texts = ["the dog", "the dog and the cat ate the food", "a", "one two three four"]
    pairs = ["ate", "here", None, "five six seven eight"]
    encodings, truncated = encode_inputs(tok, texts, pairs, max_length=8)
    assert truncated == [1, 3]
    assert [len(e) for e in encodings] == [6, 8, 3, 8]
    assert encodings[2].tokens == ["[CLS]", "a", "[SEP]"]
    assert encodings[0].type_ids == [0, 0, 0, 0, 1, 1]
