"""Optimisers against references: torch's AdamW, and single steps computed by hand."""

from __future__ import annotations

import math

import pytest
import torch
from _helpers import tiny_config
from torch import nn

from bertforge.model import BertForPreTraining
from bertforge.training.optim import OptimizerError, build_optimizer, param_groups, trust_ratio


class _Toy(nn.Module):
    """One matrix (decayed) and one bias (not decayed), with fixed values."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor([[1.0, -2.0]], dtype=torch.float64))
        self.bias = nn.Parameter(torch.tensor([0.5], dtype=torch.float64))


def _set_grads(model: _Toy) -> None:
    model.weight.grad = torch.tensor([[0.3, -0.1]], dtype=torch.float64)
    model.bias.grad = torch.tensor([0.2], dtype=torch.float64)


def test_param_groups_exclude_layernorm_and_biases_and_keep_tied_once():
    model = BertForPreTraining(tiny_config())
    decay, keep = param_groups(model, 0.01)
    assert decay["weight_decay"] == 0.01 and keep["weight_decay"] == 0.0
    assert all("norm" not in n and not n.endswith("bias") for n in decay["names"])
    assert "bert.embeddings.word_embeddings.weight" in decay["names"]
    assert any("norm.weight" in n for n in keep["names"]) and "mlm.bias" in keep["names"]
    n_params = len(list(model.parameters()))  # tied decoder weight counted once by torch too
    assert len(decay["params"]) + len(keep["params"]) == n_params




@pytest.mark.parametrize("fused", [True, False], ids=["fused", "foreach"])
def test_adamw_equals_torch_adamw_over_steps(one_thread, fused):
    """Ours picks torch's fused kernel on CPU (bit-identical to it); torch's default
    multi-tensor AdamW rounds differently but gives the same update to 1e-6."""
    torch.manual_seed(0)
    ours, ref = BertForPreTraining(tiny_config()), BertForPreTraining(tiny_config())
    ref.load_state_dict(ours.state_dict())
    opt = build_optimizer(ours, "adamw", lr=1e-3, weight_decay=0.01, eps=1e-6)
    groups = [{"params": [p for n, p in ref.named_parameters()
                          if not (p.ndim <= 1 or n.endswith("bias"))], "weight_decay": 0.01},
              {"params": [p for n, p in ref.named_parameters()
                          if p.ndim <= 1 or n.endswith("bias")], "weight_decay": 0.0}]
    ref_opt = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, fused=fused)
    assert opt.defaults["fused"]
    ids = torch.randint(0, 99, (3, 9), generator=torch.Generator().manual_seed(1))
    for model, optim in ((ours, opt), (ref, ref_opt)):
        for _ in range(3):
            optim.zero_grad()
            model(ids, labels=ids, next_sentence_label=torch.tensor([0, 1, 0])).loss.backward()
            optim.step()
    for (name, a), b in zip(ours.state_dict().items(), ref.state_dict().values(), strict=True):
        if fused:
            assert torch.equal(a, b), name
        else:
            torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)


def test_adam_weight_decay_single_step_by_hand():
    model = _Toy()
    _set_grads(model)
    lr, wd, b1, b2, eps = 0.1, 0.01, 0.9, 0.999, 1e-6
    build_optimizer(model, "adam_weight_decay", lr=lr, weight_decay=wd, betas=(b1, b2),
                    eps=eps).step()
    # no bias correction: m = 0.1 g, v = 0.001 g^2 -> update = 0.1 g / (sqrt(0.001)|g| + eps)
    for w, g, decay, got in ((1.0, 0.3, wd, model.weight[0, 0]),
                             (-2.0, -0.1, wd, model.weight[0, 1]),
                             (0.5, 0.2, 0.0, model.bias[0])):
        m, v = (1 - b1) * g, (1 - b2) * g * g
        want = w - lr * (m / (math.sqrt(v) + eps) + decay * w)
        assert got.item() == pytest.approx(want, rel=1e-12)
    # the incomplete Adam's first step is ~3.16x Adam's: 0.1 / sqrt(0.001)
    assert model.weight[0, 0].item() == pytest.approx(1.0 - 0.1 * (3.16227 + 0.01), rel=1e-4)


def test_lamb_single_step_by_hand():
    model = _Toy()
    _set_grads(model)
    lr, wd, eps = 0.1, 0.01, 1e-6
    build_optimizer(model, "lamb", lr=lr, weight_decay=wd, eps=eps).step()
    # bias-corrected first step: m_hat = g, v_hat = g^2 -> update = g / (|g| + eps) + wd w
    w, g = [1.0, -2.0], [0.3, -0.1]
    upd = [gi / (abs(gi) + eps) + wd * wi for wi, gi in zip(w, g, strict=True)]
    trust = math.hypot(*w) / math.hypot(*upd)
    for i in range(2):
        assert model.weight[0, i].item() == pytest.approx(w[i] - lr * trust * upd[i], rel=1e-12)
    # no decay group: no layer adaptation either
    assert model.bias[0].item() == pytest.approx(0.5 - lr * 0.2 / (0.2 + eps), rel=1e-12)


def test_trust_ratio_is_one_for_zero_norms():
    assert trust_ratio(torch.zeros(3), torch.ones(3)) == 1.0
    assert trust_ratio(torch.ones(3), torch.zeros(3)) == 1.0


def test_optimizer_state_round_trips_weights_only(tmp_path):
    model = _Toy()
    for name in ("adamw", "adam_weight_decay", "lamb"):
        opt = build_optimizer(model, name)
        _set_grads(model)
        opt.step()
        torch.save(opt.state_dict(), tmp_path / "o.pt")
        again = build_optimizer(model, name)
        again.load_state_dict(torch.load(tmp_path / "o.pt", weights_only=True))
        assert torch.equal(again.state[model.weight]["exp_avg"],
                           opt.state[model.weight]["exp_avg"])


@pytest.mark.parametrize("kwargs, field", [({"name": "sgd"}, "sgd"), ({"lr": 0}, "lr"),
                                           ({"betas": (0.9, 1.0)}, "betas"),
                                           ({"weight_decay": -1}, "weight_decay")])
def test_bad_settings_name_the_field(kwargs, field):
    with pytest.raises(OptimizerError, match=field):
        build_optimizer(_Toy(), **kwargs)


@pytest.mark.parametrize("max_norm", [0.5, 1e3, float("inf")])
def test_clip_grad_norm_equals_torch_clip_grad_norm(max_norm):
    """Same norm and same clipped gradients as torch.nn.utils.clip_grad_norm_, whether it
    clips (0.5), does not (1e3) or has no limit (inf); parameters without a gradient are
    left alone."""
    from bertforge.training.optim import clip_grad_norm

    gen = torch.Generator().manual_seed(3)
    shapes = [(8000, 128), (128,), (512, 128), (2,), (128, 128)]
    ours = [torch.randn(s, generator=gen).requires_grad_() for s in shapes]
    ref = [p.detach().clone().requires_grad_() for p in ours]
    for a, b in zip(ours, ref, strict=True):
        a.grad = torch.randn(a.shape, generator=gen) * 0.01
        b.grad = a.grad.clone()
    ours[3].grad = ref[3].grad = None
    total = clip_grad_norm(ours, max_norm)
    expected = torch.nn.utils.clip_grad_norm_(ref, max_norm)
    torch.testing.assert_close(total, expected)
    assert float(total) > 0.5
    for a, b in zip(ours, ref, strict=True):
        assert (a.grad is None) == (b.grad is None)
        if a.grad is not None:
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=0)
    norm_after = torch.linalg.vector_norm(torch.stack([g.grad.norm() for g in ours
                                                       if g.grad is not None]))
    assert float(norm_after) == pytest.approx(min(float(total), max_norm), rel=1e-5)
