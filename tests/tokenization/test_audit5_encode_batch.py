"""Audit 5: ``encode_batch`` / ``encode_each`` inputs as Python users pass them."""

from __future__ import annotations

import pytest
from _helpers import need_data

from bertforge.tokenization import load_tokenizer

TEXTS = ["The quick brown fox jumps over the lazy dog near the river bank.", "Short one."]
PAIRS = ["A second segment that is rather long as well, to be cut.", "Tiny."]


@pytest.fixture(scope="module")
def tokenizers():
    transformers = pytest.importorskip("transformers")
    vocab = need_data("vocab", "bert_uncased_en_vocab.txt")
    return load_tokenizer(vocab), transformers.BertTokenizerFast(str(vocab))


def test_a_single_string_is_one_input(tokenizers):
    """It was split into one input per character."""
    ours, theirs = tokenizers
    batch = ours.encode_batch(TEXTS[0])
    assert batch.input_ids.tolist() == [theirs(TEXTS[0])["input_ids"]]
    batch = ours.encode_batch(TEXTS[0], PAIRS[0])
    assert batch.input_ids.tolist() == [theirs(TEXTS[0], PAIRS[0])["input_ids"]]


def test_generators_work_when_inputs_are_truncated(tokenizers):
    """A generator raised TypeError ('not subscriptable') only when an input was cut.
    (``only_second``: under ``longest_first`` ties break as Google's, not as transformers'.)"""
    ours, theirs = tokenizers
    batch = ours.encode_batch((t for t in TEXTS), (p for p in PAIRS), max_length=24,
                              truncation="only_second")
    expected = theirs(TEXTS, PAIRS, truncation="only_second", max_length=24,
                      padding=True)["input_ids"]
    assert batch.input_ids.tolist() == expected


def test_unknown_truncation_and_padding_are_errors(tokenizers):
    """They were silently taken as 'only_first' and 'longest'."""
    ours, _ = tokenizers
    with pytest.raises(ValueError, match="truncation 'longest'"):
        ours.encode_batch(TEXTS, max_length=8, truncation="longest")
    with pytest.raises(ValueError, match="padding 'max'"):
        ours.encode_batch(TEXTS, padding="max")
    assert ours.encode_batch(TEXTS, padding=True).input_ids.shape[0] == 2
