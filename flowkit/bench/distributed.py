"""Running a benchmark across ``torchrun`` processes (torch.distributed, gloo).

Under ``torchrun`` every rank plans the same task list (planning is
deterministic), runs its share ``tasks[rank::world_size]``, and rank 0 gathers
every rank's records into one report. Outside ``torchrun`` nothing changes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch.distributed as dist

__all__ = ["DistContext", "finalize", "gather_to_rank0", "init_distributed", "shard"]

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """This process's place in a distributed run (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        """Whether this process writes the report."""
        return self.rank == 0


def init_distributed(backend: str = "gloo") -> DistContext:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE > 1``).

    ``gloo`` works on CPUs and across machines; ``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR`` and ``MASTER_PORT`` come from the launcher.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    if dist.is_available() and dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(), False)
    dist.init_process_group(backend=backend)
    return DistContext(dist.get_rank(), dist.get_world_size(), True)


def shard(items: Sequence[T], ctx: DistContext) -> list[T]:
    """This rank's share: every ``world_size``-th item starting at ``rank``."""
    return list(items[ctx.rank :: ctx.world_size])


def gather_to_rank0(obj: T, ctx: DistContext) -> list[T] | None:
    """Every rank's ``obj`` on rank 0 (``None`` on the other ranks)."""
    if ctx.world_size <= 1:
        return [obj]
    gathered: list[T] | None = [None] * ctx.world_size if ctx.is_main else None  # type: ignore[list-item]
    dist.gather_object(obj, gathered, dst=0)
    return gathered


def finalize(ctx: DistContext) -> None:
    """Leave the process group if this module joined it."""
    if ctx.initialized_here and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
