"""The one explicit Runge-Kutta stepper that every native tableau runs on.

A state is handled as a tuple of leaves (a single tensor is a 1-tuple), so
tuple states such as the CNF's ``(x, delta_logp)`` need no flattening and a
single-tensor state pays no concatenation. Linear combinations of stages are
fused into one out-of-place ``add`` followed by in-place ``add_`` calls with
scalar ``alpha`` (zero coefficients are skipped), which keeps the per-stage
Python and kernel overhead to one operation per nonzero coefficient.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from flowkit.rk.tableau import ButcherTableau

__all__ = ["LeafFunc", "StepResult", "dense_state", "rk_step"]

LeafFunc = Callable[[float, tuple[Tensor, ...]], tuple[Tensor, ...]]
"""A right-hand side on tuples of leaves, taking the time as a Python float."""


@dataclass
class StepResult:
    """The outcome of one Runge-Kutta step.

    Attributes:
        y1: the propagated state at ``t + h``.
        f1: the derivative at ``(t + h, y1)`` for FSAL tableaus, else ``None``.
        err: the local error estimate ``h * sum(b_error_j k_j)`` (detached), or
            ``None`` for a method without an embedded pair.
        err2: the second error estimate (DOP853-type tableaus), or ``None``.
        ks: the stage derivatives (kept for dense output).
    """

    y1: tuple[Tensor, ...]
    f1: tuple[Tensor, ...] | None
    err: tuple[Tensor, ...] | None
    err2: tuple[Tensor, ...] | None
    ks: list[tuple[Tensor, ...]]


def _combine(
    y: tuple[Tensor, ...],
    ks: list[tuple[Tensor, ...]],
    coeffs: tuple[tuple[int, float], ...],
    h: float,
) -> tuple[Tensor, ...]:
    """``y + h sum_j a_j k_j`` leaf by leaf: one out-of-place ``add``, then ``add_`` per term."""
    if not coeffs:
        return y
    j0, a0 = coeffs[0]
    rest = coeffs[1:]
    out = []
    for i, leaf in enumerate(y):
        acc = torch.add(leaf, ks[j0][i], alpha=h * a0)
        for j, a in rest:
            acc.add_(ks[j][i], alpha=h * a)
        out.append(acc)
    return tuple(out)


def _error(
    ks: list[tuple[Tensor, ...]], coeffs: tuple[tuple[int, float], ...], h: float, n: int
) -> tuple[Tensor, ...]:
    """``h sum_j e_j k_j`` leaf by leaf, without a graph."""
    if torch.is_grad_enabled():
        with torch.no_grad():
            return _error(ks, coeffs, h, n)
    j0, e0 = coeffs[0]
    rest = coeffs[1:]
    out = []
    for i in range(n):
        acc = torch.mul(ks[j0][i], h * e0)
        for j, e in rest:
            acc.add_(ks[j][i], alpha=h * e)
        out.append(acc)
    return tuple(out)


def rk_step(
    tableau: ButcherTableau,
    func: LeafFunc,
    t: float,
    y: tuple[Tensor, ...],
    f0: tuple[Tensor, ...] | None,
    h: float,
) -> StepResult:
    """One explicit Runge-Kutta step of (signed) size ``h`` from ``(t, y)``.

    Arguments:
        tableau: the method.
        func: the right-hand side on leaves.
        t: the current time.
        y: the current state's leaves.
        f0: ``func(t, y)`` if already known (FSAL, or after a rejected step),
            else ``None`` and it is evaluated here.
        h: the signed step size (negative integrates backward in time).

    Returns:
        The :class:`StepResult`.
    """
    k0 = func(t, y) if f0 is None else f0
    ks = [k0]
    c = tableau.c
    terms = tableau.stage_terms
    yi = y
    for i in range(1, len(c)):
        yi = _combine(y, ks, terms[i], h)
        ks.append(func(t + c[i] * h, yi))
    if tableau.fsal:  # the last stage is evaluated at (t + h, y1)
        y1, f1 = yi, ks[-1]
    else:
        y1, f1 = _combine(y, ks, tableau.b_terms, h), None
    n = len(y)
    error_terms, error2_terms = tableau.error_terms, tableau.error2_terms
    err = _error(ks, error_terms, h, n) if error_terms else None
    err2 = _error(ks, error2_terms, h, n) if error2_terms else None
    return StepResult(y1=y1, f1=f1, err=err, err2=err2, ks=ks)


def dense_state(
    tableau: ButcherTableau,
    y: tuple[Tensor, ...],
    ks: list[tuple[Tensor, ...]],
    h: float,
    theta: float,
) -> tuple[Tensor, ...]:
    """The continuous extension ``y + h sum_j b_j(theta) k_j`` inside a step.

    Arguments:
        tableau: a method with dense output.
        y: the state at the start of the step.
        ks: the step's stage derivatives.
        h: the signed step size.
        theta: the fraction of the step, in ``[0, 1]``.
    """
    return _combine(y, ks, tableau.dense_weights(theta), h)
