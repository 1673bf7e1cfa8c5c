"""torch.distributed glue for ``torchrun`` jobs (one process per GPU, one or many nodes).

Outside torchrun (no ``WORLD_SIZE`` in the environment) everything is a single process and
the collectives are no-ops. Work is sharded by position in a deterministic list, so any
world size produces the same image set.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> DistInfo:
    """Join the process group torchrun describes (nccl with CUDA, else gloo); idempotent."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank)


def shutdown() -> None:
    """Leave the process group before exit: an undestroyed gloo group can abort the
    interpreter at shutdown ("terminate called without an active exception")."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if active():
        dist.barrier()


def shard(items: Sequence[T], info: DistInfo) -> list[T]:
    """This rank's share of ``items``: every ``world``-th item starting at ``rank``."""
    return list(items[info.rank :: info.world])


def gather_objects(obj) -> list:
    """Every rank's ``obj`` in rank order (a one-element list in a single process)."""
    if not active():
        return [obj]
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def resolve_device(requested: str, info: DistInfo) -> str:
    """``auto`` → this rank's GPU if CUDA is available, else MPS, else CPU."""
    if requested != "auto":
        if requested == "cuda" and info.world > 1:
            return f"cuda:{info.local_rank}"
        return requested
    if torch.cuda.is_available():
        return f"cuda:{info.local_rank}"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"
