"""The CPU dropout kernels (bool masks from 16-bit uniform lanes): the distribution of
``F.dropout`` with p rounded to 2^-16, the gradients, attention with dropout against the
reference arithmetic, and the plain path where they do not apply."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from bertforge.model.dropout import Dropout, dropout, dropped_mask, quantized

N = 1_000_000


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_keep_rate_and_scale(p: float, dtype: torch.dtype) -> None:
    """Kept share 1 - p within 5 binomial standard errors (sqrt(p(1-p)/N) <= 5e-4); kept
    values scaled by exactly 1 / (1 - p) (up to the dtype's rounding); mean preserved."""
    torch.manual_seed(0)
    x = torch.full((N,), 2.0, dtype=dtype)
    out = dropout(x, p, training=True)
    assert out.dtype == dtype
    kept = out != 0
    tol = 5 * math.sqrt(p * (1 - p) / N)
    assert abs(kept.float().mean().item() - (1 - p)) < tol
    assert abs(quantized(p) - p) <= 2**-17
    want = torch.tensor(2.0 / (1 - quantized(p)), dtype=dtype)
    assert torch.all(out[kept] == want)
    # the mean of the output estimates the input's: within 5 standard errors
    assert abs(out.float().mean().item() - 2.0) < 5 * 2.0 * math.sqrt(p / (1 - p) / N)


def test_elements_are_independent() -> None:
    """Neighbouring elements are kept independently: P(both kept) = (1-p)^2 within 5
    standard errors, and the kept share does not drift along the tensor."""
    torch.manual_seed(1)
    p = 0.3
    kept = dropout(torch.ones(N), p, training=True) != 0
    both = (kept[:-1] & kept[1:]).float().mean().item()
    q = (1 - p) ** 2
    assert abs(both - q) < 5 * math.sqrt(q * (1 - q) / N)
    halves = kept.view(2, -1).float().mean(1)
    assert abs(halves[0] - halves[1]).item() < 5 * math.sqrt(2 * p * (1 - p) / (N / 2))


def test_gradient_is_the_mask_times_the_scale() -> None:
    torch.manual_seed(2)
    x = torch.randn(64, 33, requires_grad=True)
    out = dropout(x, 0.2, training=True)
    g = torch.randn_like(out)
    out.backward(g)
    kept = (out != 0).float()
    scale = 1 / (1 - quantized(0.2))
    torch.testing.assert_close(x.grad, g * kept * scale)
    torch.testing.assert_close(out, x.detach() * kept * scale)


def test_same_seed_same_mask_and_plain_cases() -> None:
    x = torch.randn(1000)
    torch.manual_seed(3)
    a = dropout(x, 0.1, training=True)
    torch.manual_seed(3)
    b = dropout(x, 0.1, training=True)
    assert torch.equal(a, b)
    assert dropout(x, 0.1, training=False) is x
    assert dropout(x, 0.0, training=True) is x
    assert torch.equal(dropout(x, 1.0, training=True), F.dropout(x, 1.0, training=True))
    module = Dropout(0.25)
    assert isinstance(module, torch.nn.Dropout) and module.p == 0.25
    assert torch.equal(module.eval()(x), x)


def test_attention_dropout_is_unbiased() -> None:
    """Training-mode attention with dropout on CPU (the explicit path with the bool-mask
    kernel): 4,000 copies of one sequence get independent masks, and their mean output
    equals the dropout-free output within 5 standard errors, element by element."""
    from _helpers import tiny_config

    from bertforge.model.bert import SelfAttention

    torch.manual_seed(4)
    attn = SelfAttention(tiny_config(attention_probs_dropout_prob=0.3))
    x = torch.randn(1, 7, 32).expand(4000, 7, 32)
    with torch.no_grad():
        want = attn.eval()(x[:1], None)[0][0]
        got = attn.train()(x, None)[0]  # [4000, 7, 32]
    err = (got.mean(0) - want).abs()
    bound = 5 * got.std(0) / math.sqrt(4000) + 1e-6
    assert torch.all(err < bound), float((err / bound).max())
    assert got.std(0).mean() > 0.01  # dropout did happen


def test_every_lane_of_the_mask_is_uniform() -> None:
    """The four 16-bit lanes of each 64-bit draw drop at the same rate, quantized(p),
    within 5 standard errors each (2^21 samples per lane)."""
    torch.manual_seed(5)
    drop = dropped_mask((2**21, 4), 0.1)
    rates = drop.double().mean(0)
    q = quantized(0.1)
    assert torch.all((rates - q).abs() < 5 * math.sqrt(q * (1 - q) / 2**21)), rates


def _reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                         mask: torch.Tensor | None, drop: torch.Tensor, p: float) -> torch.Tensor:
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    probs = scores.softmax(-1)
    return probs.masked_fill(drop, 0.0) @ v / (1 - quantized(p))


@pytest.mark.parametrize("masked", [False, True])
def test_attention_dropout_equals_the_reference_arithmetic(masked: bool) -> None:
    """Output and q/k/v gradients of the fused CPU attention-with-dropout equal plain
    autograd through softmax, the same dropout mask and the matmuls (float64)."""
    from bertforge.model.dropout import _AttentionDropout

    gen = torch.Generator().manual_seed(6)
    q, k, v = (torch.randn(2, 3, 9, 4, generator=gen, dtype=torch.float64,
                           requires_grad=True) for _ in range(3))
    mask = torch.ones(2, 1, 1, 9, dtype=torch.bool)
    mask[1, ..., 6:] = False
    mask = mask if masked else None
    g = torch.randn(2, 3, 9, 4, generator=gen, dtype=torch.float64)
    torch.manual_seed(7)
    out = _AttentionDropout.apply(q, k, v, mask, 0.3)
    out.backward(g)
    got = [out.detach()] + [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    torch.manual_seed(7)
    drop = dropped_mask((2, 3, 9, 9), 0.3)
    assert drop.any() and not drop.all()
    want = _reference_attention(q, k, v, mask, drop, 0.3)
    want.backward(g)
    for a, b in zip(got, [want.detach()] + [t.grad for t in (q, k, v)], strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)
