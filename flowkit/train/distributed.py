"""Multi-process training with ``torch.distributed``: launching, and the rank's context.

:func:`launch` starts ``nproc`` local processes with :func:`torch.multiprocessing.spawn`
(gloo on CPU, NCCL on CUDA, one GPU per process); a run started by ``torchrun``
is recognised from its environment instead (:func:`init_from_env`). Each process
trains a :class:`~torch.nn.parallel.DistributedDataParallel` replica on its equal
share of the global batch, so the averaged gradient equals the single-process
gradient of the same global batch.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from flowkit.errors import FlowkitError
from flowkit.train.config import ConfigError

__all__ = [
    "DistContext",
    "WorkerError",
    "default_backend",
    "free_port",
    "init_from_env",
    "launch",
]


@dataclass(frozen=True)
class DistContext:
    """This process's place in the group: ``rank`` of ``world_size`` (1 when not distributed)."""

    rank: int = 0
    world_size: int = 1

    @property
    def distributed(self) -> bool:
        """Whether more than one process trains together."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this process writes logs, checkpoints and plots."""
        return self.rank == 0


def default_backend(device: str | torch.device) -> str:
    """``"nccl"`` for CUDA devices, ``"gloo"`` otherwise."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def free_port() -> int:
    """A free TCP port on localhost for the rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _entry(
    rank: int,
    fn: Callable[..., Any],
    world_size: int,
    port: int,
    backend: str,
    args: tuple[Any, ...],
) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    if backend == "nccl":
        torch.cuda.set_device(rank % torch.cuda.device_count())
    dist.init_process_group(backend, rank=rank, world_size=world_size)
    try:
        fn(DistContext(rank, world_size), *args)
    finally:
        dist.destroy_process_group()


def launch(
    fn: Callable[..., Any],
    nproc: int,
    args: tuple[Any, ...] = (),
    *,
    backend: str = "gloo",
    start_method: str = "spawn",
) -> None:
    """Run ``fn(DistContext(rank, nproc), *args)`` in ``nproc`` new local processes.

    ``fn`` and ``args`` must be picklable (a module-level function). The call
    returns when every process has finished.

    Arguments:
        fn: the per-process function.
        nproc: the number of processes (at least 2).
        args: further arguments to ``fn``.
        backend: ``"gloo"`` (CPU) or ``"nccl"`` (one CUDA device per process).
        start_method: ``"spawn"`` (safe everywhere) or ``"fork"`` (POSIX, CPU only;
            much faster to start since the children inherit the imported modules).

    Raises:
        ValueError: for fewer than two processes.
        ConfigError: NCCL with fewer GPUs than processes (a ValueError too).
        WorkerError: when a process raised a FlowkitError (a user error), with its message.
        torch.multiprocessing.ProcessRaisedException: when a process raised another error.
    """
    if nproc < 2:
        raise ValueError(f"launch() needs at least 2 processes, got {nproc}.")
    if backend == "nccl" and torch.cuda.device_count() < nproc:
        raise ConfigError(
            f"NCCL needs one GPU per process: {nproc} processes but "
            f"{torch.cuda.device_count()} GPU(s); lower --nproc or use --device cpu (gloo)."
        )
    if start_method == "fork" and backend == "nccl":
        raise ValueError("CUDA cannot be used in forked processes; use start_method='spawn'.")
    spawn_log = logging.getLogger("torch.multiprocessing.spawn")
    quiet = _DropTermination()
    spawn_log.addFilter(quiet)  # the siblings of a failed process are stopped: not news
    try:
        mp.start_processes(
            _entry,
            args=(fn, nproc, free_port(), backend, args),
            nprocs=nproc,
            join=True,
            start_method=start_method,
        )
    except mp.ProcessRaisedException as exc:
        user_error = _user_error_of(exc)
        if user_error is None:
            raise
        raise user_error from exc
    finally:
        spawn_log.removeFilter(quiet)


class _DropTermination(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Terminating process")


class WorkerError(FlowkitError):
    """A user error (a :class:`~flowkit.errors.FlowkitError`) raised in a worker process."""


def _user_error_of(exc: mp.ProcessRaisedException) -> WorkerError | None:
    """The worker's FlowkitError as a :class:`WorkerError`, or ``None`` for another error.

    Only the child's traceback text crosses the process boundary; its last line
    is ``module.Class: message``.
    """
    lines = [line for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return None
    head, sep, message = lines[-1].partition(": ")
    module_name, _, class_name = head.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError):
        return None
    if not (sep and isinstance(cls, type) and issubclass(cls, FlowkitError)):
        return None
    return WorkerError(f"{message} (in worker process {exc.error_index})")


def init_from_env(device: str | torch.device) -> DistContext:
    """Join the process group that ``torchrun`` describes in the environment, if any.

    Returns:
        The context; ``DistContext()`` when ``WORLD_SIZE`` is unset or 1.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    if not dist.is_initialized():
        backend = default_backend(device)
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return DistContext(dist.get_rank(), dist.get_world_size())
