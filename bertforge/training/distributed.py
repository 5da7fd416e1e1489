"""Process groups for ``torchrun``: set up from the environment, small collective helpers.

A single process (no ``WORLD_SIZE`` in the environment) needs no process group; every
helper then works locally, so the training loop has one code path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``, ``local_rank`` on its host."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"  # where collective tensors live (NCCL needs CUDA tensors)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group that ``torchrun`` describes (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``): NCCL on CUDA, gloo on the CPU. A plain process gets ``DistInfo()``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = f"cuda:{local}" if device_type == "cuda" else "cpu"
    info = DistInfo(int(os.environ["RANK"]), world, local, device)
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend)
    return info


def shutdown(info: DistInfo) -> None:
    """Leave the process group (if one was joined)."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum ``values`` over all processes (a copy; the input is left alone)."""
    if not info.enabled:
        return values.clone()
    out = values.detach().to(info.device, copy=True)
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out.to(values.device)


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every process's ``obj`` (small, picklable: RNG states), in rank order, on all ranks."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def broadcast_flag(flag: bool, info: DistInfo) -> bool:
    """Rank 0's ``flag`` on every process (e.g. "time is up", so all stop together)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int64, device=info.device)
    dist.broadcast(t, src=0)
    return bool(t.item())
