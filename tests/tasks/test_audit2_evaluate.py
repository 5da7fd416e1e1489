"""`bertforge evaluate` shows progress: scoring a SQuAD dev set takes minutes on a CPU, and
the command printed nothing until it ended (the fine-tuning bar also stood still while dev
was scored)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _helpers import need_data, tiny_config

from bertforge.cli.main import main
from bertforge.model.task_heads import BertForSequenceClassification
from bertforge.tokenization import load_tokenizer


@pytest.fixture(scope="module")
def rte_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT with the real uncased vocabulary, fine-tuned for a few steps."""
    folder = tmp_path_factory.mktemp("tiny")
    tokenizer = load_tokenizer(need_data("vocab", "bert_uncased_en_vocab.txt"))
    torch.manual_seed(0)
    config = tiny_config(vocab_size=30522, max_position_embeddings=512)
    BertForSequenceClassification(config).bert.save_pretrained(str(folder))
    tokenizer.save(folder)
    out = folder / "run"
    assert main(["finetune", "glue", "--task", "RTE", "--data-dir",
                 str(need_data("glue", "RTE")), "--model", str(folder), "--out", str(out),
                 "--train-limit", "16", "--dev-limit", "16", "--max-length", "64",
                 "--max-steps", "2", "--batch-size", "8", "--quiet"]) == 0
    return out / "best"


def _evaluate(model: Path, out: Path, *extra: str) -> int:
    return main(["evaluate", "glue", "--task", "RTE", "--data-dir",
                 str(need_data("glue", "RTE")), "--model", str(model), "--out", str(out),
                 "--max-length", "64", "--batch-size", "32", *extra])


def test_evaluate_shows_progress(rte_model: Path, tmp_path: Path, capsys) -> None:
    assert _evaluate(rte_model, tmp_path / "a") == 0
    err = capsys.readouterr().err
    assert "evaluate" in err and "/277 [" in err  # RTE dev: 277 pairs


def test_evaluate_quiet_has_no_bar(rte_model: Path, tmp_path: Path, capsys) -> None:
    assert _evaluate(rte_model, tmp_path / "b", "--quiet") == 0
    assert "/277 [" not in capsys.readouterr().err
