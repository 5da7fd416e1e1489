"""Tokenizer behaviour beyond parity: save/load round trips, tokenizer.json, fuzzing."""

from __future__ import annotations

import pytest
from _helpers import need_data
from hypothesis import given, settings
from hypothesis import strategies as st

from bertforge.tokenization import BertTokenizer, TokenizerError, load_tokenizer, read_vocab


@pytest.fixture(scope="module")
def uncased() -> BertTokenizer:
    return load_tokenizer(need_data("vocab", "bert_uncased_en_vocab.txt"))


def test_save_and_reload_both_formats(tmp_path, uncased):
    uncased.save(tmp_path)
    from_json = load_tokenizer(tmp_path)  # tokenizer.json wins
    from_vocab = load_tokenizer(tmp_path / "vocab.txt")
    text = "Héllo, WORLD — naïve tokenizers aren't 100% fun!"
    assert from_json.encode(text).ids == from_vocab.encode(text).ids == uncased.encode(text).ids
    assert from_json.fingerprint() == uncased.fingerprint()
    assert read_vocab(tmp_path / "vocab.txt")[:5] == ["[PAD]", "[unused0]", "[unused1]",
                                                     "[unused2]", "[unused3]"]


def test_lowercase_override_and_config(tmp_path):
    vocab = need_data("vocab", "bert_cased_en_vocab.txt")
    (tmp_path / "vocab.txt").write_bytes(vocab.read_bytes())
    (tmp_path / "tokenizer_config.json").write_text('{"do_lower_case": true}')
    assert load_tokenizer(tmp_path).lowercase is True
    assert load_tokenizer(tmp_path, lowercase=False).tokenize("Paris") == ["Paris"]


def test_transformers_tokenizer_json_loads(tmp_path, minilm_dir):
    tok = load_tokenizer(minilm_dir)  # a tokenizer.json written by transformers
    assert tok.lowercase and tok.encode("Hello world").tokens == ["[CLS]", "hello", "world",
                                                                  "[SEP]"]


def test_long_words_become_unk(uncased):
    assert uncased.tokenize("a" * 201) == ["[UNK]"]  # Google's 200-character limit
    assert uncased.tokenize("ab" * 100)[0] != "[UNK]"


def test_clean_text_rules(uncased):
    assert uncased.tokenize("a\x00b\ufffdc\u200b d") == uncased.tokenize("abc d")
    assert uncased.tokenize("tab\tnew\nline") == ["tab", "new", "line"]


def test_missing_special_tokens_are_clear_errors(tmp_path):
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\n")
    tok = load_tokenizer(tmp_path)
    with pytest.raises(TokenizerError, match=r"vocab\.txt: the vocabulary has no \[MASK\]"):
        _ = tok.mask_id


def test_only_second_that_cannot_fit_is_refused(uncased):
    with pytest.raises(TokenizerError, match="only_second"):
        uncased.encode("one two three four five six", "x y", max_length=8,
                       truncation="only_second")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200), st.text(max_size=60))
def test_fuzz_any_unicode(text, pair):
    tok = _fuzz_tok()
    enc = tok.encode(text, pair or None, max_length=64)
    assert len(enc) <= 64
    assert enc.tokens[0] == "[CLS]" and enc.tokens[-1] == "[SEP]"
    last = {0: 0, 1: 0}
    for (start, end), seq in zip(enc.offsets, enc.sequence_ids, strict=True):
        if seq is None:
            continue
        source = text if seq == 0 else pair
        assert 0 <= start <= end <= len(source)
        assert start >= last[seq]  # ordered within a segment
        last[seq] = start


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["the", "cat", "sat", "on", "mat", "running", "quickly",
                                 ",", ".", "unbelievable", "42"]), max_size=30))
def test_fuzz_in_vocabulary_text_decodes_stably(words):
    tok = _fuzz_tok()
    text = " ".join(words)
    ids = tok.encode(text).ids
    decoded = tok.decode(ids)
    assert tok.encode(decoded).ids == ids


_CACHE: dict[str, BertTokenizer] = {}


def _fuzz_tok() -> BertTokenizer:
    if "tok" not in _CACHE:
        _CACHE["tok"] = load_tokenizer(need_data("vocab", "bert_uncased_en_vocab.txt"))
    return _CACHE["tok"]


def test_training_twice_gives_the_same_ids(tmp_path):
    """The same corpus, the same vocabulary to the last id: tokenizers' trainer alone
    numbered the ## characters in hash order (tens of ids moved between trainings of this
    corpus, and merges tied on counts could move with them)."""
    from bertforge.tokenization import train_wordpiece

    books = sorted(need_data("corpus-en-books", "Austen_Jane").glob("*.txt"))[:2]
    runs = [train_wordpiece(books, 2000, show_progress=False) for _ in range(3)]
    vocabs = [r.convert_ids_to_tokens(range(r.vocab_size)) for r in runs]
    assert vocabs[0] == vocabs[1] == vocabs[2]
    vocab = vocabs[0]
    assert len(vocab) == 2000 and vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    singles = [t for t in vocab if len(t) == 1]
    continuing = [t for t in vocab if t.startswith("##") and len(t) == 3]
    first_merge = 5 + len(singles) + len(continuing)
    assert vocab[5:first_merge] == sorted(singles) + sorted(continuing)
    assert len(continuing) > 20 and all(len(t) > 1 for t in vocab[first_merge:])
    text = "It is a truth universally acknowledged, that a single man in possession"
    assert runs[0].encode(text).ids == runs[1].encode(text).ids
