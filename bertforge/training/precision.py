"""The training precision a run asked for, with ``auto`` resolved for its device.

``auto`` (the default of ``bertforge pretrain`` and ``bertforge finetune``) is bf16
autocast on a CUDA device that has bf16 arithmetic (Ampere and later) and fp32
everywhere else, the CPU included: there bf16 is emulated on most processors (a
``tiny`` pre-training step ran 20x slower in bf16 than in fp32 on a Zen 3 core).
"""

from __future__ import annotations

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def resolve_precision(name: str, device: str | torch.device) -> str:
    """``name`` itself, or for ``auto`` bf16 on a bf16-capable CUDA device, else fp32."""
    if name != "auto":
        return name
    if torch.device(device).type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"
