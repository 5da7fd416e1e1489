"""The "local" initial weights: what they set, what they leave alone, and that attention
really starts local (the point of the scheme), against BERT's own initialisation."""

from __future__ import annotations

import math

import pytest
import torch

from bertforge.config import preset
from bertforge.model import BertForPreTraining, BertModel
from bertforge.model.init import (
    LOCAL_POSITION_STD,
    LOCAL_QK_STD,
    apply_init_scheme,
    local_attention_init,
    sinusoid_positions,
)


def build(scheme: str, seed: int = 0, **overrides) -> BertForPreTraining:
    torch.manual_seed(seed)
    model = BertForPreTraining(preset("tiny", vocab_size=3000, hidden_dropout_prob=0.0,
                                      attention_probs_dropout_prob=0.0, **overrides))
    apply_init_scheme(model, scheme)
    return model.eval()


def test_sinusoid_table_values() -> None:
    table = sinusoid_positions(50, 7)
    assert table.shape == (50, 7)
    assert torch.equal(table[0], torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]))
    p = torch.arange(50, dtype=torch.float64)
    torch.testing.assert_close(table[:, 0].double(), torch.sin(p), rtol=0, atol=1e-6)
    torch.testing.assert_close(table[:, 1].double(), torch.cos(p), rtol=0, atol=1e-6)
    f = 10000.0 ** (-4 / 7)
    torch.testing.assert_close(table[:, 5].double(), torch.cos(p * f), rtol=0, atol=1e-6)
    torch.testing.assert_close(table[:, 6].double(), torch.sin(p * 10000.0 ** (-6 / 7)),
                               rtol=0, atol=1e-6)


def test_local_init_sets_positions_and_key_equal_to_query_and_nothing_else() -> None:
    bert, local = build("bert"), build("local")
    pos = local.bert.embeddings.position_embeddings.weight
    assert pos.std().item() == pytest.approx(LOCAL_POSITION_STD, rel=1e-4)
    sines = sinusoid_positions(*pos.shape)
    torch.testing.assert_close(pos, sines * (pos.std() / sines.std()))
    layers = [m for m in local.modules() if m.__class__.__name__ == "SelfAttention"]
    assert len(layers) == 2
    for attn in layers:
        assert torch.equal(attn.q.weight, attn.k.weight)
        # 16,384 draws: the sample std is within 2% of the target (about 4 standard errors)
        assert attn.q.weight.std().item() == pytest.approx(LOCAL_QK_STD, rel=0.02)
        assert abs(attn.q.weight.mean().item()) < 4 * LOCAL_QK_STD / 128
    assert not torch.equal(layers[0].q.weight, layers[1].q.weight)
    changed = {"bert.embeddings.position_embeddings.weight"} | {
        f"bert.layers.{i}.attn.{w}.weight" for i in (0, 1) for w in "qk"}
    a, b = bert.state_dict(), local.state_dict()
    assert changed <= set(a)
    for name in a:
        assert torch.equal(a[name], b[name]) == (name not in changed), name


def test_local_init_is_fixed_by_the_seed() -> None:
    one, two, other = build("local", 3), build("local", 3), build("local", 4)
    for name, value in one.state_dict().items():
        assert torch.equal(value, two.state_dict()[name])
    assert not torch.equal(one.bert.layers[0].attn.q.weight, other.bert.layers[0].attn.q.weight)


def mean_attention_distance(model: BertForPreTraining, ids: torch.Tensor) -> torch.Tensor:
    """Per layer: the attention-weighted mean |i - j| over every query of every head."""
    s = ids.shape[1]
    with torch.no_grad():
        out = model.bert(ids, torch.zeros_like(ids), torch.ones_like(ids),
                         output_attentions=True)
    dist = (torch.arange(s)[:, None] - torch.arange(s)[None, :]).abs().float()
    return torch.stack([(p * dist).sum(-1).mean() for p in out.attentions])


def test_attention_starts_local_with_the_local_scheme_only() -> None:
    """Random token ids, length 64: under BERT's initialisation attention is close to
    uniform (mean |i - j| of uniform weights is (S^2 - 1) / 3S = 21.3); the local scheme
    puts its weight near the query in the first layer."""
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(5, 3000, (8, 64), generator=g)
    uniform = (64**2 - 1) / (3 * 64)
    bert = mean_attention_distance(build("bert"), ids)
    local = mean_attention_distance(build("local"), ids)
    assert bert.min().item() > 0.95 * uniform
    assert local[0].item() < 0.6 * uniform  # 8.8 here; 9.8-10.1 for seeds 1-3
    assert (local < bert).all()


def test_local_init_needs_bert_embeddings_and_a_known_scheme() -> None:
    with pytest.raises(ValueError, match="no BERT embeddings"):
        local_attention_init(torch.nn.Linear(4, 4))
    with pytest.raises(ValueError, match="bert, local"):
        apply_init_scheme(build("bert"), "xavier")
    encoder = BertModel(preset("tiny", vocab_size=100))
    local_attention_init(encoder)  # a bare encoder works too
    assert math.isclose(encoder.embeddings.position_embeddings.weight.std().item(),
                        LOCAL_POSITION_STD, rel_tol=1e-4)
