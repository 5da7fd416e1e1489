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
