"""ONNX export: dynamic axes, onnxruntime equal to PyTorch within 1e-4 (MiniLM and a tiny
sequence classifier). Skipped, saying why, without the ``onnx`` extra."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bertforge.cli.main import main

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (the onnx extra)")
pytest.importorskip("onnxscript", reason="onnxscript is not installed (torch's ONNX exporter)")


def _feed(tokenizer: object, texts: list[str]) -> dict[str, np.ndarray]:
    batch = tokenizer.encode_batch(texts)
    return {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask,
            "token_type_ids": batch.token_type_ids}


def test_minilm_export_matches_torch(minilm_dir: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture) -> None:
    from bertforge.model import BertModel
    from bertforge.tokenization import load_tokenizer

    out = tmp_path / "minilm.onnx"
    assert main(["export", "--model", str(minilm_dir), "--out", str(out)]) == 0
    assert "onnxruntime matches PyTorch within" in capsys.readouterr().out
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    model = BertModel.from_pretrained(str(minilm_dir))
    tok = load_tokenizer(minilm_dir)
    for texts in (["One."], ["A man is eating food.", "A much longer sentence about a man who "
                                                      "is eating a piece of bread.", "Hi"]):
        feed = _feed(tok, texts)
        hidden, pooled = session.run(["last_hidden_state", "pooler_output"], feed)
        with torch.no_grad():
            want = model(*(torch.from_numpy(feed[k]) for k in
                           ("input_ids", "token_type_ids", "attention_mask")))
        np.testing.assert_allclose(hidden, want.last_hidden_state.numpy(), atol=1e-4)
        np.testing.assert_allclose(pooled, want.pooler_output.numpy(), atol=1e-4)


def test_classifier_export(tiny_classifier_dir: Path, tmp_path: Path) -> None:
    from bertforge.inference.onnx_export import export_onnx

    report = export_onnx(tiny_classifier_dir, tmp_path / "clf.onnx")
    assert report.architecture == "BertForSequenceClassification"
    assert report.outputs == ("logits",) and report.max_abs_diff < 1e-4


def test_bad_output_name(minilm_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["export", "--model", str(minilm_dir), "--out", str(tmp_path / "m.bin")]) == 2
    assert "must end in .onnx" in capsys.readouterr().err


def test_convert_to_onnx_spelling(tiny_classifier_dir: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture) -> None:
    """The issue's spelling, ``bertforge convert --to FILE.onnx``, runs the same export."""
    assert main(["convert", "--from", str(tiny_classifier_dir), "--to",
                 str(tmp_path / "clf.onnx")]) == 0
    assert "BertForSequenceClassification" in capsys.readouterr().out
    assert (tmp_path / "clf.onnx").stat().st_size > 0
