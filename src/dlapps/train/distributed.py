"""Data-parallel training across processes started by ``torchrun`` (DistributedDataParallel).

Each rank keeps its own shard of the device-resident data and a per-rank batch of ``batch_size // world``,
so the global batch, and the optimisation, match a single process. Outside ``torchrun`` everything here is
a no-op: rank 0 of a world of one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from dlapps.models.layout import fast_layout


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def current_world() -> World:
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return World()


def init_from_env(device: torch.device) -> tuple[World, torch.device]:
    """Join the process group ``torchrun`` describes (NCCL on CUDA, gloo on the CPU); pick this rank's GPU."""
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) == 1:
        return World(), device
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    world = current_world()
    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    return world, device


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks (in place); identity in a single process."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``model`` when in a process group of more than one rank (its layout set
    first: DDP's gradient buckets follow the parameters' strides)."""
    if current_world().size == 1:
        return model
    fast_layout(model, device)
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
