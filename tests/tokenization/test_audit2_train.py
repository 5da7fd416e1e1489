"""`tokenizer train` on Chinese: every character of the corpus has an id when the
vocabulary has room. tokenizers' default alphabet limit (1,000 characters) made 787 of
the 1,787 characters of three Hongloumeng chapters [UNK] (3.8% of the tokens) and left a
3,000-token vocabulary at 1,005 tokens."""

from __future__ import annotations

import pytest
from _helpers import need_data

from bertforge.cli.main import main
from bertforge.tokenization import load_tokenizer

transformers = pytest.importorskip("transformers")


def test_chinese_vocabulary_keeps_every_character(tmp_path, capsys):
    chapters = [need_data("corpus-zh-classics", f"honglou-00{i}.txt") for i in (1, 2, 3)]
    corpus = tmp_path / "zh.txt"
    corpus.write_text("".join(p.read_text(encoding="utf-8") for p in chapters),
                      encoding="utf-8")
    out = tmp_path / "vocab"
    assert main(["tokenizer", "train", "--corpus", str(corpus), "--vocab-size", "3000",
                 "--cased", "--out", str(out)]) == 0
    ref = transformers.BertTokenizer(str(out / "vocab.txt"), do_lower_case=False)
    ours = load_tokenizer(out)
    lines = [ln for ln in corpus.read_text(encoding="utf-8").splitlines() if ln.strip()]
    n_tokens = n_unk = 0
    for line in lines:
        ids = ref.encode(line)
        assert ours.encode(line).ids == ids
        n_tokens += len(ids)
        n_unk += ids.count(ref.unk_token_id)
    hanzi = {ch for ln in lines for ch in ln if "\u4e00" <= ch <= "\u9fff"}
    assert len(hanzi) > 1000  # more than tokenizers' default alphabet limit
    assert n_unk == 0, f"{n_unk} of {n_tokens} tokens are [UNK]"
