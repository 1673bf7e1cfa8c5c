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

from xreal_bench.errors import UserFacingError

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


def mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def device_problem(requested: str, info: DistInfo) -> str | None:
    """Why ``run.device = requested`` cannot be used by this rank, or ``None`` (``auto`` and ``cpu`` always can)."""
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            built = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "built without CUDA"
            return (
                f"run.device = {requested!r} but no CUDA GPU is available (torch {torch.__version__}, {built}); "
                "set run.device = 'auto' or 'cpu', or run on a machine with a GPU"
            )
        suffix = requested.partition(":")[2]
        if suffix and not suffix.isdigit():
            return f"run.device = {requested!r} is not a device; expected cuda or cuda:N"
        count = torch.cuda.device_count()
        index = int(suffix or (info.local_rank if info.world > 1 else 0))
        if index >= count:
            return f"run.device = {requested!r} asks for GPU {index} (rank {info.rank}) but only {count} GPU(s) are visible"
    if requested == "mps" and not mps_available():
        return "run.device = 'mps' but MPS (Apple GPU) is not available; set run.device = 'auto' or 'cpu'"
    return None


def resolve_device(requested: str, info: DistInfo) -> str:
    """``auto`` → this rank's GPU if CUDA is available, else MPS, else CPU; an explicit device
    that cannot be used is a :class:`UserFacingError` (:func:`device_problem`)."""
    if requested != "auto":
        if (problem := device_problem(requested, info)) is not None:
            raise UserFacingError(problem)
        if requested == "cuda" and info.world > 1:
            return f"cuda:{info.local_rank}"
        return requested
    if torch.cuda.is_available():
        return f"cuda:{info.local_rank}"
    if mps_available():
        return "mps"
    return "cpu"
