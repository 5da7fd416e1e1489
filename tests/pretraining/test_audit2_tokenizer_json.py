"""A tokenizer.json that carries the engine's own truncation and padding (as
all-MiniLM-L6-v2's does: 128 tokens, padded to 128) must not cut the corpus: `data create`
kept 128 ids of each batch of text and filled instances with unrelated frequent words."""

from __future__ import annotations

import json

import pytest
from _helpers import need_data

from bertforge.pretraining import CachedEncoder
from bertforge.tokenization import load_tokenizer


def _book_lines(n: int) -> list[str]:
    book = need_data("corpus-en-books", "Carroll_Lewis", "a-tangled-tale.txt")
    return [line for line in book.read_text(encoding="utf-8").splitlines() if line.strip()][:n]


def test_corpus_encoder_keeps_every_token_of_a_truncating_tokenizer_json(minilm_dir):
    transformers = pytest.importorskip("transformers")
    ref_tok = transformers.AutoTokenizer.from_pretrained(str(minilm_dir))
    lines = _book_lines(2000)
    ids, lengths = CachedEncoder(load_tokenizer(minilm_dir)).encode(lines)
    ref = [ref_tok(line, add_special_tokens=False)["input_ids"] for line in lines]
    assert lengths.tolist() == [len(r) for r in ref]
    assert ids.tolist() == [t for r in ref for t in r]


def test_loaded_tokenizer_has_no_engine_truncation_or_padding(minilm_dir):
    state = json.loads((minilm_dir / "tokenizer.json").read_text(encoding="utf-8"))
    assert state["truncation"] and state["padding"], "the case this test is about"
    tok = load_tokenizer(minilm_dir)
    assert tok.backend.truncation is None and tok.backend.padding is None
    long_text = " ".join(_book_lines(200))
    transformers = pytest.importorskip("transformers")
    ref = transformers.AutoTokenizer.from_pretrained(str(minilm_dir))
    expected = ref(long_text, add_special_tokens=False)["input_ids"]
    assert len(expected) > 128
    got = tok.backend.encode_batch([long_text], add_special_tokens=False)[0].ids
    assert got == expected
