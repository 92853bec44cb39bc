"""Where the time of one evaluation goes at FFJORD's toy size (part (c) of ``divergence.py``).

Question: for one evaluation of a ``concatsquash`` field (64-64-64, tanh)
with its divergence and the backward pass a training step takes through it,
how much is arithmetic and how much per-operation overhead? Timed, one
thread, batch 100 (FFJORD's toy batch), interleaved:

* ``fused``: value and divergence by the fused pass, forward and backward;
* ``fused_tiny``: the same pass on a 4-wide field and one sample, where the
  arithmetic is negligible: what remains is the overhead of its operations;
* ``value_only``: the field's value alone, forward and backward through
  autograd (no divergence at all);
* ``exact``: the value and its exact trace by the ``exact`` estimator
  (two vector-Jacobian products at d = 2, and their second-order graph).

A training step with ``analytic`` is 2x faster than with ``exact`` only if
``fused`` plus the solver's share costs half of ``exact`` plus that share.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from flowkit.plugins.trace_estimators import ExactTrace
from flowkit.plugins.vector_fields import ConcatSquashField
from torch import Tensor

__all__ = ["evaluation_costs"]


def _calls(width: int, batch: int, seed: int) -> dict[str, Callable[[], None]]:
    torch.manual_seed(seed)
    field = ConcatSquashField(dim=2, hidden=(width, width, width))
    x0, t = torch.randn(batch, 2), torch.tensor(0.3)
    params = list(field.parameters())

    def backward(*outputs: Tensor, x: Tensor) -> None:
        torch.autograd.grad(sum(o.sum() for o in outputs), [x, *params])

    def fused() -> None:
        x = x0.clone().requires_grad_(True)
        backward(*field.value_and_divergence(t, x), x=x)

    def value_only() -> None:
        x = x0.clone().requires_grad_(True)
        backward(field(t, x), x=x)

    def exact() -> None:
        x = x0.clone().requires_grad_(True)
        backward(*ExactTrace().estimate(field, t, x), x=x)

    return {"fused": fused, "value_only": value_only, "exact": exact}


def evaluation_costs(
    reps: int, seed: int, interleaved: Callable[..., dict[str, Any]]
) -> dict[str, Any]:
    """Median seconds per call of the four contestants (see the module docstring)."""
    calls = _calls(64, 100, seed)
    calls["fused_tiny"] = _calls(4, 1, seed)["fused"]
    timed = interleaved(calls, reps)
    med = timed["median_s"]
    print(
        "one evaluation with its backward pass, batch 100: "
        + ", ".join(f"{name} {1e3 * med[name]:.2f} ms" for name in calls)
        + f"; exact / fused {med['exact'] / med['fused']:.2f}x, "
        f"exact / value_only {med['exact'] / med['value_only']:.2f}x",
        flush=True,
    )
    return timed
