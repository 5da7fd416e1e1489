"""Task heads against transformers' same-named classes: load each other's saves, same logits."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from _helpers import tiny_config

from bertforge.model.task_heads import (
    BertFeatureTagger,
    BertForMultipleChoice,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    span_loss,
)

transformers = pytest.importorskip("transformers")

CLASSES = [BertForSequenceClassification, BertForTokenClassification,
           BertForQuestionAnswering, BertForMultipleChoice]


def _inputs(cls: type, vocab: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shape = (2, 3, 7) if cls is BertForMultipleChoice else (3, 7)
    ids = torch.randint(5, vocab, shape, generator=g)
    mask = torch.ones(shape, dtype=torch.long)
    mask[..., -2:] = 0
    mask[0, ...] = 1
    types = torch.zeros(shape, dtype=torch.long)
    types[..., 4:] = 1
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}


def _outputs(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """The logits; token-level ones only at real tokens (the encoder drops padding, so what
    it leaves at padded positions is no output anyone reads)."""
    with torch.no_grad():
        out = model(**inputs)
    if getattr(out, "start_logits", None) is not None:
        found = [out.start_logits, out.end_logits]
    else:
        found = [out.logits]
    mask = inputs["attention_mask"].bool()
    return [t[mask] if t.shape[:mask.ndim] == mask.shape else t for t in found]


def _hf_class(cls: type) -> type:
    return getattr(transformers, cls.hf_architecture)


def _labelled_config(cls: type = BertForSequenceClassification, **kw: object):  # noqa: ANN202
    """Three labels, except for question answering, whose head always has two outputs."""
    if cls is BertForQuestionAnswering:
        return tiny_config(**kw)
    return tiny_config(id2label={0: "neg", 1: "neu", 2: "pos"}, **kw)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_hf_save_loads_in_ours_with_equal_logits(cls: type, tmp_path: Path) -> None:
    config = _labelled_config(cls)
    torch.manual_seed(0)
    theirs = _hf_class(cls)(transformers.BertConfig(**config.to_dict())).eval()
    theirs.save_pretrained(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no missing weights
        ours = cls.from_pretrained(str(tmp_path))
    inputs = _inputs(cls, config.vocab_size)
    for a, b in zip(_outputs(ours, inputs), _outputs(theirs, inputs), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    if cls is BertForSequenceClassification:
        assert ours.config.id2label == {0: "neg", 1: "neu", 2: "pos"}


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_our_save_loads_in_hf_without_missing_keys(cls: type, tmp_path: Path) -> None:
    torch.manual_seed(1)
    ours = cls(_labelled_config(cls)).eval()
    ours.save_pretrained(str(tmp_path))
    theirs, info = _hf_class(cls).from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    theirs.eval()
    inputs = _inputs(cls, ours.config.vocab_size, seed=1)
    for a, b in zip(_outputs(ours, inputs), _outputs(theirs, inputs), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    if cls is not BertForQuestionAnswering:
        assert theirs.config.id2label == {0: "neg", 1: "neu", 2: "pos"}


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_minilm_task_models_match_transformers(cls: type, minilm_dir: Path,
                                               tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the head is new: initialised at random
        ours = cls.from_pretrained(str(minilm_dir))
    ours.save_pretrained(str(tmp_path))
    theirs = _hf_class(cls).from_pretrained(tmp_path).eval()
    inputs = _inputs(cls, 30522, seed=2)
    for a, b in zip(_outputs(ours, inputs), _outputs(theirs, inputs), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_losses_match_transformers() -> None:
    config = _labelled_config()
    torch.manual_seed(0)
    theirs = transformers.BertForSequenceClassification(
        transformers.BertConfig(**config.to_dict())).eval()
    ours = BertForSequenceClassification(config).eval()
    ours.load_state_dict(_renamed(theirs.state_dict(), ours), strict=False)
    inputs = _inputs(BertForSequenceClassification, config.vocab_size)
    labels = torch.tensor([0, 2, 1])
    with torch.no_grad():
        a = ours(**inputs, labels=labels).loss
        b = theirs(**inputs, labels=labels).loss
    torch.testing.assert_close(a, b)


def _renamed(state: dict[str, torch.Tensor], ours: torch.nn.Module) -> dict[str, torch.Tensor]:
    from bertforge.interop.checkpoint import hf_to_canonical
    canonical, _ = hf_to_canonical(state)
    return {k: v for k, v in canonical.items() if k in ours.state_dict()}


def test_span_loss_ignores_positions_outside_the_window() -> None:
    start = torch.randn(2, 5)
    end = torch.randn(2, 5)
    full = span_loss(start, end, torch.tensor([1, 9]), torch.tensor([2, 9]))
    first = span_loss(start[:1], end[:1], torch.tensor([1]), torch.tensor([2]))
    torch.testing.assert_close(full, first)


@pytest.mark.parametrize("problem", ["regression", "multi_label_classification"])
def test_regression_and_multilabel_losses(problem: str) -> None:
    labels = {0: "x"} if problem == "regression" else {0: "a", 1: "b", 2: "c"}
    model = BertForSequenceClassification(tiny_config(id2label=labels, problem_type=problem))
    inputs = _inputs(BertForSequenceClassification, 99)
    target = torch.rand(3) * 5 if problem == "regression" else torch.randint(0, 2, (3, 3)).float()
    out = model(**inputs, labels=target)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    out.loss.backward()


@pytest.mark.parametrize("pooling", ["mean", "cls-last4"])
def test_pooling_choices_round_trip(pooling: str, tmp_path: Path) -> None:
    config = tiny_config(id2label={0: "a", 1: "b"})
    config.extra["pooling"] = pooling
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(str(tmp_path))
    again = BertForSequenceClassification.from_pretrained(str(tmp_path))
    assert again.pooling == pooling
    inputs = _inputs(BertForSequenceClassification, 99)
    torch.testing.assert_close(_outputs(model, inputs), _outputs(again, inputs))


def test_feature_tagger_trains_only_its_head_and_round_trips(tmp_path: Path) -> None:
    config = tiny_config(id2label={0: "O", 1: "B-PER", 2: "I-PER"})
    config.extra["lstm_size"] = 8
    model = BertFeatureTagger(config)
    model.train()
    assert not model.bert.training
    inputs = _inputs(BertForTokenClassification, 99)
    labels = torch.randint(0, 3, (3, 7))
    model(**inputs, labels=labels).loss.backward()
    assert all(p.grad is None for p in model.bert.parameters())
    assert all(p.grad is not None for p in model.head.parameters())
    model.eval().save_pretrained(str(tmp_path))
    again = BertFeatureTagger.from_pretrained(str(tmp_path))
    torch.testing.assert_close(_outputs(model, inputs), _outputs(again, inputs))


def test_span_loss_is_the_same_in_any_batch() -> None:
    """A SQuAD feature's loss does not depend on the padding its batch adds: the padded
    path, the unpadded path and each feature alone agree; without padding it equals
    transformers' loss."""
    torch.manual_seed(3)
    theirs = transformers.BertForQuestionAnswering(
        transformers.BertConfig(**tiny_config().to_dict())).eval()
    ours = BertForQuestionAnswering(tiny_config()).eval()
    ours.load_state_dict(_renamed(theirs.state_dict(), ours), strict=True)
    inputs = _inputs(BertForQuestionAnswering, 99, seed=4)  # rows 1, 2 end in 2 pads
    starts, ends = torch.tensor([1, 3, 0]), torch.tensor([2, 4, 4])
    with torch.no_grad():
        unpadded = ours(**inputs, start_positions=starts, end_positions=ends).loss
        ours.bert.unpad = False
        padded = ours(**inputs, start_positions=starts, end_positions=ends).loss
        ours.bert.unpad = True
        alone = []
        for i in range(3):
            n = int(inputs["attention_mask"][i].sum())
            one = {k: v[i:i + 1, :n] for k, v in inputs.items()}
            args = dict(start_positions=starts[i:i + 1], end_positions=ends[i:i + 1])
            alone.append(ours(**one, **args).loss)
            torch.testing.assert_close(alone[-1], theirs(**one, **args).loss)
    torch.testing.assert_close(unpadded, padded)
    torch.testing.assert_close(unpadded, torch.stack(alone).mean())
