"""Fill-mask against transformers' pipeline on the same saved checkpoint; clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bertforge.cli.main import main
from bertforge.inference import InferenceError, pipeline

TEXTS = ["the capital of france is [MASK] .", "a man is [MASK] bread and [MASK] ."]


def test_top_k_matches_transformers_pipeline(tiny_mlm_dir: Path) -> None:
    transformers = pytest.importorskip("transformers")
    theirs = transformers.pipeline("fill-mask", model=str(tiny_mlm_dir), top_k=5,
                                   device="cpu")
    fill = pipeline("fill-mask", model=tiny_mlm_dir)
    ours = fill(TEXTS, top_k=5)
    for text, per_mask in zip(TEXTS, ours, strict=True):
        expected = theirs(text)
        expected = [expected] if isinstance(expected[0], dict) else expected
        assert len(per_mask) == len(expected) == text.count("[MASK]")
        for got, want in zip(per_mask, expected, strict=True):
            assert [p.token_id for p in got] == [w["token"] for w in want]
            assert [p.score for p in got] == pytest.approx([w["score"] for w in want],
                                                           abs=1e-5)
            if text.count("[MASK]") == 1:
                assert [p.sequence for p in got] == [w["sequence"] for w in want]


def test_batching_keeps_input_order(tiny_mlm_dir: Path) -> None:
    fill = pipeline("fill-mask", model=tiny_mlm_dir)
    texts = ["[MASK] .", "the dog and the cat ate the [MASK] in the house .", "hello [MASK]"]
    together = fill(texts, top_k=3, batch_size=2)
    alone = [fill(t, top_k=3)[0] for t in texts]
    for a, b in zip(together, alone, strict=True):
        assert [[p.token_id for p in m] for m in a] == [[p.token_id for p in m] for m in b]
        assert [p.score for m in a for p in m] == pytest.approx(
            [p.score for m in b for p in m], abs=1e-5)


def test_text_without_mask_is_refused(tiny_mlm_dir: Path) -> None:
    fill = pipeline("fill-mask", model=tiny_mlm_dir)
    with pytest.raises(InferenceError, match=r"input 2: no \[MASK\]"):
        fill(["a [MASK] .", "no mask here"])


def test_cli_json_and_line_numbers(tiny_mlm_dir: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture) -> None:
    assert main(["fill-mask", "--model", str(tiny_mlm_dir), "--json", "--top-k", "2",
                 "--device", "cpu", TEXTS[0]]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["text"] == TEXTS[0] and len(record["masks"][0]) == 2
    bad = tmp_path / "in.txt"
    bad.write_text("a [MASK] .\n\nnothing to fill\n", encoding="utf-8")
    assert main(["fill-mask", "--model", str(tiny_mlm_dir), "--input", str(bad)]) == 2
    assert f"{bad}:3: no [MASK]" in capsys.readouterr().err


def test_model_without_mlm_head_says_so(minilm_dir: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    assert main(["fill-mask", "--model", str(minilm_dir), "Paris is the [MASK]."]) == 2
    err = capsys.readouterr().err
    assert "has no masked-LM head" in err and str(minilm_dir) in err
    assert "Traceback" not in err
