"""Audit 5: task models from Python as a transformers user calls them."""

from __future__ import annotations

import pytest
import torch

from bertforge.model import task_heads


@pytest.mark.parametrize("name", ["BertForSequenceClassification", "BertForTokenClassification"])
def test_from_pretrained_takes_num_labels_as_transformers(name, minilm_dir):
    """``from_pretrained(DIR, num_labels=K)`` (transformers' spelling) gives a K-way head
    named as transformers names its labels; it was a TypeError from BertConfig."""
    transformers = pytest.importorskip("transformers")
    theirs = getattr(transformers, name).from_pretrained(str(minilm_dir), num_labels=3)
    ours = getattr(task_heads, name).from_pretrained(str(minilm_dir), num_labels=3)
    assert ours.head.classifier.out_features == theirs.classifier.out_features == 3
    assert ours.config.id2label == theirs.config.id2label
    # the encoder is the checkpoint's: equal outputs once the new head is copied over
    ours.head.classifier.load_state_dict(theirs.classifier.state_dict())
    ids = torch.tensor([[101, 7592, 2088, 102]])
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, theirs(input_ids=ids).logits,
                                   atol=1e-5, rtol=1e-5)


def test_task_models_are_exported_from_the_package():
    import bertforge

    for name in ("BertForSequenceClassification", "BertForTokenClassification",
                 "BertForQuestionAnswering", "BertForMultipleChoice", "TaskOutput"):
        assert getattr(bertforge, name) is getattr(task_heads, name)
        assert name in bertforge.__all__
