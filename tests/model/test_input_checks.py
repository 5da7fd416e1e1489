"""Inputs the encoder cannot use are refused with an error naming them (not an index
error or a silently ignored mask from deep inside torch)."""

from __future__ import annotations

import pytest
import torch
from _helpers import tiny_config

from bertforge.model import BertModel


@pytest.fixture
def model() -> BertModel:
    torch.manual_seed(0)
    return BertModel(tiny_config()).eval()


def test_masks_and_segments_of_another_shape_are_refused(model):
    ids = torch.randint(5, 99, (2, 7))
    for name, bad in (("attention_mask", torch.ones(2, 9, dtype=torch.long)),
                      ("attention_mask", torch.ones(3, 7, dtype=torch.long)),
                      ("token_type_ids", torch.zeros(2, 3, dtype=torch.long))):
        with pytest.raises(ValueError, match=rf"{name} has shape \[.*\] but input_ids has "
                                             r"\[2, 7\]"):
            model(ids, **{name: bad})
    with pytest.raises(ValueError, match=r"\[batch, sequence\].*input_ids\[None\]"):
        model(ids[0])


def test_ids_outside_the_vocabulary_are_named(model):
    ids = torch.randint(5, 99, (2, 7))
    ids[1, 3] = 99  # vocab_size 99: ids 0..98
    with pytest.raises(ValueError, match=r"input_ids holds .*\.\.99.*vocab_size 99"):
        model(ids)
    ok = torch.randint(5, 99, (2, 7))
    with pytest.raises(ValueError, match="type_vocab_size 2"):
        model(ok, token_type_ids=torch.full_like(ok, 2))
    negative = ok.clone()
    negative[0, 0] = -1
    with pytest.raises(ValueError, match="input_ids holds -1"):
        model(negative)
    # the checks change nothing for valid input
    with torch.no_grad():
        a = model(ok, attention_mask=torch.ones_like(ok)).last_hidden_state
        b = model(ok).last_hidden_state
    assert torch.equal(a, b)
