"""Initial weights for pre-training: BERT's, or a start whose attention is already local.

``bert`` is the paper's initialisation (``init_weights``: every weight N(0, 0.02)); it is
what a model gets when built. With it, a small BERT first learns the unigram distribution
and then sits on that plateau (MLM loss ~6.2 for the demo's tiny model) for about 1,500
steps: attention starts nearly uniform, so no position can yet use its neighbours.

``local`` changes two things, and only the initial values (the architecture, and so the
Hugging Face and TensorFlow formats, are untouched):

- position embeddings are a sinusoid table (Vaswani et al. 2017) scaled to std 0.05,
  larger than the word embeddings' 0.02, so after the embedding LayerNorm nearby
  positions have similar vectors;
- in every layer the key projection starts equal to the query projection (N(0, 0.08)),
  so each head's score ``x_i W_q^T W_q x_j`` is a positive semi-definite form: a position
  attends most to itself and to positions whose vectors resemble its own, its neighbours
  (the query-key half of "mimetic" initialisation, Trockman & Kolter 2023).

Neither alone helped in our runs; together the demo's model left the plateau at about 600
steps instead of 2,000 and stayed ~2,000 steps ahead (bench/RESULTS.md, "The demo",
session 8). Biases, LayerNorms, values, outputs and the feed-forward keep BERT's values.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from bertforge.config import INIT_SCHEMES

if TYPE_CHECKING:
    from bertforge.config import BertConfig
    from bertforge.model.heads import BertForPreTraining

LOCAL_POSITION_STD = 0.05
LOCAL_QK_STD = 0.08


def sinusoid_positions(num_positions: int, dim: int) -> torch.Tensor:
    """[num_positions, dim]: sin in even columns and cos in odd ones, frequencies
    10000^(-2i/dim) (dim may be odd: the last column is then a sine)."""
    pos = torch.arange(num_positions, dtype=torch.float64)[:, None]
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    table = torch.zeros(num_positions, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return table.float()


@torch.no_grad()
def local_attention_init(model: nn.Module, position_std: float = LOCAL_POSITION_STD,
                         qk_std: float = LOCAL_QK_STD) -> None:
    """Give a freshly initialised ``model`` (a ``BertModel`` or anything holding one) the
    ``local`` start described in the module doc, in place. Draws from torch's global
    generator, one [H, H] matrix per layer in layer order, so a seed fixes the result."""
    from bertforge.model.bert import Embeddings, SelfAttention

    found = False
    for module in model.modules():
        if isinstance(module, Embeddings):
            table = module.position_embeddings.weight
            sines = sinusoid_positions(*table.shape)
            table.copy_(sines / sines.std() * position_std)
            found = True
        elif isinstance(module, SelfAttention):
            weight = torch.randn_like(module.q.weight) * qk_std
            module.q.weight.copy_(weight)
            module.k.weight.copy_(weight)
    if not found:
        raise ValueError("local_attention_init: the model has no BERT embeddings")


def initial_model(config: BertConfig, seed: int, scheme: str) -> BertForPreTraining:
    """The weights a pre-training run with ``seed`` and ``scheme`` starts from: the one
    place they are drawn, so that a control rebuilt from the same seed and scheme (the
    demo's) is bit-identical to the run's start."""
    from bertforge.model.heads import BertForPreTraining

    torch.manual_seed(seed)
    model = BertForPreTraining(config)
    apply_init_scheme(model, scheme)
    return model


def apply_init_scheme(model: nn.Module, scheme: str) -> None:
    """``bert``: leave the model as built; ``local``: ``local_attention_init``."""
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"init scheme must be one of {', '.join(INIT_SCHEMES)}, got {scheme!r}")
    if scheme == "local":
        local_attention_init(model)
