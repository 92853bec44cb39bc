"""Butcher tableaus: an explicit Runge-Kutta method as data.

A :class:`ButcherTableau` holds the nodes ``c``, the strictly lower-triangular
matrix ``a``, the propagating weights ``b``, the optional error weights
``b_error`` (``b - b_hat`` of an embedded pair, so that ``h * sum(b_error_j k_j)``
is the local error estimate), the orders, and optionally the polynomial
coefficients of a continuous extension (dense output). Every native integrator
is one of these plus a few lines of registration; the single stepper in
:mod:`flowkit.rk.stepper` runs them all.

References:
    E. Hairer, S. P. Nørsett, G. Wanner, *Solving Ordinary Differential
    Equations I: Nonstiff Problems*, 2nd ed., Springer, 1993 (Sections II.1-II.6).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

__all__ = ["ButcherTableau", "dense_from_hermite_quartic"]


def _lower(rows: tuple[tuple[float, ...], ...]) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(float(x) for x in row) for row in rows)


@dataclass(frozen=True)
class ButcherTableau:
    """An explicit Runge-Kutta method.

    Attributes:
        name: a short human-readable name.
        c: the nodes, one per stage (``c[0] == 0``).
        a: row ``i`` holds the ``i`` coefficients ``a[i][0..i-1]`` of stage ``i``
            (row 0 is empty).
        b: the weights of the propagated solution, one per stage.
        order: the order of the propagated solution.
        b_error: ``b - b_hat`` for an embedded pair, or ``None`` for a fixed-step
            method without an error estimate.
        error_order: the order of the embedded solution ``b_hat`` (the local
            error estimate is ``O(h^(error_order + 1))``); the step-size
            controller uses ``error_order + 1`` as its exponent denominator.
        b_error2: a second error-weight vector, combined with ``b_error`` as in
            Hairer's DOP853 (``err5^2 / sqrt(err5^2 + 0.01 err3^2)``), or ``None``.
        controller_order: the exponent denominator of the step-size controller
            (default ``error_order + 1``).
        fsal: "first same as last": the last stage is evaluated at ``(t + h, y1)``
            so its derivative is the first stage of the next step.
        dense: continuous-extension polynomials, one row per stage: row ``j``
            holds the coefficients of ``theta^1, theta^2, ...`` of ``b_j(theta)``
            with ``y(t + theta h) = y + h sum_j b_j(theta) k_j``; ``None`` when
            the method has no dense output of its own order class.
    """

    name: str
    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    order: int
    b_error: tuple[float, ...] | None = None
    error_order: int | None = None
    b_error2: tuple[float, ...] | None = None
    controller_order: int | None = None
    fsal: bool = False
    dense: tuple[tuple[float, ...], ...] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        s = len(self.c)
        problems = []
        if len(self.a) != s or any(len(row) != i for i, row in enumerate(self.a)):
            problems.append("a must have one row per stage, row i holding i coefficients")
        if len(self.b) != s:
            problems.append("b must have one weight per stage")
        for label, vec in (("b_error", self.b_error), ("b_error2", self.b_error2)):
            if vec is not None and len(vec) != s:
                problems.append(f"{label} must have one weight per stage")
        if self.dense is not None and len(self.dense) != s:
            problems.append("dense must have one polynomial row per stage")
        if (self.b_error is None) != (self.error_order is None):
            problems.append("b_error and error_order are given together")
        if self.fsal and (self.c[-1] != 1.0 or tuple(self.a[-1]) != tuple(self.b[:-1])):
            problems.append("fsal needs a last stage at c=1 with a[-1] == b[:-1]")
        if self.c and self.c[0] != 0.0:
            problems.append("c[0] must be 0 for an explicit method")
        for i, row in enumerate(self.a):
            if row and abs(sum(row) - self.c[i]) > 1e-12:
                problems.append(f"row {i} of a must sum to c[{i}] (got {sum(row)!r})")
        if problems:
            raise ValueError(f"invalid Butcher tableau {self.name!r}: " + "; ".join(problems))

    @property
    def stages(self) -> int:
        """The number of stages (function evaluations per step, FSAL included)."""
        return len(self.c)

    @property
    def adaptive(self) -> bool:
        """Whether the tableau carries an embedded error estimate."""
        return self.b_error is not None

    @property
    def step_exponent(self) -> int:
        """The denominator ``k`` of the controller exponent ``err^(-1/k)``."""
        if self.controller_order is not None:
            return self.controller_order
        return (self.error_order if self.error_order is not None else self.order) + 1

    @cached_property
    def stage_terms(self) -> tuple[tuple[tuple[int, float], ...], ...]:
        """For each stage, the nonzero ``(j, a_ij)`` pairs (zero terms skipped)."""
        return tuple(tuple((j, x) for j, x in enumerate(row) if x != 0.0) for row in self.a)

    @cached_property
    def b_terms(self) -> tuple[tuple[int, float], ...]:
        """The nonzero ``(j, b_j)`` pairs."""
        return tuple((j, x) for j, x in enumerate(self.b) if x != 0.0)

    @cached_property
    def error_terms(self) -> tuple[tuple[int, float], ...]:
        """The nonzero ``(j, b_error_j)`` pairs (empty without an estimate)."""
        return tuple((j, x) for j, x in enumerate(self.b_error or ()) if x != 0.0)

    @cached_property
    def error2_terms(self) -> tuple[tuple[int, float], ...]:
        """The nonzero ``(j, b_error2_j)`` pairs (empty without a second estimate)."""
        return tuple((j, x) for j, x in enumerate(self.b_error2 or ()) if x != 0.0)

    def dense_weights(self, theta: float) -> tuple[tuple[int, float], ...]:
        """The nonzero ``(j, b_j(theta))`` of the continuous extension at ``theta``.

        Raises:
            ValueError: if the tableau has no dense output.
        """
        if self.dense is None:
            raise ValueError(f"tableau {self.name!r} has no dense output")
        out = []
        for j, coeffs in enumerate(self.dense):
            value = 0.0
            for power in range(len(coeffs), 0, -1):
                value = (value + coeffs[power - 1]) * theta
            if value != 0.0:
                out.append((j, value))
        return tuple(out)


def dense_from_hermite_quartic(
    b: tuple[float, ...], d: tuple[float, ...], last: int
) -> tuple[tuple[float, ...], ...]:
    """Dense-output polynomials of Dormand-Prince type continuous extensions.

    Expands ``y(theta) = y0 + theta (dy + (1-theta)(r3 + theta (r4 + (1-theta) r5)))``
    with ``dy = h sum b_j k_j``, ``r3 = h k_0 - dy``, ``r4 = dy - h k_last - r3``,
    ``r5 = h sum d_j k_j`` into per-stage polynomials in ``theta``.

    Arguments:
        b: the propagating weights.
        d: the weights of the fifth term (Hairer's ``d_j``).
        last: the index of the FSAL stage (``f(t + h, y1)``).

    Returns:
        One row per stage with the coefficients of ``theta^1 .. theta^4``.

    References:
        Hairer, Nørsett, Wanner (1993), Section II.6, the dense output of DOPRI5.
    """
    rows = []
    for j, bj in enumerate(b):
        first = 1.0 if j == 0 else 0.0
        fin = 1.0 if j == last else 0.0
        dj = d[j]
        # theta*b + theta(1-theta)(first - b) + theta^2(1-theta)(2b - first - fin)
        # + theta^2 (1-theta)^2 d
        p1 = bj + (first - bj)
        p2 = -(first - bj) + (2 * bj - first - fin) + dj
        p3 = -(2 * bj - first - fin) - 2 * dj
        p4 = dj
        rows.append((p1, p2, p3, p4))
    return tuple(rows)
