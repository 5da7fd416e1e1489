"""``bertforge convert`` keeps every head a transformers checkpoint has (masked-LM only,
sequence and token classification) and a sentence-transformers model's pooling files:
all-MiniLM-L6-v2 given each head by transformers, converted, loaded back by transformers,
outputs compared on real SST-2 sentences."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from _helpers import need_data

from bertforge.cli.main import main

transformers = pytest.importorskip("transformers")


def _sst2(n: int = 16) -> list[str]:
    lines = need_data("glue", "SST-2", "dev.tsv").read_text(encoding="utf-8").splitlines()
    return [line.split("\t")[0] for line in lines[1:n + 1]]


def _with_head(cls_name: str, minilm: Path, out: Path, **kwargs: object) -> Path:
    """MiniLM loaded into transformers' ``cls_name`` (its new head seeded), saved to ``out``."""
    torch.manual_seed(0)
    model = getattr(transformers, cls_name).from_pretrained(str(minilm), **kwargs)
    with torch.no_grad():  # a head far from its init, so a dropped or re-drawn head shows
        for name, param in model.named_parameters():
            if not name.startswith("bert."):
                param.normal_(0.0, 0.5)
    model.save_pretrained(str(out))
    transformers.AutoTokenizer.from_pretrained(str(minilm)).save_pretrained(str(out))
    return out


def _outputs(cls_name: str, folder: Path, texts: list[str]) -> torch.Tensor:
    model = getattr(transformers, cls_name).from_pretrained(str(folder)).eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    batch = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits


@pytest.mark.parametrize(("cls_name", "kwargs"), [
    ("BertForMaskedLM", {}),
    ("BertForSequenceClassification",
     {"num_labels": 2, "id2label": {0: "negative", 1: "positive"},
      "label2id": {"negative": 0, "positive": 1}}),
    ("BertForTokenClassification", {"num_labels": 5}),
])
def test_convert_keeps_the_head(cls_name: str, kwargs: dict, minilm_dir: Path,
                                tmp_path: Path) -> None:
    texts = _sst2()
    source = _with_head(cls_name, minilm_dir, tmp_path / "src", **kwargs)
    target = tmp_path / "converted"
    assert main(["convert", "--from", str(source), "--to", str(target)]) == 0
    config = transformers.AutoConfig.from_pretrained(str(target))
    assert config.architectures == [cls_name]
    torch.testing.assert_close(_outputs(cls_name, target, texts),
                               _outputs(cls_name, source, texts), rtol=0, atol=1e-5)


def test_convert_keeps_sentence_transformers_pooling(minilm_dir: Path, tmp_path: Path) -> None:
    """The converted MiniLM embeds as the original: mean pooling, normalised, 256 tokens."""
    from bertforge.inference import pipeline

    texts = _sst2(32) + [" ".join(_sst2(64))]  # the last one is longer than 256 tokens
    target = tmp_path / "converted"
    assert main(["convert", "--from", str(minilm_dir), "--to", str(target)]) == 0
    with pytest.warns(UserWarning, match="truncated"):
        want = pipeline("embed", model=minilm_dir)(texts)
    with pytest.warns(UserWarning, match="truncated"):
        got = pipeline("embed", model=target)(texts)
    np.testing.assert_allclose(np.linalg.norm(want, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_convert_names_tensors_it_cannot_place(minilm_dir: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A classifier head whose config.json names no task model is reported, not dropped
    in silence."""
    import json

    source = _with_head("BertForSequenceClassification", minilm_dir, tmp_path / "src",
                        num_labels=2)
    config = json.loads((source / "config.json").read_text())
    config["architectures"] = ["BertModel"]
    (source / "config.json").write_text(json.dumps(config))
    assert main(["convert", "--from", str(source), "--to", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "head.classifier.weight" in err and "not written" in err
