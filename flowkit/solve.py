"""The one solve path that every entry point (``odeint``, the CNF, benchmarks) uses.

:func:`solve` validates the state and the times, resolves the integrator and
the gradient strategy (by registered name or instance), asks the one
compatibility function, and hands the work to the strategy.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from flowkit.compat import ensure_compatible
from flowkit.interfaces import GradientStrategy, Integrator
from flowkit.registry import Registry, get_registry
from flowkit.solution import Solution
from flowkit.state import Dynamics, State, as_tuple, check_state

__all__ = ["solve", "check_times", "resolve_solver"]


def check_times(t: object, y0: State) -> Tensor:
    """Validate the output times: a 1-D floating tensor, strictly monotone, finite.

    Python sequences are converted to a tensor of ``y0``'s dtype and device.

    Raises:
        TypeError: for a non-tensor that cannot be converted.
        ValueError: for fewer than two times, repeated or unsorted times, NaN/Inf.
    """
    leaf = as_tuple(y0)[0]
    if not isinstance(t, Tensor):
        try:
            t = torch.as_tensor(t, dtype=leaf.dtype, device=leaf.device)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"t must be a 1-D tensor of times, got {type(t).__name__}.") from exc
    if t.dim() != 1 or t.numel() < 2:
        raise ValueError(
            f"t must be a 1-D tensor of at least two times [t0, ..., t1], got shape "
            f"{tuple(t.shape)}; for a single end time pass torch.tensor([t0, t1])."
        )
    if not t.is_floating_point():
        t = t.to(leaf.dtype)
    times = t.tolist()  # one device sync; the checks below are on Python floats
    if not all(math.isfinite(v) for v in times):
        raise ValueError(f"t contains NaN or Inf: {times}.")
    steps = [b - a for a, b in itertools.pairwise(times)]
    if not (all(d > 0 for d in steps) or all(d < 0 for d in steps)):
        raise ValueError(
            f"t must be strictly increasing or strictly decreasing, got {times}; "
            "repeated times are not allowed."
        )
    if t.device != leaf.device:
        raise ValueError(
            f"t is on {t.device} but the state is on {leaf.device}; move both to one device."
        )
    return t


def resolve_solver(
    integrator: str | Integrator,
    gradient: str | GradientStrategy = "backprop",
    *,
    integrator_options: dict[str, Any] | None = None,
    gradient_options: dict[str, Any] | None = None,
    registry: Registry | None = None,
) -> tuple[Integrator, GradientStrategy]:
    """Build (or accept) an integrator and a gradient strategy, checking they fit.

    Raises:
        UnknownComponentError, TypeError: for unknown names or options.
        IncompatibleComponentsError: when the strategy needs a capability the
            integrator lacks.
    """
    registry = registry or get_registry()
    solver = registry.resolve("integrator", integrator, integrator_options)
    strategy = registry.resolve("gradient_strategy", gradient, gradient_options)
    ensure_compatible(integrator=solver, gradient=strategy)
    return solver, strategy


def solve(
    func: Dynamics,
    y0: State,
    t: Tensor | Sequence[float],
    *,
    integrator: str | Integrator = "dopri5",
    gradient: str | GradientStrategy = "backprop",
    params: Sequence[Tensor] | None = None,
    integrator_options: dict[str, Any] | None = None,
    gradient_options: dict[str, Any] | None = None,
    registry: Registry | None = None,
) -> Solution:
    """Solve ``dy/dt = func(t, y)`` from ``t[0]`` through the times ``t``.

    Arguments:
        func: the right-hand side ``func(t, y)``.
        y0: the initial state, a tensor or a tuple of tensors.
        t: 1-D times, strictly increasing or decreasing.
        integrator: a registered integrator name or an instance.
        gradient: a registered gradient-strategy name or an instance.
        params: tensors ``func`` depends on that need gradients (default: the
            parameters of ``func`` when it is an ``nn.Module``).
        integrator_options, gradient_options: options for components given by name.
        registry: the registry to resolve names in (default: the global one).

    Returns:
        The :class:`~flowkit.solution.Solution`: states at ``t`` and statistics.
    """
    y0 = check_state(y0)
    t = check_times(t, y0)
    solver, strategy = resolve_solver(
        integrator,
        gradient,
        integrator_options=integrator_options,
        gradient_options=gradient_options,
        registry=registry,
    )
    return strategy.solve(solver, func, y0, t, params=params)
