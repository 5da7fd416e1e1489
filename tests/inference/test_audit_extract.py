"""``bertforge extract`` checks --out before the model loads, naming what is missing."""

from __future__ import annotations

from pathlib import Path

import pytest
from _helpers import need_data

from bertforge.cli.main import main


def _book_words(n: int) -> list[str]:
    books = sorted(need_data("corpus-en-books").glob("*/*.txt"))
    return books[0].read_text(encoding="utf-8").split()[2000:2000 + n]


def test_extract_out_in_a_missing_directory_is_named(minilm_dir: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """The one-line error names --out and the missing directory."""
    path = tmp_path / "in.txt"
    path.write_text(" ".join(_book_words(20)) + "\n", encoding="utf-8")
    out = tmp_path / "missing" / "features.jsonl"
    assert main(["extract", "--model", str(minilm_dir), "--input", str(path),
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--out {out}: directory {out.parent} does not exist" in err, err
