"""Dropout kernels for a CPU: the mask from 16-bit uniform lanes (a third of the cost of
torch's Bernoulli sampling) and attention with dropout in one autograd function. On other
devices, and under tracing, everything goes through ``F.dropout`` / the caller's SDPA."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _tracing() -> bool:
    return torch.compiler.is_compiling() or torch.compiler.is_exporting()


def dropped_mask(shape: torch.Size | tuple[int, ...], p: float,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """bool ``shape``, True = dropped, each element independently with probability
    ``quantized(p)``: four 16-bit uniform lanes from every 64-bit draw of torch's default
    generator, a third of the cost of one fp32 uniform per element (the random numbers
    are most of dropout's cost on a CPU)."""
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device)
    words.random_(-(2**63), 2**63 - 1)
    lanes = words.view(torch.int16)[:n].view(shape)  # uniform on [-32768, 32767]
    return lanes < round(p * 65536) - 32768


def quantized(p: float) -> float:
    """The drop probability ``dropped_mask`` realises: ``p`` to the nearest 2^-16 (0.1 ->
    0.1000061). Kept values are scaled by 1 / (1 - quantized(p)): unbiased exactly."""
    return round(p * 65536) / 65536


class _MaskDropout(torch.autograd.Function):
    """Dropout with the mask from ``dropped_mask``, saved as bool (a quarter of the memory
    of torch's float mask); forward + backward take about a third of the time of torch's
    Bernoulli-sampled dropout on a CPU."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor,
                p: float) -> torch.Tensor:
        drop = dropped_mask(x.shape, p, x.device)
        ctx.save_for_backward(drop)
        ctx.scale = 1.0 / (1.0 - quantized(p))  # type: ignore[attr-defined]
        return x.masked_fill(drop, 0.0).mul_(ctx.scale)  # type: ignore[attr-defined]

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx,
                 grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (drop,) = ctx.saved_tensors  # type: ignore[attr-defined]
        return grad.masked_fill(drop, 0.0).mul_(ctx.scale), None  # type: ignore[attr-defined]


class _AttentionDropout(torch.autograd.Function):
    """dropout(softmax(Q K^T / sqrt(D) + mask)) V for training on a CPU, where SDPA with
    dropout falls back to its unfused path. The same arithmetic in fewer passes over the
    [B, N, S, S] scores (the mask and scale applied in place, dropout's scale moved to the
    [B, N, S, D] output), with the cheaper mask of ``dropped_mask``; saves the
    probabilities and a bool mask, not the dropped probabilities as well."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, q: torch.Tensor, k: torch.Tensor,
                v: torch.Tensor, mask: torch.Tensor | None, p: float) -> torch.Tensor:
        scale_qk = 1.0 / math.sqrt(q.shape[-1])
        scores = torch.matmul(q, k.transpose(-1, -2)).mul_(scale_qk)  # [B, N, S, S]
        if mask is not None:
            scores.masked_fill_(~mask, torch.finfo(scores.dtype).min)
        probs = torch.softmax(scores, dim=-1)
        del scores
        drop = dropped_mask(probs.shape, p, probs.device)
        scale = 1.0 / (1.0 - quantized(p))
        out = torch.matmul(probs.masked_fill(drop, 0.0), v).mul_(scale)  # [B, N, S, D]
        ctx.save_for_backward(q, k, v, probs, drop)
        ctx.scales = (scale_qk, scale)  # type: ignore[attr-defined]
        return out

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, None, None]:
        q, k, v, probs, drop = ctx.saved_tensors  # type: ignore[attr-defined]
        scale_qk, scale = ctx.scales  # type: ignore[attr-defined]
        grad = grad * scale
        grad_v = torch.matmul(probs.masked_fill(drop, 0.0).transpose(-1, -2), grad)
        grad_probs = torch.matmul(grad, v.transpose(-1, -2)).masked_fill_(drop, 0.0)
        grad_scores = torch._softmax_backward_data(grad_probs, probs, -1, probs.dtype)
        grad_scores.mul_(scale_qk)
        return (torch.matmul(grad_scores, k), torch.matmul(grad_scores.transpose(-1, -2), q),
                grad_v, None, None)


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``F.dropout``; on a CPU through ``_MaskDropout`` (drop probability ``quantized(p)``)."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or quantized(p) >= 1.0 or _tracing():
        return F.dropout(x, p, training=True)
    return _MaskDropout.apply(x, p)


class Dropout(nn.Dropout):
    """``nn.Dropout`` through ``dropout`` above (the faster CPU kernel)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)
