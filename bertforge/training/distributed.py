"""Process groups for ``torchrun``: set up from the environment, small collective helpers,
and FSDP (``shard_model``) with full, unsharded state dicts for checkpoints.

A single process (no ``WORLD_SIZE`` in the environment) needs no process group; every
helper then works locally, so the training loop has one code path.

FSDP2 (``torch.distributed.fsdp.fully_shard``) keeps 1/W of every weight, gradient and
optimiser moment on each of W processes and all-gathers one encoder layer at a time for
its forward and backward, so a model that does not fit one device trains on W of them.
It works on CUDA (NCCL) and on the CPU (gloo). Its parameters are ``DTensor`` shards:
checkpoints gather them back into full tensors (``full_model_state``,
``full_optimizer_state``) so that a checkpoint written by FSDP is the same Hugging
Face-shaped directory as one written by DDP or by one process.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


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


def broadcast_value(value: float, info: DistInfo) -> float:
    """Rank 0's ``value`` on every process (e.g. the share of the time budget used)."""
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.broadcast(t, src=0)
    return float(t.item())


# ------------------------------------------------------------------ FSDP
def shard_model(model: nn.Module, blocks: Iterable[nn.Module], info: DistInfo) -> nn.Module:
    """FSDP2: ``fully_shard`` each of ``blocks`` (the encoder layers), then ``model`` itself
    (embeddings, pooler and heads: the root group). Works in place (``model`` keeps its
    class's methods and parameter names; its parameters become ``DTensor`` shards on
    ``info.device``) and returns ``model``. Build the optimiser afterwards."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    # FSDP2 warns when a wrapped module returns a view (F.linear on [B, P, H] does): an
    # in-place op on it would skip a gradient hook. The training loop never writes into
    # model outputs, so the warning (once per process and module) says nothing useful.
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view")
    mesh = init_device_mesh(torch.device(info.device).type, (info.world_size,))
    for block in blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def is_sharded(model: nn.Module) -> bool:
    """True for a model that ``shard_model`` (``fully_shard``) has sharded."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def local_value(value: torch.Tensor) -> torch.Tensor:
    """A plain tensor for ``value``: the full tensor of a ``DTensor`` (e.g. the global
    gradient norm that ``clip_grad_norm_`` returns for sharded gradients), else itself."""
    full = getattr(value, "full_tensor", None)
    return full() if full is not None else value


def _full_options() -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def full_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The sharded ``model``'s weights as full CPU tensors under its usual parameter
    names, on rank 0 (``{}`` on the others). Collective: every process must call it."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(model, options=_full_options())


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimiser state of a sharded ``model``, full CPU tensors keyed by parameter
    name (``{"state": {name: {...}}, "param_groups": [{"params": [name, ...], ...}]}``),
    on rank 0 (``{}`` on the others). Collective: every process must call it."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=_full_options())


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer,
                         saved: dict[str, Any]) -> None:
    """Load a full optimiser state into ``optimizer`` (over ``model``, sharded or not),
    whichever form it was saved in: torch's own (parameters numbered in the order of
    ``optimizer.param_groups``: DDP and single-process runs) or keyed by parameter name
    (FSDP runs). A sharded model keeps its own shard of every moment."""
    order = _param_names(model, optimizer)
    if not is_sharded(model):
        optimizer.load_state_dict(_renumber(saved, {n: i for i, n in enumerate(order)}))
        return
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_optimizer_state_dict,
    )

    # not strict: parameters that never had a gradient (the pooler and NSP head of
    # objectives without NSP) have no saved state, and need none
    set_optimizer_state_dict(model, optimizer, _renumber(saved, dict(enumerate(order))),
                             options=StateDictOptions(full_state_dict=True, strict=False))


def _param_names(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """The parameter names of ``optimizer``, in the order torch numbers them."""
    name_of = {id(p): n for n, p in model.named_parameters()}
    return [name_of[id(p)] for g in optimizer.param_groups for p in g["params"]]


def _renumber(saved: dict[str, Any], key_map: dict[Any, Any]) -> dict[str, Any]:
    """``saved`` with its parameter keys mapped through ``key_map`` (index -> name or
    name -> index); keys that are already of the target kind stay as they are."""
    def key(k: Any) -> Any:
        return key_map.get(k, k)

    return {"state": {key(k): v for k, v in saved["state"].items()},
            "param_groups": [{**g, "params": [key(k) for k in g["params"]]}
                             for g in saved["param_groups"]]}
