"""The ``memory`` suite: how does a training step's peak memory grow with solver steps?

Work: one training step (``-mean log p`` forward and backward) of a CNF on
the ``mlp`` field (3 x 64, tanh, d = 2) at batch 256, with each selected
fixed-step integrator at 8, 16 and 32 steps, per gradient strategy. Every
configuration runs in a fresh process of its own, so peaks do not mix.

Before the measured step, one identical step runs unmeasured (lazy
initialisation of autograd and the allocator is not the strategy's cost) and
freed memory is returned to the system (``malloc_trim``). Peak memory: on
CUDA, ``torch.cuda.max_memory_allocated`` above the memory in
use before the step; on CPU, the peak resident set size above the resident
size before the step (Linux resets the peak through ``/proc/self/clear_refs``;
elsewhere ``ru_maxrss`` is used, which can only underestimate growth).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import resource
from pathlib import Path
from typing import ClassVar

import torch

from flowkit.bench.selection import select_combinations
from flowkit.bench.subjects import integrator_options
from flowkit.bench.suites.base import Plan, PlanContext, Suite
from flowkit.bench.suites.common import DTYPES, combination_params, seed_everything
from flowkit.bench.tasks import Metric, Task
from flowkit.bench.timing import stopwatch, synchronize
from flowkit.registry import get_registry

__all__ = ["MemorySuite", "PeakMemory"]

_MIB = 2**20


def _release_freed_memory() -> None:
    """Return freed heap memory to the system where glibc allows (no-op elsewhere)."""
    gc.collect()
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        ctypes.CDLL(name).malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak memory (bytes) above the level at :meth:`start`, on ``device``."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.base = 0

    @staticmethod
    def _status(field: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise OSError(f"{field} not in /proc/self/status")

    def start(self) -> None:
        """Reset the peak and record the current level."""
        if self.device.startswith("cuda"):
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            return
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.base = self._status("VmRSS")
            self.peak = lambda: self._status("VmHWM")
        except OSError:
            self.base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            self.peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def growth(self) -> int:
        """Bytes of peak above the level at :meth:`start`."""
        if self.device.startswith("cuda"):
            synchronize(self.device)
            return int(torch.cuda.max_memory_allocated(self.device) - self.base)
        return max(int(self.peak() - self.base), 0)


class MemorySuite(Suite):
    """Peak memory against solver steps, per gradient strategy (see the module docstring)."""

    name: ClassVar[str] = "memory"
    question: ClassVar[str] = (
        "How does the peak memory of one training step grow with the number of solver steps, "
        "for each gradient strategy?"
    )
    metrics: ClassVar[tuple[Metric, ...]] = (
        Metric("peak_mib", "MiB", "lower", "peak memory"),
        Metric("step_time", "s", "lower", "train step"),
        Metric("nfe", "", None, "nfe fwd"),
        Metric("nfe_backward", "", None, "nfe bwd"),
    )

    def plan(self, ctx: PlanContext) -> Plan:
        """Each gradient strategy x fixed-step integrator x step count, isolated."""
        registry = ctx.registry
        fixed = [s.name for s in registry.specs("integrator") if not s.capabilities["adaptive"]]
        picked = select_combinations(
            registry,
            ctx.selection,
            {
                "vector_field": ("mlp",),
                "integrator": ("rk4",),
                "trace_estimator": ("exact",),
                "gradient_strategy": ("*",),
            },
            restrict={"integrator": fixed},
        )
        plan = Plan(excluded=list(picked.excluded))
        steps_list = (4, 16) if ctx.quick else (8, 16, 32)
        batch = 128 if ctx.quick else 256
        for combo in picked.combinations:
            for steps in steps_list:
                params = {
                    **combination_params(combo),
                    "steps": steps,
                    "batch": batch,
                    "dim": 2,
                    "dtype": ctx.dtype,
                    "device": ctx.device,
                    "line": f"{combo.gradient.name} ({combo.integrator.name}, {combo.trace.name})",
                    "section": f"{combo.field.name}, batch {batch}",
                    "label": f"{combo.id} ({steps} steps)",
                }
                key = f"memory/{combo.id}/{steps}steps"
                plan.tasks.append(
                    Task(self.name, key, "flowkit", params, isolate=True, max_repeats=1)
                )
        plan.notes.append(
            "memory: each configuration runs once, in a fresh process; CPU peaks are "
            "resident-set growth, which includes allocator slack"
        )
        return plan

    def run(self, task: Task, seed: int) -> dict[str, float | list[list[float]]]:
        """One training step, its peak memory above the level before it."""
        from flowkit.cnf import CNF

        p = task.params
        seed_everything(seed)
        dtype, device = DTYPES[p["dtype"]], p["device"]
        registry = get_registry()  # the task's entry point, in its own process
        field = registry.create("vector_field", p["field"], dim=p["dim"]).to(device, dtype)
        cnf = CNF(
            field,
            integrator=p["integrator"],
            trace=p["trace"],
            gradient=p["gradient"],
            dim=p["dim"],
            integrator_options=integrator_options(
                registry, p["integrator"], rtol=1e-5, atol=1e-5, steps=p["steps"]
            ),
            registry=registry,
        )
        x = torch.randn(p["batch"], p["dim"], dtype=dtype, device=device)
        (-cnf.log_prob(x).mean()).backward()  # warm-up, unmeasured
        cnf.zero_grad(set_to_none=True)
        _release_freed_memory()
        meter = PeakMemory(device)
        meter.start()
        with stopwatch(x) as clock:
            (-cnf.log_prob(x).mean()).backward()
        return {
            "peak_mib": meter.growth() / _MIB,
            "step_time": clock.seconds,
            "nfe": cnf.last_stats.nfe,
            "nfe_backward": cnf.last_stats.backward_nfe,
        }
