"""Packed rows (several sequences per row, ``sequence_ids``): each sequence's result equals
running it alone, on the unpadded path, the plain path (block-diagonal SDPA mask), the
explicit-probabilities path and under torch.compile."""

from __future__ import annotations

import pytest
import torch
from _helpers import tiny_config

from bertforge.model import BertForPreTraining, BertModel
from bertforge.model.bert import attention_mask_4d, packed_positions

# three packed rows of width 24: sequence lengths per row (the rest of a row is padding)
ROWS = [[7, 5, 9], [24], [3, 11, 2, 4]]
WIDTH = 24
TOL = dict(atol=1e-5, rtol=1e-5)


def packed_batch(seed: int = 0) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
    """Packed inputs and the list of the sequences they hold (token ids, in order)."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.zeros(len(ROWS), WIDTH, dtype=torch.long)
    seq_ids = torch.full_like(ids, -1)
    mask = torch.zeros_like(ids)
    sequences = []
    for r, lengths in enumerate(ROWS):
        at = 0
        for k, n in enumerate(lengths):
            tokens = torch.randint(5, 99, (n,), generator=gen)
            tokens[0], tokens[-1] = 2, 3  # [CLS] ... [SEP]-like ends
            ids[r, at:at + n] = tokens
            seq_ids[r, at:at + n] = k
            mask[r, at:at + n] = 1
            sequences.append(tokens)
            at += n
    types = torch.zeros_like(ids)
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask,
            "sequence_ids": seq_ids}, sequences


def alone(model: torch.nn.Module, sequences: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each sequence in a row of its own (padded to the longest), last hidden states."""
    longest = max(len(s) for s in sequences)
    ids = torch.zeros(len(sequences), longest, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(sequences):
        ids[i, :len(s)], mask[i, :len(s)] = s, 1
    out = model(ids, torch.zeros_like(ids), mask).last_hidden_state
    return [out[i, :len(s)] for i, s in enumerate(sequences)]


def split(hidden: torch.Tensor) -> list[torch.Tensor]:
    """The packed rows' hidden states [B, S, H] cut back into sequences."""
    out = []
    for r, lengths in enumerate(ROWS):
        at = 0
        for n in lengths:
            out.append(hidden[r, at:at + n])
            at += n
    return out


def test_positions_restart_at_each_sequence():
    seq = torch.tensor([[0, 0, 0, 1, 1, 2, -1, -1]])
    assert packed_positions(seq).tolist() == [[0, 1, 2, 0, 1, 0, 0, 1]]


def test_plain_mask_is_block_diagonal_and_never_empty():
    inputs, _ = packed_batch()
    mask = attention_mask_4d(inputs["attention_mask"], WIDTH, False, torch.device("cpu"),
                             inputs["sequence_ids"])
    assert mask.shape == (3, 1, WIDTH, WIDTH)
    assert mask[0, 0, 0, :7].all() and not mask[0, 0, 0, 7:].any()
    assert mask[0, 0, 8, 7:12].all() and not mask[0, 0, 8, :7].any()
    assert mask.any(-1).all()  # padding queries still see something (no NaN rows)


@pytest.mark.parametrize("path", ["unpadded", "plain", "probs"])
@pytest.mark.parametrize("train", [False, True])
def test_each_sequence_equals_running_it_alone(path, train):
    torch.manual_seed(0)
    model = BertModel(tiny_config()).train(train)  # dropout 0: train mode is deterministic
    model.unpad = path == "unpadded"
    inputs, sequences = packed_batch()
    with torch.no_grad():
        packed = model(inputs["input_ids"], inputs["token_type_ids"], inputs["attention_mask"],
                       output_attentions=path == "probs",
                       sequence_ids=inputs["sequence_ids"]).last_hidden_state
        model.unpad = True
        expected = alone(model, sequences)
        model.unpad = False
        expected_plain = alone(model, sequences)
    for got, want, plain in zip(split(packed), expected, expected_plain, strict=True):
        torch.testing.assert_close(got, want, **TOL)
        torch.testing.assert_close(got, plain, **TOL)


def test_gradients_stay_inside_each_sequence():
    torch.manual_seed(1)
    model = BertModel(tiny_config())
    inputs, _ = packed_batch(seed=1)
    emb = model.embeddings.word_embeddings
    x = emb(inputs["input_ids"]).detach().requires_grad_(True)
    model.embeddings.word_embeddings = _Fixed(x)
    out = model(inputs["input_ids"], inputs["token_type_ids"], inputs["attention_mask"],
                sequence_ids=inputs["sequence_ids"]).last_hidden_state
    out[0, 7:12].sum().backward()  # the second sequence of row 0
    touched = x.grad.abs().sum(-1)[0] > 0
    assert touched[7:12].all() and not touched[:7].any() and not touched[12:].any()


class _Fixed(torch.nn.Module):
    """Stands in for the word embeddings, returning a given tensor (to take its grad)."""

    def __init__(self, x: torch.Tensor) -> None:
        super().__init__()
        self.x = x

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.x


def test_pretraining_model_passes_sequence_ids():
    torch.manual_seed(2)
    model = BertForPreTraining(tiny_config()).eval()
    inputs, sequences = packed_batch(seed=2)
    positions = torch.tensor([[1, 8, 13], [3, 4, 5], [1, 4, 15]])
    with torch.no_grad():
        out = model(**inputs, masked_positions=positions)
        want = model.bert(**inputs).last_hidden_state
    assert out.prediction_logits.shape == (3, 3, 99)
    head = model.mlm(want.gather(1, positions[..., None].expand(-1, -1, 32)),
                     model.bert.embeddings.word_embeddings.weight)
    torch.testing.assert_close(out.prediction_logits, head)


def test_compiled_forward_matches():
    torch.manual_seed(3)
    model = BertModel(tiny_config()).eval()
    inputs, _ = packed_batch(seed=3)
    with torch.no_grad():
        eager = model(**inputs).last_hidden_state
        compiled = torch.compile(model, backend="eager", fullgraph=True)(**inputs)
    real = inputs["attention_mask"].bool()
    torch.testing.assert_close(compiled.last_hidden_state[real], eager[real], **TOL)
