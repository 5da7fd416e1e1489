"""``bertforge fill-mask --input FILE`` names a bad or cut line by FILE:LINE even when blank
lines (which it skips) come before it; real text from the English books corpus, MiniLM's
encoder with a masked-LM head from transformers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _helpers import need_data

from bertforge.cli.main import main


@pytest.fixture
def mlm_dir(minilm_dir: Path, tmp_path: Path) -> Path:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    transformers.BertForMaskedLM.from_pretrained(str(minilm_dir)).save_pretrained(
        str(tmp_path / "mlm"))
    transformers.AutoTokenizer.from_pretrained(str(minilm_dir)).save_pretrained(
        str(tmp_path / "mlm"))
    return tmp_path / "mlm"


def _book_words(n: int) -> list[str]:
    books = sorted(need_data("corpus-en-books").glob("*/*.txt"))
    return books[0].read_text(encoding="utf-8").split()[2000:2000 + n]


def test_errors_and_warnings_name_the_file_line(mlm_dir: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    words = _book_words(700)  # far more than 512 tokens
    short = " ".join(words[:12]) + " [MASK] ."
    late_mask = " ".join(words) + " [MASK] ."
    early_mask = "[MASK] " + " ".join(words)
    path = tmp_path / "in.txt"
    # line 4: the [MASK] is kept, the line cut (a warning); line 6: the [MASK] is cut off
    path.write_text(f"{short}\n\n\n{early_mask}\n\n{late_mask}\n", encoding="utf-8")
    assert main(["fill-mask", "--model", str(mlm_dir), "--input", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:6: its [MASK] lies beyond" in err, err
    path.write_text(f"{short}\n\n\n{early_mask}\n", encoding="utf-8")
    assert main(["fill-mask", "--model", str(mlm_dir), "--input", str(path)]) == 0
    err = capsys.readouterr().err
    assert f"truncated ({path}:4)" in err, err

