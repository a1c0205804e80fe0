"""DistributedDataParallel set-up for runs launched by ``torchrun`` (NCCL on GPUs, gloo on CPUs)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Rank, world size and local rank of this process (1 process: 0, 1, 0)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """True under ``torchrun`` with more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0 (which writes logs and checkpoints)."""
        return self.rank == 0


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group ``torchrun`` describes in the environment (no-op otherwise)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return info


def barrier(info: DistInfo) -> None:
    """Wait for all processes (no-op without DDP)."""
    if info.enabled and dist.is_initialized():
        dist.barrier()


def broadcast_flag(flag: bool, info: DistInfo, device: torch.device | str = "cpu") -> bool:
    """Rank 0's ``flag`` on every process (``device``: CUDA under NCCL)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int64, device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def shutdown(info: DistInfo) -> None:
    """Leave the process group."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
