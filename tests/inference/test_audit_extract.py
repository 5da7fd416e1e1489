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


def test_only_inputs_empty_in_both_segments_are_called_empty(minilm_dir: Path,
                                                            tmp_path: Path) -> None:
    """`` ||| B`` is a pair with an empty first segment (``[CLS] [SEP] b [SEP]``, as
    transformers encodes it), not an empty input; a blank line is one."""
    import warnings

    from bertforge.inference.extract import FeatureExtractor

    words = _book_words(6)
    fx = FeatureExtractor.from_pretrained(str(minilm_dir), device="cpu")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        out = list(fx.extract([f" ||| {' '.join(words)}", " ".join(words), "  "], layers="-1"))
    assert out[0].tokens[:2] == ["[CLS]", "[SEP]"] and out[0].tokens[-1] == "[SEP]"
    empty = [str(w.message) for w in seen if "empty" in str(w.message)]
    assert len(empty) == 1 and "1 empty input(s) (numbers 3," in empty[0], empty


@pytest.mark.parametrize("command", ["embed", "extract"])
def test_a_directory_as_input_is_named_as_one(command: str, minilm_dir: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / ("v.npy" if command == "embed" else "f.jsonl")
    assert main([command, "--model", str(minilm_dir), "--input", str(tmp_path),
                 "--out", str(out)]) == 2
    assert f"{tmp_path}: is a directory; give a text file" in capsys.readouterr().err
