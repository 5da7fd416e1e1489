"""``bertforge finetune / evaluate / predict`` end to end with a tiny random model on small
slices of the real data: the files every run writes, and the task-specific outputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from _helpers import need_data, tiny_config

from bertforge.cli.main import main
from bertforge.model.task_heads import BertForSequenceClassification
from bertforge.tokenization import load_tokenizer

FAST = ["--epochs", "1", "--batch-size", "8", "--quiet", "--lr", "1e-3"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT with the real uncased vocabulary, saved with its tokenizer."""
    folder = tmp_path_factory.mktemp("tiny")
    tokenizer = load_tokenizer(need_data("vocab", "bert_uncased_en_vocab.txt"))
    torch.manual_seed(0)
    config = tiny_config(vocab_size=30522, max_position_embeddings=512, num_hidden_layers=3,
                         hidden_dropout_prob=0.1)
    BertForSequenceClassification(config).bert.save_pretrained(str(folder))
    tokenizer.save(folder)
    return folder


def _results(out: Path) -> dict:
    return json.loads((out / "eval_results.json").read_text())


def test_glue_run_writes_everything_and_evaluate_agrees(tiny_dir: Path, tmp_path: Path) -> None:
    data = need_data("glue", "RTE")
    out = tmp_path / "rte"
    argv = ["finetune", "glue", "--task", "RTE", "--data-dir", str(data), "--model",
            str(tiny_dir), "--out", str(out), "--train-limit", "48", "--max-length", "64", *FAST]
    assert main(argv) == 0
    result = _results(out)
    assert 0.0 <= result["accuracy"] <= 1.0 and result["best_epoch"] == 1
    for name in ("metrics.jsonl", "learning_curves.png", "predictions_dev.tsv", "RTE.tsv",
                 "best/config.json", "best/model.safetensors", "best/vocab.txt"):
        assert (out / name).is_file(), name
    config = json.loads((out / "best" / "config.json").read_text())
    assert config["id2label"] == {"0": "entailment", "1": "not_entailment"}
    assert len((out / "RTE.tsv").read_text().splitlines()) == 3001
    again = tmp_path / "eval"
    assert main(["evaluate", "glue", "--task", "RTE", "--data-dir", str(data), "--model",
                 str(out / "best"), "--out", str(again), "--max-length", "64"]) == 0
    assert _results(again)["accuracy"] == pytest.approx(result["accuracy"])


def test_stsb_regression_and_mnli_keys(tiny_dir: Path, tmp_path: Path) -> None:
    data = need_data("glue", "STS-B")
    out = tmp_path / "stsb"
    assert main(["finetune", "glue", "--task", "STS-B", "--data-dir", str(data), "--model",
                 str(tiny_dir), "--out", str(out), "--train-limit", "32", "--dev-limit", "40",
                 "--max-length", "48", *FAST]) == 0
    result = _results(out)
    assert {"pearson", "spearmanr", "corr"} <= set(result)
    assert json.loads((out / "best" / "config.json").read_text())["problem_type"] == "regression"


