"""The one solve path that every entry point (``odeint``, the CNF, benchmarks) uses.

:func:`solve` validates the state and the times, resolves the integrator and
the gradient strategy (by registered name or instance), asks the one
compatibility function, hands the work to the strategy, and checks what came
back against the integrator contract (:func:`check_solution`): one state per
requested time, the state's structure, shape, dtype and device, finite values.
A plugin that breaks it raises :class:`~flowkit.errors.PluginContractError`
naming the plugin and the broken clause, instead of giving silently wrong
results.

Gradients with respect to the times ``t`` are given here, for every
integrator and gradient strategy alike, from the continuous-time
sensitivities ``dL/dt_i = g_i . f(t_i, y(t_i))`` (``g_i = dL/dy(t_i)``) and
``dL/dt_0 = -a(t_0) . f(t_0, y_0)`` (``a(t_0)`` the gradient reaching
``y_0`` through the solve, without ``g_0``), attached by value-preserving terms;
see :func:`solve`.

Half-precision times are refused: float16 cannot hold 0.1 (it stores
0.09998), so a solve would silently stop at the wrong time. Times given as a
Python sequence are built in the state's dtype, but at least float32.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from flowkit.compat import ensure_compatible
from flowkit.errors import PluginContractError
from flowkit.interfaces import GradientStrategy, Integrator
from flowkit.registry import REGISTRY_OPTION, Registry, get_registry
from flowkit.solution import Solution
from flowkit.state import Dynamics, State, all_finite, as_tuple, check_state, like

__all__ = ["check_solution", "check_times", "resolve_solver", "solve"]

_HALF = (torch.float16, torch.bfloat16)


def _time_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype times are built in: the state's, but at least float32."""
    return torch.float32 if dtype in _HALF else dtype


def check_times(t: object, y0: State) -> Tensor:
    """Validate the output times: a 1-D floating tensor, strictly monotone, finite.

    Python sequences are converted to a tensor on ``y0``'s device, in ``y0``'s
    dtype but at least float32 (a half-precision state still gets exact times).

    Raises:
        TypeError: for a non-tensor that cannot be converted, and for
            half-precision (float16, bfloat16) times, which cannot represent
            times such as 0.1 and would silently end the solve elsewhere.
        ValueError: for fewer than two times, repeated or unsorted times, NaN/Inf.
    """
    leaf = as_tuple(y0)[0]
    if not isinstance(t, Tensor):
        try:
            t = torch.as_tensor(t, dtype=_time_dtype(leaf.dtype), device=leaf.device)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"t must be a 1-D tensor of times, got {type(t).__name__}.") from exc
    if t.dim() != 1 or t.numel() < 2:
        raise ValueError(
            f"t must be a 1-D tensor of at least two times [t0, ..., t1], got shape "
            f"{tuple(t.shape)}; for a single end time pass torch.tensor([t0, t1])."
        )
    if t.dtype in _HALF:
        raise TypeError(
            f"t has dtype {t.dtype}, which cannot represent times exactly (0.1 becomes "
            f"{float(torch.tensor(0.1, dtype=t.dtype))}), so the solve would end at the wrong "
            "time; pass the times in float32 or float64, e.g. t.float() (the state may stay "
            "in half precision)."
        )
    if not t.is_floating_point():
        t = t.to(_time_dtype(leaf.dtype))
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


def _holds_names(component: object) -> bool:
    """Whether ``component`` is a name, or an instance waiting for a registry to resolve its own."""
    return isinstance(component, str) or getattr(component, REGISTRY_OPTION, False) is None


def _instance(label: str, component: Any, options: dict[str, Any] | None) -> Any:
    """A component passed as an instance, with no options beside it."""
    if options:
        raise TypeError(
            f"Options {sorted(options)} were given for a {label} passed as an instance; "
            "configure the instance itself, or pass its registered name."
        )
    return component


