"""Step-size control for adaptive Runge-Kutta methods.

* :func:`mixed_rms_norm`: the default error norm, the root mean square of each
  leaf of a (tuple) state, and the largest of them (torchdiffeq's default for
  tuple states: a small leaf such as a CNF's ``delta_logp`` is not drowned by
  a large one).
* :func:`rms_norm`: the root mean square over every element of every leaf.
* :class:`Tolerance`: ``atol + rtol * max(|y0|, |y1|)`` per leaf, with scalar,
  per-component tensor or per-leaf tolerances.
* :func:`initial_step`: the standard starting-step heuristic.
* :class:`PIController`: a proportional-integral step-size controller.

All decisions are made on detached values (under ``torch.no_grad``) and turned
into Python floats once per step: the step size is data for the solver, not
part of the differentiated computation.

References:
    E. Hairer, S. P. Nørsett, G. Wanner, *Solving Ordinary Differential
    Equations I*, 2nd ed., 1993, Section II.4 (starting step size, error norm,
    step-size control with the PI stabilisation of Gustafsson).
    K. Gustafsson, "Control theoretic techniques for stepsize selection in
    explicit Runge-Kutta methods", ACM TOMS 17(4), 1991.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "ErrorNorm",
    "PIController",
    "Tolerance",
    "initial_step",
    "mixed_rms_norm",
    "norm_value",
    "rms_norm",
    "validate_tolerance",
    "validate_tolerance_pair",
]

ErrorNorm = Callable[[tuple[Tensor, ...]], Tensor | float]
"""A norm on the tuple of scaled-error leaves, returning a scalar."""

TolLike = float | Tensor | Sequence[float | Tensor]


def rms_norm(leaves: tuple[Tensor, ...]) -> Tensor:
    """Root mean square over every element of every leaf.

    Arguments:
        leaves: the scaled errors, one tensor per leaf of the state.

    Returns:
        A 0-d tensor.
    """
    if len(leaves) == 1:
        x = leaves[0]
        return torch.linalg.vector_norm(x) / math.sqrt(max(x.numel(), 1))
    total = sum(x.numel() for x in leaves)
    sq = torch.stack([torch.linalg.vector_norm(x).pow(2) for x in leaves]).sum()
    return (sq / max(total, 1)).sqrt()


def mixed_rms_norm(leaves: tuple[Tensor, ...]) -> Tensor:
    """The largest root mean square over the leaves (each leaf's RMS on its own).

    Arguments:
        leaves: the scaled errors, one tensor per leaf of the state.

    Returns:
        A 0-d tensor; for a single leaf, its RMS.
    """
    if len(leaves) == 1:
        x = leaves[0]
        return torch.linalg.vector_norm(x) / math.sqrt(max(x.numel(), 1))
    return torch.stack(
        [torch.linalg.vector_norm(x) / math.sqrt(max(x.numel(), 1)) for x in leaves]
    ).max()


def norm_value(norm: ErrorNorm, leaves: tuple[Tensor, ...]) -> float:
    """``float(norm(leaves))``; the default norms on one leaf skip the tensor division.

    For :func:`mixed_rms_norm` and :func:`rms_norm` of a single leaf the RMS
    is the vector norm divided by ``sqrt(n)`` in Python (one kernel fewer per
    call; the same value to round-off).
    """
    if len(leaves) == 1 and (norm is mixed_rms_norm or norm is rms_norm):
        x = leaves[0]
        return float(torch.linalg.vector_norm(x)) / math.sqrt(max(x.numel(), 1))
    return float(norm(leaves))


def _check_tol(name: str, value: object) -> None:
    if isinstance(value, Tensor):
        if value.requires_grad:
            raise ValueError(f"{name} must not require grad; pass a detached tensor.")
        if not bool((value >= 0).all()):
            raise ValueError(f"{name} must be non-negative, got {value}.")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if not value >= 0 or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite non-negative number, got {value!r}.")
    else:
        raise TypeError(
            f"{name} must be a float, a tensor broadcastable to the state, or a tuple of "
            f"those (one per leaf), got {type(value).__name__}."
        )


def validate_tolerance(name: str, value: TolLike) -> TolLike:
    """Check a tolerance option early (constructor time).

    Raises:
        TypeError: for a value that is not a float, a tensor or a tuple of them.
        ValueError: for negative, non-finite or gradient-carrying values.
    """
    if isinstance(value, (tuple, list)):
        if not value:
            raise ValueError(f"{name} is an empty tuple; give one tolerance per state leaf.")
        for i, v in enumerate(value):
            _check_tol(f"{name}[{i}]", v)
        return tuple(value)
    _check_tol(name, value)
    return value


def _zero_where_both_zero(rtol: float | Tensor, atol: float | Tensor) -> bool:
    """Whether ``rtol`` and ``atol`` are both zero for some component."""
    if not isinstance(rtol, Tensor) and not isinstance(atol, Tensor):
        return float(rtol) == 0.0 and float(atol) == 0.0
    r = torch.as_tensor(rtol, dtype=torch.float64, device="cpu")
    a = torch.as_tensor(atol, dtype=torch.float64, device="cpu")
    try:
        both = (r == 0) & (a == 0)
    except RuntimeError:  # shapes that do not broadcast are reported against the state
        return False
    return bool(both.any())


def validate_tolerance_pair(rtol: TolLike, atol: TolLike) -> None:
    """Reject ``rtol`` and ``atol`` that are both zero (for any leaf or component).

    The error scale ``atol + rtol * |y|`` would then be zero, so no error
    estimate could ever be scaled (and, before this check, the solver reported
    a misleading NaN in the field's output).

    Raises:
        ValueError: naming the leaf, with the fix.
    """
    if isinstance(rtol, (tuple, list)) or isinstance(atol, (tuple, list)):
        n = len(rtol) if isinstance(rtol, (tuple, list)) else len(atol)  # type: ignore[arg-type]
        rs = tuple(rtol) if isinstance(rtol, (tuple, list)) else (rtol,) * n
        ats = tuple(atol) if isinstance(atol, (tuple, list)) else (atol,) * n
        if len(rs) != len(ats):
            return  # the length mismatch is reported against the state's leaves
        pairs = [
            (f" for state leaf {i}", r, a) for i, (r, a) in enumerate(zip(rs, ats, strict=True))
        ]
    else:
        pairs = [("", rtol, atol)]  # type: ignore[list-item]
    for where, r, a in pairs:
        if _zero_where_both_zero(r, a):  # type: ignore[arg-type]
            raise ValueError(
                f"rtol and atol are both 0{where}: the error scale atol + rtol * |y| would be "
                "0, so no step could ever be accepted. Give a positive tolerance, e.g. "
                "rtol=1e-7, atol=1e-9 (or use a fixed-step method such as 'rk4')."
            )


@dataclass
class Tolerance:
    """Per-leaf error scales ``atol + rtol * max(|y0|, |y1|)``.

    Arguments:
        rtol, atol: floats, tensors broadcastable to every leaf, or tuples with
            one such value per leaf.
        leaves: the initial state's leaves (for dtype, device, count).

    Raises:
        ValueError: when a per-leaf tuple has the wrong length, or a tensor
            does not broadcast against its leaf.
    """

    rtol: tuple[float | Tensor, ...]
    atol: tuple[float | Tensor, ...]

    @classmethod
    def build(cls, rtol: TolLike, atol: TolLike, leaves: tuple[Tensor, ...]) -> Tolerance:
        """Normalise ``rtol``/``atol`` to one value per leaf on the leaves' device."""
        return cls(_per_leaf("rtol", rtol, leaves), _per_leaf("atol", atol, leaves))

    def scaled(
        self, err: tuple[Tensor, ...], y0: tuple[Tensor, ...], y1: tuple[Tensor, ...]
    ) -> tuple[Tensor, ...]:
        """``err / (atol + rtol * max(|y0|, |y1|))`` leaf by leaf (call under no_grad).

        Computed in one buffer per leaf (four kernels, one allocation): this
        runs once per attempted step.
        """
        out = []
        for e, a, b, rt, at in zip(err, y0, y1, self.rtol, self.atol, strict=True):
            scale = torch.abs(a)
            torch.maximum(scale, b.abs(), out=scale)
            scale.mul_(rt).add_(at)
            out.append(torch.div(e, scale, out=scale))
        return tuple(out)

    def scale(self, y: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """``atol + rtol * |y|`` leaf by leaf (call under no_grad)."""
        return tuple(
            b.abs().mul_(rt).add_(at) for b, rt, at in zip(y, self.rtol, self.atol, strict=True)
        )


def _per_leaf(name: str, value: TolLike, leaves: tuple[Tensor, ...]) -> tuple[float | Tensor, ...]:
    if isinstance(value, (tuple, list)):
        if len(value) != len(leaves):
            raise ValueError(
                f"{name} has {len(value)} entries but the state has {len(leaves)} leaves; "
                "give one tolerance per leaf, or a single float."
            )
        values = tuple(value)
    else:
        values = (value,) * len(leaves)
    out: list[float | Tensor] = []
    for i, (v, leaf) in enumerate(zip(values, leaves, strict=True)):
        if isinstance(v, Tensor):
            v = v.to(device=leaf.device, dtype=leaf.dtype)
            try:
                torch.broadcast_shapes(v.shape, leaf.shape)
            except RuntimeError as exc:
                raise ValueError(
                    f"{name} of shape {tuple(v.shape)} does not broadcast against state leaf "
                    f"{i} of shape {tuple(leaf.shape)}."
                ) from exc
        else:
            v = float(v)
        out.append(v)
    return tuple(out)


def initial_step(
    func: Callable[[float, tuple[Tensor, ...]], tuple[Tensor, ...]],
    t0: float,
    y0: tuple[Tensor, ...],
    f0: tuple[Tensor, ...],
    direction: float,
    exponent: int,
    tol: Tolerance,
    norm: ErrorNorm,
) -> float:
    """Hairer's starting step size (one extra function evaluation).

    Arguments:
        func: the right-hand side on tuples of leaves, taking a float time.
        t0, y0, f0: the initial time, state and derivative.
        direction: +1.0 forward, -1.0 backward in time.
        exponent: ``error_order + 1`` of the method.
        tol: the error scales.
        norm: the error norm.

    Returns:
        A positive step size (its sign is applied by the caller).
    """
    with torch.no_grad():
        scale = tol.scale(y0)  # the three norms share the scale of y0
        d0 = norm_value(norm, tuple(torch.div(a, s) for a, s in zip(y0, scale, strict=True)))
        d1 = norm_value(norm, tuple(torch.div(a, s) for a, s in zip(f0, scale, strict=True)))
        h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
        y1 = tuple(y.add(f, alpha=direction * h0) for y, f in zip(y0, f0, strict=True))
        f1 = func(t0 + direction * h0, y1)
        diff = tuple(torch.sub(b, a).div_(s) for a, b, s in zip(f0, f1, scale, strict=True))
        d2 = norm_value(norm, diff) / h0
        big = max(d1, d2)
        if big <= 1e-15 or not math.isfinite(big):
            h1 = max(1e-6, h0 * 1e-3)
        else:
            h1 = (0.01 / big) ** (1.0 / exponent)
    return min(100.0 * h0, h1)


@dataclass
class PIController:
    """A proportional-integral step-size controller.

    After an accepted step with error ratio ``r_n`` (the previous accepted one
    ``r_{n-1}``) the factor is ``safety * r_n^(-alpha) * r_{n-1}^beta`` with
    ``alpha = 1/k - 0.75 beta``, clipped to ``[min_factor, max_factor]``. A
    rejected step shrinks by ``max(min_factor, safety * r^(-1/k))``. ``beta = 0``
    is the classic integral (I) controller; Hairer's PI choice for DOPRI5 is
    ``beta = 0.04`` (``0.2/k`` in general), which damps step-size oscillations
    on mildly stiff problems at the price of more steps on smooth ones.

    Two safeguards tell the published controllers apart: Hairer's codes let
    the step shrink after an accepted step (down to ``min_factor``) and never
    let it grow right after a rejection (``shrink_after_accept`` and
    ``hold_after_reject``, the defaults); torchdiffeq's integral controller
    does neither: after an accepted step the factor is at least 1.

    Arguments:
        exponent: ``k``, the error order of the method plus one.
        beta: the weight of the previous error ratio (default 0).
        safety: the safety factor (0.9).
        min_factor, max_factor: bounds of the factor (0.2, 10).
        shrink_after_accept: whether an accepted step may be followed by a
            smaller one (default True).
        hold_after_reject: whether the factor is capped at 1 for the step
            after a rejection (default True).
    """

    exponent: int
    beta: float = 0.0
    safety: float = 0.9
    min_factor: float = 0.2
    max_factor: float = 10.0
    shrink_after_accept: bool = True
    hold_after_reject: bool = True

    def __post_init__(self) -> None:
        self.alpha = 1.0 / self.exponent - 0.75 * self.beta
        self.prev_ratio = 1e-4
        self.rejected_last = False

    def accept(self, ratio: float) -> float:
        """The factor for the next step after accepting one with ``ratio <= 1``."""
        floor = self.min_factor if self.shrink_after_accept else 1.0
        if ratio == 0.0:
            factor = self.max_factor
        else:
            factor = self.safety * ratio ** (-self.alpha) * self.prev_ratio**self.beta
            factor = min(self.max_factor, max(floor, factor))
        if self.rejected_last and self.hold_after_reject:
            factor = min(factor, 1.0)
        self.prev_ratio = max(ratio, 1e-4)
        self.rejected_last = False
        return factor

    def reject(self, ratio: float) -> float:
        """The factor for retrying a step rejected with ``ratio > 1``."""
        self.rejected_last = True
        return max(self.min_factor, self.safety * ratio ** (-1.0 / self.exponent))
