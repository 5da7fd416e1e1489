"""Token ids identical to Hugging Face's BertTokenizer on real text, three vocabularies.

Two references: ``transformers.BertTokenizer`` (Rust-backed in transformers 5) and
``BertTokenizerLegacy``, the pure-Python port of Google's tokenization.py, which is an
independent statement of BERT's rules. Google's limit of 200 characters per word is set
on both references (Hugging Face's default is 100).
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest
from _helpers import VOCABS, need_data

from bertforge.tokenization import TokenizerError, load_tokenizer

transformers = pytest.importorskip("transformers")
from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy  # noqa: E402


def sample_lines(files: list[Path], n: int, seed: int = 0, min_len: int = 20) -> list[str]:
    """``n`` non-trivial lines drawn from across ``files`` with a fixed seed."""
    rng = random.Random(seed)
    pool = []
    for f in files:
        lines = [ln for ln in f.read_text(encoding="utf-8", errors="replace").splitlines()
                 if len(ln.strip()) >= min_len]
        pool.extend(rng.sample(lines, min(len(lines), max(1, n // len(files) + 1))))
    rng.shuffle(pool)
    return pool[:n]


def english_text(n: int) -> list[str]:
    books = sorted(need_data("corpus-en-books").rglob("*.txt"))
    rng = random.Random(1)
    lines = sample_lines(rng.sample(books, 12), n // 2)
    sst = need_data("glue", "SST-2", "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    mrpc = need_data("glue", "MRPC", "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    glue = [row.split("\t")[0] for row in sst] + [row.split("\t")[3] for row in mrpc]
    return lines + glue[: n - len(lines)]


def chinese_text(n: int) -> list[str]:
    chapters = sorted(need_data("corpus-zh-classics").glob("*.txt"))
    return sample_lines(chapters[::10], n, min_len=5)


def references(vocab: Path, lower: bool):
    fast = transformers.BertTokenizer(str(vocab), do_lower_case=lower)
    fast.backend_tokenizer.model.max_input_chars_per_word = 200
    legacy = BertTokenizerLegacy(str(vocab), do_lower_case=lower)
    legacy.wordpiece_tokenizer.max_input_chars_per_word = 200
    return fast, legacy


CASES = [
    ("bert_uncased_en_vocab.txt", True, english_text),
    ("bert_cased_en_vocab.txt", False, english_text),
    ("bert_chinese_vocab.txt", True, chinese_text),
]


@pytest.mark.parametrize("vocab_name,lower,texts", CASES, ids=["uncased", "cased", "chinese"])
def test_ids_match_transformers_on_real_text(vocab_name, lower, texts):
    vocab = need_data("vocab", vocab_name)
    ours = load_tokenizer(vocab)
    assert ours.lowercase is lower  # guessed from the vocabulary itself
    fast, legacy = references(vocab, lower)
    lines = texts(400)
    assert len(lines) >= 300
    batch = ours.encode_batch(lines)
    got = [row[mask == 1].tolist() for row, mask in zip(batch.input_ids, batch.attention_mask,
                                                         strict=True)]
    want = fast(lines)["input_ids"]
    for line, ids, ref in zip(lines, got, want, strict=True):
        assert ids == ref, line
        assert ours.encode(line).ids == ids
    for line, ids in zip(lines[:150], got, strict=False):  # the slow pure-Python reference
        assert ids == legacy(line)["input_ids"], line


@pytest.mark.parametrize("vocab_name,lower,texts", CASES, ids=["uncased", "cased", "chinese"])
def test_pairs_segments_and_truncation_match(vocab_name, lower, texts):
    """Truncation follows Google's _truncate_seq_pair (pop from the longer, from B on a tie),
    as the pure-Python reference does; transformers' Rust path breaks ties the other way."""
    vocab = need_data("vocab", vocab_name)
    ours = load_tokenizer(vocab)
    _, legacy = references(vocab, lower)
    lines = [line[:300] for line in texts(60)]  # the pure-Python reference is slow
    pairs = list(zip(lines[::2], lines[1::2], strict=False))
    for strategy, max_len in itertools.product(["longest_first", "only_second"], [16, 48]):
        for a, b in pairs:
            if strategy == "only_second" and len(ours.tokenize(a)) + 3 >= max_len:
                # cannot fit (transformers' answer to this is erratic: it can loop for
                # minutes on a long Chinese paragraph): ours refuses with a clear error
                with pytest.raises(TokenizerError, match="cannot truncate"):
                    ours.encode(a, b, max_length=max_len, truncation=strategy)
                continue
            ref = legacy(a, b, truncation=strategy, max_length=max_len,
                         return_token_type_ids=True)
            enc = ours.encode(a, b, max_length=max_len, truncation=strategy)
            assert enc.ids == ref["input_ids"], (a, b, strategy)
            assert enc.type_ids == ref["token_type_ids"]