def resolve_solver(
    integrator: str | Integrator,
    gradient: str | GradientStrategy = "backprop",
    *,
    integrator_options: dict[str, Any] | None = None,
    gradient_options: dict[str, Any] | None = None,
    registry: Registry | None = None,
) -> tuple[Integrator, GradientStrategy]:
    """Build (or accept) an integrator and a gradient strategy, checking they fit.

    Names are resolved in ``registry``. Instances are taken as they are; one
    that resolves names itself and has no registry yet is given ``registry``
    (see :meth:`~flowkit.registry.Registry.resolve`). Only when names are
    given without a registry is the global one used.

    Raises:
        UnknownComponentError, TypeError: for unknown names or options.
        IncompatibleComponentsError: when the strategy needs a capability the
            integrator lacks.
    """
    if registry is None and any(map(_holds_names, (integrator, gradient))):
        registry = get_registry()  # names given here: solve is an entry point
    if registry is None:
        solver = _instance("integrator", integrator, integrator_options)
        strategy = _instance("gradient strategy", gradient, gradient_options)
    else:
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
        registry: the registry to resolve names in (default: the global one,
            built only when a name is given).

    Returns:
        The :class:`~flowkit.solution.Solution`: states at ``t`` and statistics.

    Gradients reach ``y0``, ``params`` and, when ``t`` requires grad, the
    times, whatever the integrator and strategy: the strategy solves with
    detached times, the initial state is fed as ``y0 + (t0.detach() - t0) *
    f(t0, y0).detach()`` and every returned state as ``y_i + (t_i -
    t_i.detach()) * f(t_i, y_i).detach()``. These terms are zero in value, and
    their gradients are the continuous-time sensitivities (exact for the ODE's
    flow; for a discretised solve they agree with backpropagation through the
    solver to its accuracy). The cost is one field evaluation per output time
    after the first, recorded in ``stats.extra["time_gradient_nfe"]``.

    Raises:
        PluginContractError: when the integrator or strategy returns something
            its contract forbids (wrong structure, shape, dtype or device, or
            NaN/Inf without raising), naming the plugin and the clause.
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
    if not (t.requires_grad and torch.is_grad_enabled()):
        solution = strategy.solve(solver, func, y0, t, params=params)
        check_solution(solution, y0, t, integrator=solver, gradient=strategy)
        return solution
    times = t.detach()
    f0 = _derivative(func, times[0], y0)
    y0_in = _attach(y0, t[0] - times[0], f0, sign=-1.0)
    solution = strategy.solve(solver, func, y0_in, times, params=params)
    check_solution(solution, y0, times, integrator=solver, gradient=strategy)
    return _with_time_gradients(func, solution, t, f0)


def _derivative(func: Dynamics, t: Tensor, y: State) -> tuple[Tensor, ...]:
    """``func(t, y)`` on detached values, detached (grad mode on for trace estimators)."""
    with torch.enable_grad():
        out = func(t, like(y, tuple(leaf.detach() for leaf in as_tuple(y))))
    leaves = as_tuple(out)
    if len(leaves) != len(as_tuple(y)):
        raise TypeError(
            f"func(t, y) must return a state like y ({len(as_tuple(y))} leaves), got {len(leaves)}."
        )
    return tuple(leaf.detach() for leaf in leaves)


def _attach(y: State, dt: Tensor, f: tuple[Tensor, ...], *, sign: float) -> State:
    """``y + sign * dt * f`` leaf by leaf; ``dt`` is zero in value, so ``y``'s value is kept."""
    return like(
        y,
        tuple(
            leaf + (sign * dt).to(leaf.dtype) * fk for leaf, fk in zip(as_tuple(y), f, strict=True)
        ),
    )


