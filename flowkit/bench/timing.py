"""The one wall-clock timer of flowkit's benchmarks: it waits for queued device work.

CUDA kernels run asynchronously: reading the clock right after a call on CUDA
tensors measures how long it took to *queue* the work, not to do it. Every
timing in ``flowkit.bench`` and ``benchmarks/`` therefore goes through
:func:`stopwatch` (or :func:`median_time`), which synchronizes every CUDA
device among the things it is given (tensors, modules, devices) before
starting and before stopping the clock. On the CPU (or any other device with
synchronous execution) it synchronizes nothing, so the same code times any
device.

Example:
    >>> model, x = torch.nn.Linear(2, 1), torch.randn(4, 2)
    >>> with stopwatch(x, model) as clock:
    ...     loss = model(x).square().mean()
    ...     loss.backward()
    >>> clock.seconds >= 0.0
    True
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["Elapsed", "Involved", "cuda_devices", "median_time", "stopwatch", "synchronize"]

Involved = Tensor | nn.Module | torch.device | str | Iterable["Involved"] | None
"""What a timing may involve: tensors, modules (their parameters and buffers),
devices or device strings, nested sequences of those; ``None`` is ignored."""


def cuda_devices(*involved: Involved) -> set[torch.device]:
    """The CUDA devices among ``involved`` (empty when everything is on the CPU).

    Raises:
        TypeError: for something that is neither a tensor, a module, a device,
            a device string, a sequence of those, nor ``None``.
    """
    found: set[torch.device] = set()
    for item in involved:
        if item is None:
            continue
        if isinstance(item, Tensor):
            devices: Iterable[torch.device] = (item.device,)
        elif isinstance(item, nn.Module):
            devices = {t.device for t in (*item.parameters(), *item.buffers())}
        elif isinstance(item, (torch.device, str)):
            devices = (torch.device(item),)
        elif isinstance(item, (list, tuple, set, frozenset)):
            found |= cuda_devices(*item)
            continue
        else:
            raise TypeError(
                f"cannot tell the device of a {type(item).__name__}; pass the tensors, "
                "modules or devices (e.g. 'cuda:0') the timed code works on."
            )
        found |= {d for d in devices if d.type == "cuda"}
    return found


def synchronize(*involved: Involved) -> None:
    """Wait until the queued work of every CUDA device among ``involved`` is done.

    A no-op when none is on CUDA, so callers need not know the device.
    """
    for device in sorted(cuda_devices(*involved), key=str):
        torch.cuda.synchronize(device)


@dataclass
class Elapsed:
    """The wall time measured by :func:`stopwatch`, set when its block ends."""

    seconds: float = float("nan")


@contextmanager
def stopwatch(*involved: Involved) -> Iterator[Elapsed]:
    """Time the block, including the device work it queues on ``involved``'s devices.

    Synchronizes the CUDA devices among ``involved`` before starting the clock
    (earlier work is not charged to the block) and before reading it (the
    block's own work is). The result is in ``.seconds`` of the yielded
    :class:`Elapsed` once the block has ended; a block that raises is not timed.
    """
    elapsed = Elapsed()
    synchronize(*involved)
    start = time.perf_counter()
    yield elapsed
    synchronize(*involved)
    elapsed.seconds = time.perf_counter() - start


def median_time(fn: Callable[[], object], *involved: Involved, repeats: int = 30) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls, after one unmeasured call.

    Each call is timed with :func:`stopwatch` on ``involved``.

    Raises:
        ValueError: when ``repeats`` is below 1.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}.")
    fn()
    times = []
    for _ in range(repeats):
        with stopwatch(*involved) as clock:
            fn()
        times.append(clock.seconds)
    return statistics.median(times)
