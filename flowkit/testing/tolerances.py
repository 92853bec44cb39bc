"""The tolerance model: how close a computed value must be to its closed form.

One place decides every bound the conformance checks and the test suite use,
keyed by dtype, the method's order, its tolerance or step size, and whether the
estimate is stochastic. A bound is never chosen to make a test pass: each is
derived from the error model stated in its docstring.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

__all__ = [
    "Tolerance",
    "roundoff",
    "integrator_tolerance",
    "step_control_bound",
    "fixed_step_for",
    "accuracy_options",
    "statistical_bound",
    "GLOBAL_ERROR_FACTOR",
    "STEP_ACCUMULATION",
    "TRUNCATION_CONSTANT",
]

GLOBAL_ERROR_FACTOR = 100.0
"""Adaptive solvers control the local error per step; on the smooth, unit-scale
problems of :mod:`flowkit.testing` the global error stays within this factor of
``rtol + atol`` (a solver far off it is miscontrolled)."""

STEP_ACCUMULATION = math.e**2
"""Local errors of about the tolerance add up over the steps taken, each
amplified by at most ``exp(L T)``; the closed forms here have ``L T <= 2``."""

TRUNCATION_CONSTANT = 10.0
"""Fixed-step methods of order ``p`` have global error ``C h^p T``; the closed
forms of :mod:`flowkit.testing` have derivatives of order one, for which ``C``
stays below this constant."""


@dataclass(frozen=True)
class Tolerance:
    """An absolute and relative bound: ``|a - b| <= atol + rtol * |b|``."""

    atol: float
    rtol: float

    def __add__(self, other: Tolerance) -> Tolerance:
        return Tolerance(self.atol + other.atol, self.rtol + other.rtol)

    def scaled(self, factor: float) -> Tolerance:
        """The bound multiplied by ``factor`` (e.g. a Lipschitz constant)."""
        return Tolerance(self.atol * factor, self.rtol * factor)

    def assert_close(
        self, actual: torch.Tensor, expected: torch.Tensor, what: str = "value"
    ) -> None:
        """Raise ``AssertionError`` naming ``what`` if the bound is broken."""
        torch.testing.assert_close(
            actual,
            expected.to(actual.dtype),
            atol=self.atol,
            rtol=self.rtol,
            msg=lambda m: f"{what} off its reference beyond {self}: {m}",
        )


def roundoff(dtype: torch.dtype, *, operations: int = 1000) -> Tolerance:
    """Round-off accumulated over about ``operations`` steps: ``operations * eps``."""
    eps = torch.finfo(dtype).eps
    return Tolerance(atol=operations * eps, rtol=operations * eps)


def integrator_tolerance(
    dtype: torch.dtype,
    *,
    order: int,
    adaptive: bool,
    rtol: float | None = None,
    atol: float | None = None,
    step_size: float | None = None,
    span: float = 1.0,
    n_steps: int | None = None,
) -> Tolerance:
    """The bound on a solve's global error on a unit-scale closed-form problem.

    Adaptive: ``(rtol + atol) * max(GLOBAL_ERROR_FACTOR, STEP_ACCUMULATION * N)``
    where ``N`` is the number of steps the solve took when known (low-order
    methods take many steps, and local errors add up over them; the number of
    function evaluations is a valid upper bound for ``N``). Fixed step ``h``
    over a span ``T``: ``TRUNCATION_CONSTANT * h**order * T``. Both plus
    round-off.

    Raises:
        ValueError: when the tolerance (adaptive) or step size (fixed) is missing.
    """
    if adaptive:
        if rtol is None or atol is None:
            raise ValueError("an adaptive integrator's bound needs rtol and atol")
        factor = GLOBAL_ERROR_FACTOR
        if n_steps is not None:
            factor = max(factor, STEP_ACCUMULATION * n_steps)
        bound = factor * (rtol + atol)
    else:
        if step_size is None:
            raise ValueError("a fixed-step integrator's bound needs step_size")
        bound = TRUNCATION_CONSTANT * abs(step_size) ** order * abs(span)
    return Tolerance(atol=bound, rtol=bound) + roundoff(dtype)


def step_control_bound(*, rtol: float, atol: float, n_steps: int, n_components: int = 1) -> float:
    """The global error an error-per-step controller guarantees, relative to ``max(1, |y|)``.

    Derivation (no fitted constant): a step is accepted when the RMS over the
    ``n`` state components of ``estimate / (atol + rtol |y|)`` is at most 1, so
    each component's estimate is at most ``sqrt(n) (atol + rtol |y|)``, and
    relative to ``max(1, |y|)`` at most ``sqrt(n) (atol + rtol)``. An embedded
    pair's estimate bounds the local error of the solution it propagates (its
    contract); the local errors of the ``N`` steps taken add up, each amplified
    by at most ``STEP_ACCUMULATION`` on the closed forms of :mod:`flowkit.testing`:
    ``STEP_ACCUMULATION * N * sqrt(n) * (atol + rtol)``. A method whose error
    exceeds this has an estimate that understates its local error.
    """
    return STEP_ACCUMULATION * n_steps * math.sqrt(n_components) * (atol + rtol)


def fixed_step_for(order: int, target: float, *, span: float = 1.0) -> tuple[float, int]:
    """A step size (and step count over ``span``) whose truncation bound is ``target``.

    Returns ``(h, n)`` with ``TRUNCATION_CONSTANT * h**order * span <= target``.
    """
    h = (target / (TRUNCATION_CONSTANT * abs(span))) ** (1.0 / order)
    n = max(1, math.ceil(abs(span) / h))
    return abs(span) / n, n


def statistical_bound(std_error: float, *, n_std: float = 4.0) -> float:
    """The bound on a stochastic estimate's mean error: ``n_std`` standard errors.

    With a fixed seed the check is deterministic; a correct unbiased estimator
    fails it with probability below 1e-4 (Gaussian tail at 4 sigma).
    """
    return n_std * std_error


def accuracy_options(
    capabilities: dict[str, Any],
    accepted: set[str] | None,
    *,
    target: float,
    span: float,
    dtype: torch.dtype = torch.float64,
    max_steps: int = 400,
) -> tuple[dict[str, Any], Tolerance]:
    """Options making an integrator accurate to about ``target``, and the bound to check.

    Adaptive integrators get ``rtol = atol = target``. Fixed-step ones get the
    step of :func:`~flowkit.testing.tolerances.fixed_step_for` (at most
    ``max_steps`` steps), passed as ``step_size`` (the convention every
    fixed-step integrator follows; ``n_steps`` when that is all it takes).
    """
    order = int(capabilities["order"])
    if capabilities["adaptive"]:
        tol = integrator_tolerance(dtype, order=order, adaptive=True, rtol=target, atol=target)
        return {"rtol": target, "atol": target}, tol
    _, n = fixed_step_for(order, target, span=span)
    n = min(n, max_steps)
    h = abs(span) / n
    tol = integrator_tolerance(dtype, order=order, adaptive=False, step_size=h, span=span)
    if accepted is None or "step_size" in accepted:
        return {"step_size": h}, tol
    if "n_steps" in accepted:
        return {"n_steps": n}, tol
    raise TypeError(
        "a fixed-step integrator must accept a 'step_size' (or 'n_steps') option so that its "
        f"accuracy can be set; it accepts {sorted(accepted)}"
    )
