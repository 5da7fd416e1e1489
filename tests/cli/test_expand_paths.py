"""Which files a directory given to ``tokenizer train`` / ``data create`` contributes."""

from __future__ import annotations

from pathlib import Path

import pytest
from _helpers import need_data

from bertforge.cli.tokenizer import expand_paths


def test_a_corpus_folder_gives_its_text_files_not_its_index(capsys):
    books = need_data("corpus-en-books")
    files = expand_paths([str(books)])
    assert files == sorted(books.rglob("*.txt"))  # index.tsv beside them is metadata
    assert "left out 1 other file(s): index.tsv" in capsys.readouterr().err


def test_a_folder_without_txt_files_gives_every_visible_file(tmp_path: Path, capsys):
    (tmp_path / "wiki.train.tokens").write_text("a b c\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "part-0001").write_text("d e\n")
    (tmp_path / ".DS_Store").write_bytes(b"\x00\x01")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ref\n")
    assert expand_paths([str(tmp_path)]) == [tmp_path / "sub" / "part-0001",
                                             tmp_path / "wiki.train.tokens"]
    assert capsys.readouterr().err == ""
    # a file named on the command line is taken as given, whatever its name
    assert expand_paths([str(tmp_path / ".DS_Store")]) == [tmp_path / ".DS_Store"]


def test_an_empty_folder_is_an_error(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no .visible. files"):
        expand_paths([str(tmp_path / "empty")])


def test_data_create_reads_a_jsonl_folders_jsonl_files(tmp_path: Path, capsys):
    import json

    from bertforge.cli.main import main
    from bertforge.pretraining.shards import ShardDataset

    books = sorted(need_data("corpus-en-books").rglob("*.txt"))[:2]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, book in enumerate(books):
        text = book.read_text(encoding="utf-8")[:20000]
        (corpus / f"part-{i}.jsonl").write_text(json.dumps({"text": text}) + "\n")
    (corpus / "README.txt").write_text("Two books, one JSON object each.\n")
    code = main(["data", "create", "--input", str(corpus), "--input-format", "jsonl",
                 "--tokenizer", str(need_data("vocab", "bert_uncased_en_vocab.txt")),
                 "--out", str(tmp_path / "o"), "--max-seq-length", "64", "--quiet"])
    assert code == 0
    assert "left out 1 other file(s): README.txt" in capsys.readouterr().err
    assert ShardDataset(tmp_path / "o").meta["counts"]["documents"] == 2
