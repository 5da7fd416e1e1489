"""Tiny models saved as real checkpoint directories (with a tokenizer) for inference tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _helpers import tiny_config

WORDS = ("the a an of to and in is was it that he she they we you i his her their man "
         "woman child dog cat food bread piece eating ate eats capital city france paris "
         "london river house car red blue green big small good bad new old one two three "
         "day night world hello bye now here there what who when where why how very not "
         "but or if on at by with from up down out over under again food music book play "
         "run walk talk sing").split()


def tiny_vocab(size: int = 99) -> list[str]:
    """Specials, punctuation, then distinct words, ``size`` tokens in all."""
    base = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "!", "?", "'"]
    words = list(dict.fromkeys(WORDS))
    vocab = base + words + [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
    assert len(vocab) >= size, len(vocab)
    return vocab[:size]


def save_tiny(model: torch.nn.Module, path: Path) -> Path:
    from bertforge.tokenization import BertTokenizer

    tok = BertTokenizer.from_vocab(tiny_vocab(model.config.vocab_size), lowercase=True)
    model.save_pretrained(str(path))
    tok.save(path)
    return path


@pytest.fixture(scope="session")
def tiny_mlm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny BertForPreTraining (wide init, so top-k has clear winners)."""
    from bertforge.model import BertForPreTraining

    torch.manual_seed(0)
    model = BertForPreTraining(tiny_config(initializer_range=0.5)).eval()
    return save_tiny(model, tmp_path_factory.mktemp("tiny_mlm"))


@pytest.fixture(scope="session")
def tiny_classifier_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny BertForSequenceClassification with named labels."""
    from bertforge.model.task_heads import BertForSequenceClassification

    torch.manual_seed(1)
    config = tiny_config(initializer_range=0.5, id2label={0: "negative", 1: "positive"})
    model = BertForSequenceClassification(config).eval()
    return save_tiny(model, tmp_path_factory.mktemp("tiny_clf"))
