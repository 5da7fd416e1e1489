"""Feature extraction: Google's JSONL format, values against transformers' hidden states,
sentence pairs, layer combination, the binary format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bertforge.cli.main import main
from bertforge.inference import InferenceError
from bertforge.inference.extract import FeatureExtractor, parse_layers, read_binary

LINES = ["A man is eating food.", "Hello world ||| Goodbye, cruel world.",
         "The quick brown fox jumps over the lazy dog."]


def _theirs(minilm_dir: Path) -> list[tuple[list[str], tuple[torch.Tensor, ...]]]:
    transformers = pytest.importorskip("transformers")
    model = transformers.AutoModel.from_pretrained(str(minilm_dir)).eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(minilm_dir))
    out = []
    for line in LINES:
        a, _, b = line.partition(" ||| ")
        enc = tok(a, b or None, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**enc, output_hidden_states=True).hidden_states
        out.append((tok.convert_ids_to_tokens(enc["input_ids"][0]), hidden))
    return out


def test_google_jsonl_matches_transformers(minilm_dir: Path, tmp_path: Path) -> None:
    src, out = tmp_path / "in.txt", tmp_path / "features.jsonl"
    src.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    assert main(["extract", "--model", str(minilm_dir), "--input", str(src), "--out", str(out),
                 "--layers", "-1,-2,0", "--batch-size", "2"]) == 0
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["linex_index"] for r in records] == [0, 1, 2]
    for record, (tokens, hidden) in zip(records, _theirs(minilm_dir), strict=True):
        assert [f["token"] for f in record["features"]] == tokens
        for t, feature in enumerate(record["features"]):
            assert [layer["index"] for layer in feature["layers"]] == [-1, -2, 0]
            for layer in feature["layers"]:
                want = hidden[layer["index"] if layer["index"] < 0 else layer["index"] + 1]
                np.testing.assert_allclose(layer["values"], want[0, t].numpy(), atol=2e-5)


def test_combine_and_binary_format(minilm_dir: Path, tmp_path: Path) -> None:
    fx = FeatureExtractor.from_pretrained(minilm_dir)
    apart = [f.values for f in fx.extract(LINES, layers="-1,-4")]  # [T, 2, H] each
    for combine, reduce in (("sum", lambda v: v.sum(1)), ("mean", lambda v: v.mean(1)),
                            ("concat", lambda v: v.reshape(len(v), -1))):
        got = [f.values for f in fx.extract(LINES, layers="-1,-4", combine=combine)]
        for g, a in zip(got, apart, strict=True):
            np.testing.assert_allclose(g, reduce(a), atol=1e-5)
    src, out = tmp_path / "in.txt", tmp_path / "features.npy"
    src.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    assert main(["extract", "--model", str(minilm_dir), "--input", str(src), "--out", str(out),
                 "--layers=-1,-4"]) == 0
    array, index = read_binary(out)
    assert array.shape == (sum(len(a) for a in apart), 2, 384)
    assert index["layers"] == [-1, -4] and len(index["lines"]) == len(LINES)
    for line, a in zip(index["lines"], apart, strict=True):
        np.testing.assert_allclose(array[line["start"]:line["end"]], a, atol=1e-6)
    assert index["lines"][1]["tokens"][:4] == ["[CLS]", "hello", "world", "[SEP]"]


def test_layer_errors(minilm_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert parse_layers("all", 6) == [-1, -2, -3, -4, -5, -6]
    with pytest.raises(InferenceError, match="layer -7 does not exist in a 6-layer model"):
        parse_layers("-1,-7", 6)
    with pytest.raises(InferenceError, match="comma-separated integers"):
        parse_layers("last", 6)
    src = tmp_path / "in.txt"
    src.write_text("x\n", encoding="utf-8")
    assert main(["extract", "--model", str(minilm_dir), "--input", str(src),
                 "--out", str(tmp_path / "f.txt")]) == 2
    assert "unknown format '.txt'" in capsys.readouterr().err