def test_classify_multilabel_with_two_seeds(tiny_dir: Path, tmp_path: Path) -> None:
    rows = [{"text": f"item {i} " + ("red" if i % 2 else "blue"),
             "tags": ["red"] if i % 2 else ["blue", "sky"]} for i in range(24)]
    for name in ("train", "dev"):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "ml"
    assert main(["finetune", "classify", "--train", str(tmp_path / "train.jsonl"), "--dev",
                 str(tmp_path / "dev.jsonl"), "--label-column", "tags", "--problem",
                 "multi_label", "--model", str(tiny_dir), "--out", str(out), "--seeds", "2",
                 *FAST]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [r["seed"] for r in summary["runs"]] == [42, 43]
    assert {"mean", "std", "min", "max"} <= set(summary["stats"]["micro_f1"])
    assert (out / "seed-42" / "predictions_dev.jsonl").is_file()
    pred = tmp_path / "pred"
    assert main(["predict", "classify", "--model", str(out / "seed-42" / "best"), "--input",
                 str(tmp_path / "dev.jsonl"), "--out", str(pred)]) == 0
    first = json.loads((pred / "predictions.jsonl").read_text().splitlines()[0])
    assert set(first["probabilities"]) == {"blue", "red", "sky"}


def test_seeds_are_reproducible(tiny_dir: Path, tmp_path: Path) -> None:
    """--seeds K twice gives the same numbers: each seed fixes the new head's initial
    weights as well as dropout and data order (the head was once left to torch's start-up
    generator, which differs from process to process)."""
    rows = [{"text": f"item {i} " + ("red" if i % 2 else "blue"), "label": i % 2}
            for i in range(24)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summaries = []
    for name in ("a", "b"):
        torch.manual_seed(len(name) * 1000 + ord(name))  # a different global state each time
        assert main(["finetune", "classify", "--train", str(tmp_path / "d.jsonl"), "--dev",
                     str(tmp_path / "d.jsonl"), "--model", str(tiny_dir), "--out",
                     str(tmp_path / name), "--seeds", "2", *FAST]) == 0
        summaries.append(json.loads((tmp_path / name / "summary.json").read_text()))
    losses = [[r.get("eval_loss", r["accuracy"]) for r in s["runs"]] for s in summaries]
    assert losses[0] == losses[1]
    for seed in (42, 43):
        a = (tmp_path / "a" / f"seed-{seed}" / "best" / "model.safetensors").read_bytes()
        b = (tmp_path / "b" / f"seed-{seed}" / "best" / "model.safetensors").read_bytes()
        assert a == b


def test_unseen_dev_label_is_a_one_line_error(tiny_dir: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "t.csv").write_text("text,label\ngood,pos\nbad,neg\n")
    (tmp_path / "d.csv").write_text("text,label\nmeh,neutral\n")
    code = main(["finetune", "classify", "--train", str(tmp_path / "t.csv"), "--dev",
                 str(tmp_path / "d.csv"), "--model", str(tiny_dir), "--out",
                 str(tmp_path / "o"), *FAST])
    assert code == 2
    assert "d.csv:2: label 'neutral' was not seen in training" in capsys.readouterr().err


def test_max_length_beyond_the_positions_is_refused_before_training(
        tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "t.csv").write_text("text,label\ngood,pos\nbad,neg\n")
    code = main(["finetune", "classify", "--train", str(tmp_path / "t.csv"), "--dev",
                 str(tmp_path / "t.csv"), "--model", str(tiny_dir), "--out",
                 str(tmp_path / "o"), "--max-length", "1000", *FAST])
    assert code == 2
    assert "--max-length 1000 exceeds the model's 512 positions" in capsys.readouterr().err
    assert not (tmp_path / "o" / "metrics.jsonl").exists()


def _squad_slice(tmp_path: Path) -> Path:
    data = json.loads(need_data("squad-v1.1", "dev-v1.1.json").read_text())
    for article in data["data"][:2]:
        article["paragraphs"] = article["paragraphs"][:2]
    path = tmp_path / "squad.json"
    path.write_text(json.dumps({"version": "1.1", "data": data["data"][:2]}))
    return path


@pytest.mark.parametrize("version", ["1.1", "2.0"])
def test_squad_split_by_article(tiny_dir: Path, tmp_path: Path, version: str) -> None:
    path = _squad_slice(tmp_path)
    out = tmp_path / "squad"
    assert main(["finetune", "squad", "--train", str(path), "--dev", str(path),
                 "--train-articles", "0:1", "--dev-articles", "1:2", "--version", version,
                 "--max-length", "128", "--doc-stride", "48", "--model", str(tiny_dir),
                 "--out", str(out), *FAST]) == 0
    result = _results(out)
    predictions = json.loads((out / "predictions.json").read_text())
    assert predictions and (out / "nbest_predictions.json").is_file()
    if version == "1.1":
        assert {"exact_match", "f1"} <= set(result)
    else:
        assert {"exact", "f1", "best_f1", "best_f1_thresh"} <= set(result)
        assert set(json.loads((out / "null_odds.json").read_text())) == set(predictions)


def _conll_slice(tmp_path: Path, name: str, sentences: int) -> Path:
    text = need_data("conll2003", "valid.txt").read_text().split("\n\n")[:sentences]
    path = tmp_path / name
    path.write_text("\n\n".join(text) + "\n")
    return path


@pytest.mark.parametrize("feature_based", [False, True])
def test_ner_fine_tuned_and_feature_based(tiny_dir: Path, tmp_path: Path,
                                          feature_based: bool) -> None:
    train = _conll_slice(tmp_path, "train.txt", 40)
    out = tmp_path / "ner"
    extra = ["--feature-based", "--lstm-size", "16"] if feature_based else []
    assert main(["finetune", "ner", "--train", str(train), "--dev", str(train), "--model",
                 str(tiny_dir), "--out", str(out), "--max-length", "64", *FAST, *extra]) == 0
    result = _results(out)
    assert {"precision", "recall", "f1", "accuracy"} <= set(result)
    assert (out / "predictions_dev.conll").is_file()
    pred = tmp_path / "pred"
    assert main(["predict", "ner", "--model", str(out / "best"), "--input", str(train),
                 "--out", str(pred)]) == 0
    from bertforge.tasks.ner import read_conll
    written = (pred / "predictions.conll").read_text()
    assert written.count("\n\n") == len(read_conll(train))
    shutil.rmtree(out)


def test_multiple_choice(tiny_dir: Path, tmp_path: Path) -> None:
    head = "video-id,fold-ind,startphrase,sent1,sent2,gold-source,ending0,ending1,ending2,ending3"
    lines = [f"{head},label"] + [f"v{i},{i},x,The cook takes a pan.,She,gold,cooks eggs.,"
                                 f"flies away.,sings loudly.,paints a wall.,{i % 4}"
                                 for i in range(12)]
    (tmp_path / "train.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "swag"
    assert main(["finetune", "multiple-choice", "--train", str(tmp_path / "train.csv"),
                 "--dev", str(tmp_path / "train.csv"), "--model", str(tiny_dir), "--out",
                 str(out), *FAST]) == 0
    assert 0.0 <= _results(out)["accuracy"] <= 1.0


def test_train_limit_applies_to_every_task(tiny_dir: Path, tmp_path: Path) -> None:
    """--train-limit N trains on the first N examples of a classify file (it was once read
    by GLUE alone); 0 is refused."""
    rows = [{"text": f"item {i} " + ("red" if i % 2 else "blue"), "label": i % 2}
            for i in range(40)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = ["finetune", "classify", "--train", str(tmp_path / "d.jsonl"), "--dev",
              str(tmp_path / "d.jsonl"), "--model", str(tiny_dir), *FAST]
    assert main([*common, "--out", str(tmp_path / "n"), "--train-limit", "10"]) == 0
    assert _results(tmp_path / "n")["train_examples"] == 10
    assert main([*common, "--out", str(tmp_path / "z"), "--train-limit", "0"]) == 2


@pytest.mark.parametrize("pooling", ["mean", "cls-last4"])
def test_evaluate_keeps_the_fine_tuned_pooling(tiny_dir: Path, tmp_path: Path,
                                               pooling: str) -> None:
    """A model fine-tuned with --pooling mean (or cls-last4) is scored by ``evaluate`` with
    that pooling (from its config.json), not with the default [CLS]: the same prediction
    for every dev example as the training-time evaluation."""
    data = need_data("glue", "RTE")
    out, again = tmp_path / "rte", tmp_path / "eval"
    assert main(["finetune", "glue", "--task", "RTE", "--data-dir", str(data), "--model",
                 str(tiny_dir), "--out", str(out), "--train-limit", "48", "--max-length", "64",
                 "--pooling", pooling, *FAST]) == 0
    assert json.loads((out / "best" / "config.json").read_text())["pooling"] == pooling
    assert main(["evaluate", "glue", "--task", "RTE", "--data-dir", str(data), "--model",
                 str(out / "best"), "--out", str(again), "--max-length", "64"]) == 0
    trained = (out / "predictions_dev.tsv").read_text().splitlines()
    assert (again / "predictions_dev.tsv").read_text().splitlines() == trained
    assert _results(again)["accuracy"] == pytest.approx(_results(out)["accuracy"])