def _with_time_gradients(
    func: Dynamics, solution: Solution, t: Tensor, f0: tuple[Tensor, ...]
) -> Solution:
    """Attach ``(t_i - t_i.detach()) * f(t_i, y_i)`` to every returned state."""
    leaves = as_tuple(solution.ys)
    n = leaves[0].shape[0]
    derivs = [f0]
    for i in range(1, n):
        derivs.append(
            _derivative(func, t[i].detach(), like(solution.ys, tuple(x[i] for x in leaves)))
        )
    solution.stats.extra["time_gradient_nfe"] = n - 1
    dt = t[:n] - t[:n].detach()
    out = []
    for k, leaf in enumerate(leaves):
        f = torch.stack([d[k] for d in derivs])
        out.append(leaf + dt.to(leaf.dtype).reshape(n, *([1] * (leaf.dim() - 1))) * f)
    return Solution(ts=solution.ts, ys=like(solution.ys, tuple(out)), stats=solution.stats)


def _describe(component: object) -> str:
    name = getattr(component, "registry_name", None)
    cls = type(component).__name__
    return f"{name!r} ({cls})" if name else cls


def check_solution(
    solution: object,
    y0: State,
    t: Tensor,
    *,
    integrator: Integrator,
    gradient: GradientStrategy,
) -> Solution:
    """Check a strategy's result against the integrator contract.

    The contract: a :class:`~flowkit.solution.Solution` whose states have
    ``y0``'s structure (a tensor, or a tuple with as many leaves), one state
    per requested time stacked along a new first axis (``(len(t), *leaf.shape)``;
    fewer only for a partial solution with ``stats.status ==
    "max_steps_reached"``), ``y0``'s dtype and device, and finite values (an
    integrator meeting NaN or Inf must raise
    :class:`~flowkit.errors.NonFiniteStateError`).

    Returns:
        ``solution``, unchanged.

    Raises:
        PluginContractError: naming the integrator, the gradient strategy and
            the broken clause.
    """

    def broken(contract: str, got: str) -> PluginContractError:
        who = f"Integrator {_describe(integrator)} (run by gradient strategy {_describe(gradient)})"
        component = getattr(integrator, "registry_name", None) or type(integrator).__name__
        return PluginContractError(
            f"{who} broke the integrator contract: {contract}; got {got}. This is a bug in "
            "that plugin: report it to its authors, or choose another integrator.",
            component=component,
            contract=contract,
        )

    if not isinstance(solution, Solution):
        raise broken("integrate() must return a flowkit Solution", type(solution).__name__)
    template = as_tuple(y0)
    ys = solution.ys
    if isinstance(y0, tuple) != isinstance(ys, tuple) or len(as_tuple(ys)) != len(template):
        shape = f"a tuple of {len(template)} tensors" if isinstance(y0, tuple) else "a tensor"
        got = f"a tuple of {len(ys)}" if isinstance(ys, tuple) else type(ys).__name__
        raise broken(f"solution.ys must have the structure of y0 ({shape})", got)
    partial = getattr(solution.stats, "status", "success") == "max_steps_reached"
    leaves = as_tuple(ys)
    for i, (leaf, ref) in enumerate(zip(leaves, template, strict=True)):
        name = f"solution.ys[{i}]" if isinstance(y0, tuple) else "solution.ys"
        if not isinstance(leaf, Tensor):
            raise broken(f"{name} must be a tensor", type(leaf).__name__)
        n_times = leaf.shape[0] if (partial and leaf.dim() == ref.dim() + 1) else len(t)
        want = (n_times, *ref.shape)
        if tuple(leaf.shape) != want or (partial and not 1 <= n_times <= len(t)):
            raise broken(
                f"{name} must have shape (len(t), *y0.shape) = {(len(t), *ref.shape)}, "
                "one state per requested time stacked along a new first axis",
                f"shape {tuple(leaf.shape)}",
            )
        if leaf.dtype != ref.dtype:
            raise broken(f"{name} must have y0's dtype {ref.dtype}", f"dtype {leaf.dtype}")
        if leaf.device != ref.device:
            raise broken(f"{name} must be on y0's device {ref.device}", f"device {leaf.device}")
    if not all_finite(leaves):
        raise broken(
            "the returned states must be finite; an integrator meeting NaN or Inf must raise "
            "NonFiniteStateError (the vector field may also have produced them)",
            "NaN or Inf in solution.ys",
        )
    return solution
