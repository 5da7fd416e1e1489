"""The cached encoder gives exactly the tokenizer's ids (real corpora, odd characters)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from conftest import CHINESE, UNCASED, WIKITEXT, ZH, book_files, needs_data
from hypothesis import given, settings
from hypothesis import strategies as st

from bertforge.pretraining import CachedEncoder
from bertforge.tokenization import load_tokenizer

pytestmark = needs_data

ODD = ["a\x0bb c", "x\u00a0y z", "\x00\x01", "  ", "", "[MASK]x [SEP]", "é\u2028ü", "中国\u3000人",
       "naïve CAFÉ", "\ufffd\ufffd", "a" * 300 + " b", "e.g. U.S.A. (1,000)", "\t\r\n",
       "x[SEP]y [SEP][SEP] a[SEP b SEP] [sep] [SEP]", "\x00 \x00 [CLS]"]


def _check(tok, texts: list[str], encoder: CachedEncoder | None = None) -> None:
    encoder = encoder or CachedEncoder(tok)
    ids, lengths = encoder.encode(texts)
    ref = tok.tokenize_ids(texts)
    assert lengths.tolist() == [len(r) for r in ref]
    assert ids.tolist() == [t for r in ref for t in r]


def test_books_equal_tokenizer(uncased):
    lines = []
    for f in book_files(1_000_000):
        lines += f.read_text(encoding="utf-8", errors="replace").splitlines()
    encoder = CachedEncoder(uncased, max_entries=20_000)  # small: the cache empties and refills
    for i in range(0, len(lines), 5000):
        _check(uncased, lines[i:i + 5000], encoder)
    _check(uncased, ODD, encoder)


def test_wikitext_and_chinese_equal_tokenizer(uncased):
    _check(uncased, (WIKITEXT / "valid.txt").read_text(encoding="utf-8").splitlines()[:3000])
    zh = load_tokenizer(CHINESE)
    text = "".join(p.read_text(encoding="utf-8") for p in sorted(ZH.glob("*.txt"))[:3])
    _check(zh, text.splitlines() + ODD)


def test_chinese_is_one_token_per_character():
    zh = load_tokenizer(CHINESE)
    text = (ZH / "honglou-001.txt").read_text(encoding="utf-8")
    hanzi = "".join(ch for ch in text if "\u4e00" <= ch <= "\u9fff")[:5000]
    ids, lengths = CachedEncoder(zh).encode([hanzi])
    assert int(lengths[0]) == len(hanzi)
    tokens = zh.convert_ids_to_tokens(ids.tolist())
    known = [t for t in tokens if t != "[UNK]"]
    assert len(known) > 0.99 * len(tokens) and all(len(t) == 1 for t in known)


_ALPHABET = st.sampled_from(list("ab Zé\u0301,.!-'\"中文\t\n\r\x0b\x0c\x00\x1c\x85\u00a0"
                                 "\u2028\u3000\ufffd##[MASK]xyz0123"))


@lru_cache(maxsize=1)
def _uncased():
    return load_tokenizer(UNCASED)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(_ALPHABET, max_size=40), max_size=8))
def test_random_text_equal_tokenizer(texts):
    _check(_uncased(), texts)


_WORDS = st.sampled_from(["[SEP]", "x[SEP]", "[SEP]y", "[SEP", "the", "\x00", "[MASK]", "Zé,",
                          "\u3000", "中文", "\ufffd", "##", "[UNK]"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(_WORDS, max_size=12).map(" ".join), max_size=6))
def test_random_words_with_separators_equal_tokenizer(texts):
    """The encoder joins new chunks with [SEP] and splits on it: chunks that contain the
    separator, or that tokenise to nothing, must still come out right."""
    _check(_uncased(), texts)


def test_empty_input(uncased):
    ids, lengths = CachedEncoder(uncased).encode([])
    assert ids.size == 0 and lengths.size == 0
    assert np.asarray(CachedEncoder(uncased).encode(["", " "])[1]).tolist() == [0, 0]
