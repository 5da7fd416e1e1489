"""``bertforge predict`` on real data with all-MiniLM-L6-v2 given task heads by transformers:
a checkpoint without the task's head is refused in one line (not a traceback, not a
random head), a config without id2label still predicts, long inputs show progress, and
the predictions are transformers' own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _helpers import need_data

from bertforge.cli.main import main

transformers = pytest.importorskip("transformers")


def _sst2_file(tmp_path: Path, n: int = 40) -> Path:
    lines = need_data("glue", "SST-2", "dev.tsv").read_text(encoding="utf-8").splitlines()
    path = tmp_path / "sst2.tsv"
    path.write_text("\n".join(lines[:n + 1]) + "\n", encoding="utf-8")
    return path


def _with_head(cls_name: str, minilm: Path, out: Path, **kwargs: object) -> Path:
    torch.manual_seed(0)
    model = getattr(transformers, cls_name).from_pretrained(str(minilm), **kwargs)
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 0.5)
    model.save_pretrained(str(out))
    transformers.AutoTokenizer.from_pretrained(str(minilm)).save_pretrained(str(out))
    return out


@pytest.mark.parametrize("task", ["classify", "ner"])
def test_a_model_without_the_task_head_is_refused(task: str, minilm_dir: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    data = (["--input", str(_sst2_file(tmp_path)), "--text-column", "sentence"]
            if task == "classify" else
            ["--input", str(need_data("conll2003", "valid.txt"))])
    code = main(["predict", task, "--model", str(minilm_dir), "--out", str(tmp_path / "o"),
                 *data])
    err = capsys.readouterr().err
    assert code == 2
    assert "not a fine-tuned" in err and "head.classifier.weight" in err
    assert not (tmp_path / "o").exists()  # the failed run left no empty --out behind


def test_classifier_without_id2label_predicts_as_transformers(
        minilm_dir: Path, tmp_path: Path) -> None:
    model_dir = _with_head("BertForSequenceClassification", minilm_dir, tmp_path / "clf",
                           num_labels=2)
    config = json.loads((model_dir / "config.json").read_text())
    for key in ("id2label", "label2id"):  # two labels: the count when config.json has none
        config.pop(key, None)
    (model_dir / "config.json").write_text(json.dumps(config))
    data = _sst2_file(tmp_path)
    assert main(["predict", "classify", "--model", str(model_dir), "--input", str(data),
                 "--text-column", "sentence", "--out", str(tmp_path / "o")]) == 0
    got = [json.loads(line) for line in
           (tmp_path / "o" / "predictions.jsonl").read_text().splitlines()]
    texts = [line.split("\t")[0] for line in data.read_text().splitlines()[1:]]
    ref = transformers.BertForSequenceClassification.from_pretrained(str(model_dir)).eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    with torch.no_grad():
        probs = ref(**tok(texts, padding=True, return_tensors="pt")).logits.softmax(-1)
    assert len(got) == len(texts)
    for row, p in zip(got, probs, strict=True):
        assert row["prediction"] == f"LABEL_{int(p.argmax())}"
        ours = torch.tensor([row["probabilities"][f"LABEL_{k}"] for k in range(2)])
        torch.testing.assert_close(ours, p, rtol=0, atol=1e-5)


def test_ner_shows_progress_and_tags_as_transformers(minilm_dir: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    labels = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
    model_dir = _with_head("BertForTokenClassification", minilm_dir, tmp_path / "ner",
                           num_labels=len(labels), id2label=dict(enumerate(labels)),
                           label2id={name: i for i, name in enumerate(labels)})
    blocks = need_data("conll2003", "valid.txt").read_text(encoding="utf-8").split("\n\n")
    sentences = [[line.split()[0] for line in b.splitlines() if line.strip()]
                 for b in blocks if b.strip() and not b.startswith("-DOCSTART-")][:520]
    conll = tmp_path / "valid.txt"
    conll.write_text("\n\n".join("\n".join(f"{w} X X O" for w in s) for s in sentences)
                     + "\n", encoding="utf-8")
    assert main(["predict", "ner", "--model", str(model_dir), "--input", str(conll),
                 "--out", str(tmp_path / "o")]) == 0
    assert "predict ner" in capsys.readouterr().err  # the progress bar (>= 512 inputs)
    got = [[line.split()[1] for line in b.splitlines()] for b in
           (tmp_path / "o" / "predictions.conll").read_text().split("\n\n") if b.strip()]
    assert len(got) == len(sentences)
    ref = transformers.BertForTokenClassification.from_pretrained(str(model_dir)).eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    for words, tags in list(zip(sentences, got, strict=True))[:60]:
        enc = tok(words, is_split_into_words=True, return_tensors="pt")
        with torch.no_grad():
            ids = ref(**enc).logits[0].argmax(-1).tolist()
        first = {}
        for pos, word in enumerate(enc.word_ids()):
            if word is not None and word not in first:
                first[word] = labels[ids[pos]]
        assert tags == [first[i] for i in range(len(words))]
