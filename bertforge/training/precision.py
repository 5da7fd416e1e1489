"""The training precision a run asked for, with ``auto`` resolved for its device.

``auto`` (the default of ``bertforge pretrain`` and ``bertforge finetune``) is bf16
autocast on a CUDA device that has bf16 arithmetic (Ampere and later) and fp32
everywhere else, the CPU included: there bf16 is emulated on most processors (a
``tiny`` pre-training step ran 20x slower in bf16 than in fp32 on a Zen 3 core). Under
bf16 the training loops also keep the residual stream in bf16 (``bf16_norms``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def resolve_precision(name: str, device: str | torch.device) -> str:
    """``name`` itself, or for ``auto`` bf16 on a bf16-capable CUDA device, else fp32."""
    if name != "auto":
        return name
    if torch.device(device).type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


class Bf16LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` that keeps bf16 autocast's dtype: under bf16 autocast its input,
    output and saved activations are bf16 (the kernel still accumulates the mean and
    variance in fp32); elsewhere it is ``nn.LayerNorm``, bit for bit.

    Autocast's own rule on CUDA runs layer_norm in fp32 and returns fp32, which makes the
    whole residual stream between the norms fp32: twice the bytes in every residual add,
    norm and dropout, forward and backward, and a cast to bf16 before each of a layer's
    four input projections (three of them re-casting the same tensor). This is the
    residual stream in bf16 that Megatron-LM and NVIDIA's BERT keep.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        device = x.device.type
        if not (torch.is_autocast_enabled(device)
                and torch.get_autocast_dtype(device) == torch.bfloat16):
            return super().forward(x)
        low = torch.bfloat16
        with torch.autocast(device, enabled=False):
            return F.layer_norm(x.to(low), self.normalized_shape, self.weight.to(low),
                                self.bias.to(low), self.eps)


def bf16_norms(model: nn.Module, enabled: bool = True) -> int:
    """Make every LayerNorm of ``model`` a :class:`Bf16LayerNorm` (``enabled``) or a plain
    ``nn.LayerNorm`` again, in place: the same parameters, names and checkpoints; only the
    dtype handed on under bf16 autocast changes. Training and ``bench`` apply it for bf16
    (precision is applied from outside the model). Returns how many norms it set."""
    old, new = (nn.LayerNorm, Bf16LayerNorm) if enabled else (Bf16LayerNorm, nn.LayerNorm)
    norms = [m for m in model.modules() if type(m) is old or type(m) is new]
    for m in norms:
        m.__class__ = new  # a subclass adding only forward: nothing else to convert
    return len(norms)
