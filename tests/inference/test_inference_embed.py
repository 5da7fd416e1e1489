"""Sentence embeddings: MiniLM's published similarity through the CLI, pooling against
transformers, input order under length-sorted batching, bad input."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from bertforge.cli.main import main
from bertforge.inference import InferenceError, TruncationWarning, pipeline
from bertforge.inference.embed import Embedder

PAIR = ["A man is eating food.", "A man is eating a piece of bread."]
MIXED = ["Short.", "A considerably longer sentence, with several clauses, that pads others.",
         "", "Two words", "The quick brown fox jumps over the lazy dog near the river bank."]


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_minilm_published_similarity_through_cli(minilm_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "pair.txt"
    src.write_text("\n".join(PAIR) + "\n", encoding="utf-8")
    out = tmp_path / "emb.npy"
    assert main(["embed", "--model", str(minilm_dir), "--input", str(src), "--out", str(out),
                 "--pooling", "mean", "--normalize", "--device", "cpu"]) == 0
    vectors = np.load(out)
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert _cosine(vectors[0], vectors[1]) == pytest.approx(0.755, abs=0.002)


def test_formats_agree(minilm_dir: Path, tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    src = tmp_path / "in.txt"
    src.write_text("\n".join(PAIR) + "\n", encoding="utf-8")
    outs = {}
    for suffix in (".npy", ".safetensors", ".jsonl"):
        path = tmp_path / f"e{suffix}"
        assert main(["embed", "--model", str(minilm_dir), "--input", str(src),
                     "--out", str(path)]) == 0
        outs[suffix] = path
    npy = np.load(outs[".npy"])
    np.testing.assert_array_equal(load_file(str(outs[".safetensors"]))["embeddings"], npy)
    rows = [json.loads(line) for line in outs[".jsonl"].read_text().splitlines()]
    assert [r["text"] for r in rows] == PAIR
    np.testing.assert_allclose(np.array([r["embedding"] for r in rows]), npy, rtol=1e-6)


@pytest.mark.parametrize("pooling", ["cls", "mean", "max"])
def test_pooling_matches_transformers(minilm_dir: Path, pooling: str) -> None:
    transformers = pytest.importorskip("transformers")
    model = transformers.AutoModel.from_pretrained(str(minilm_dir)).eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(minilm_dir))
    texts = [t for t in MIXED if t]
    batch = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    want = {"cls": hidden[:, 0], "mean": (hidden * mask).sum(1) / mask.sum(1),
            "max": hidden.masked_fill(mask == 0, -1e9).amax(1)}[pooling]
    got = pipeline("embed", model=minilm_dir, pooling=pooling, normalize=False)(texts)
    np.testing.assert_allclose(got, want.numpy(), atol=1e-4)


def test_sorted_batches_keep_input_order(minilm_dir: Path) -> None:
    emb = Embedder.from_pretrained(minilm_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batched = emb.encode(MIXED, batch_size=2)
        one_by_one = np.stack([emb.encode([t], batch_size=1)[0] for t in MIXED])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    assert any("1 empty input" in str(w.message) for w in caught)


def test_truncation_warns(minilm_dir: Path) -> None:
    emb = Embedder.from_pretrained(minilm_dir, max_length=8)
    with pytest.warns(TruncationWarning, match="1 input.* longer than 8 tokens"):
        vectors = emb(["short one", "this sentence has far more than eight word pieces in it"])
    assert vectors.shape == (2, 384)


def test_bad_input(minilm_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine line\nbroken \xff byte\n")
    assert main(["embed", "--model", str(minilm_dir), "--input", str(bad),
                 "--out", str(tmp_path / "x.npy")]) == 2
    assert f"{bad}:2:8: not valid UTF-8" in capsys.readouterr().err
    assert main(["embed", "--model", str(minilm_dir), "--input", str(bad),
                 "--out", str(tmp_path / "x.csv")]) == 2
    assert "unknown format '.csv'" in capsys.readouterr().err
    with pytest.raises(InferenceError, match="max-seq-length 4096"):
        Embedder.from_pretrained(minilm_dir, max_length=4096)