def test_chinese_is_one_token_per_character():
    tok = load_tokenizer(need_data("vocab", "bert_chinese_vocab.txt"))
    text = "话说天下大势，分久必合，合久必分。"
    tokens = tok.tokenize(text)
    assert tokens == list(text)


def test_offsets_point_into_original_text():
    tok = load_tokenizer(need_data("vocab", "bert_uncased_en_vocab.txt"))
    text = "Ünïcödé  naïve\tcafé, don't STOP—北京 42.5%"
    enc = tok.encode(text)
    for token, (start, end), seq in zip(enc.tokens, enc.offsets, enc.sequence_ids, strict=True):
        if seq is None:
            continue
        piece = text[start:end].lower()
        assert 0 <= start < end <= len(text)
        if token != "[UNK]":  # accents are stripped in the token, kept in the text
            import unicodedata
            plain = "".join(c for c in unicodedata.normalize("NFD", piece)
                            if unicodedata.category(c) != "Mn")
            assert plain == token.removeprefix("##"), (token, piece)


def test_batch_padding_and_masks():
    tok = load_tokenizer(VOCABS / "bert_uncased_en_vocab.txt") if VOCABS.exists() else None
    if tok is None:
        pytest.skip("vocabularies absent")
    batch = tok.encode_batch(["short one", "a somewhat longer sentence than the first"],
                             pairs=["x", "y"], max_length=12)
    longest = max(len(e) for e in batch.encodings)
    assert longest <= 12
    assert batch.input_ids.shape == batch.attention_mask.shape == (2, longest)
    assert batch.attention_mask.sum(1).tolist() == [len(e) for e in batch.encodings]
    assert batch.input_ids[0, batch.attention_mask[0] == 0].tolist() == [tok.pad_id] * int(
        (batch.attention_mask[0] == 0).sum())
    fixed = tok.encode_batch(["a"], max_length=10, padding="max_length")
    assert fixed.input_ids.shape == (1, 10)


def test_mask_token_in_text_stays_one_token():
    tok = load_tokenizer(need_data("vocab", "bert_uncased_en_vocab.txt"))
    enc = tok.encode("The capital of France is [MASK].")
    assert "[MASK]" in enc.tokens
    assert enc.ids[enc.tokens.index("[MASK]")] == tok.mask_id == 103


def test_an_empty_second_segment_is_none_as_in_transformers():
    """transformers' tokenizer(a, "") and Google's ``if example.text_b:`` both give
    ``[CLS] a [SEP]`` for an empty second segment (not ``[CLS] a [SEP] [SEP]``); on real
    MRPC pairs, half with the second sentence emptied, with and without truncation."""
    vocab = need_data("vocab", "bert_uncased_en_vocab.txt")
    ours = load_tokenizer(vocab)
    theirs, legacy = references(vocab, True)
    rows = need_data("glue", "MRPC", "dev.tsv").read_text(encoding="utf-8").splitlines()[1:21]
    firsts = [r.split("\t")[3] for r in rows]
    seconds = ["" if i % 2 else r.split("\t")[4] for i, r in enumerate(rows)]  # half empty
    batch = ours.encode_batch(firsts, seconds, max_length=24)
    for a, b, enc in zip(firsts, seconds, batch.encodings, strict=True):
        # truncating a real pair, Google's rule = the pure-Python reference (see above)
        ref = (theirs if b == "" else legacy)(a, b, truncation="longest_first", max_length=24,
                                               return_token_type_ids=True)
        assert enc.ids == ref["input_ids"] and enc.type_ids == ref["token_type_ids"], (a, b)
        assert ours.encode(a, b).ids == theirs(a, b)["input_ids"]
    # (transformers' old pure-Python BertTokenizer alone adds the second [SEP])
    assert legacy("a", "")["input_ids"][-2:] == [102, 102]
