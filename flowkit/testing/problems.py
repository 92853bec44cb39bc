"""Closed-form ODE problems for testing integrators and gradient strategies.

Each problem is a :class:`ClosedFormProblem`: a right-hand side, a time
interval, an exact solution ``exact(t)`` valid for every ``t`` in it (so the
problem can be integrated forward from ``t0`` or backward from ``t1``), and
where it is easy a parameter with the exact gradient of ``sum(y(t1))``.

Example:
    >>> import torch
    >>> p = exponential_decay(dtype=torch.float64)
    >>> y1 = p.exact(p.t1)
    >>> bool(torch.allclose(y1, p.y0 * torch.exp(-p.param * (p.t1 - p.t0))))
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from flowkit.state import State

__all__ = [
    "ClosedFormProblem",
    "LinearDynamics",
    "expm_frechet",
    "all_problems",
    "exponential_decay",
    "linear_skew",
    "polynomial_sine",
    "time_dependent_growth",
    "tuple_rotation",
]


@dataclass
class ClosedFormProblem:
    """An initial value problem with a known solution.

    Attributes:
        name: a short identifier (used as a test id).
        func: the right-hand side ``func(t, y)``.
        t0, t1: the interval (``t0 < t1``); integrate either way.
        exact: ``exact(t)`` -> the state at time ``t`` (a float).
        param: a tensor ``func`` depends on (requires grad), or ``None``.
        grad_param: ``grad_param(ta, tb)`` -> the exact gradient of
            ``sum(y(tb))`` with respect to ``param`` when starting from
            ``exact(ta)`` at ``ta``, or ``None``.
        grad_y0: ``grad_y0(ta, tb)`` -> the exact gradient of ``sum(y(tb))``
            with respect to the initial state at ``ta``, or ``None``.
        rate: a characteristic rate (inverse time scale) of the solution, so
            that ``rate * h`` measures how well a step ``h`` resolves it.
    """

    name: str
    func: Callable[[Tensor, State], State]
    t0: float
    t1: float
    exact: Callable[[float], State]
    param: Tensor | None = None
    grad_param: Callable[[float, float], Tensor] | None = None
    grad_y0: Callable[[float, float], State] | None = None
    rate: float = 1.0

    @property
    def y0(self) -> State:
        """The state at ``t0``."""
        return self.exact(self.t0)

    def times(self, n: int = 2, *, backward: bool = False) -> Tensor:
        """``n`` equally spaced times from ``t0`` to ``t1`` (reversed if ``backward``)."""
        leaf = self.y0 if isinstance(self.y0, Tensor) else self.y0[0]
        t = torch.linspace(self.t0, self.t1, n, dtype=leaf.dtype, device=leaf.device)
        return t.flip(0) if backward else t


def linear_skew(
    dim: int = 3,
    batch: int = 2,
    *,
    seed: int = 0,
    t0: float = 0.0,
    t1: float = 2.0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> ClosedFormProblem:
    """``y' = y A^T`` with skew-symmetric ``A``; ``y(t) = y0 expm(A (t - t0))^T``.

    Rows of ``y`` (shape ``(batch, dim)``) rotate; norms are conserved. The
    parameter is ``A`` itself (gradients checked against autograd through
    ``torch.linalg.matrix_exp`` by callers; no closed form given here).
    """
    gen = torch.Generator().manual_seed(seed)
    m = torch.randn(dim, dim, generator=gen, dtype=torch.float64)
    a = (m - m.T).to(dtype=dtype, device=device)
    y_start = torch.randn(batch, dim, generator=gen, dtype=torch.float64).to(
        dtype=dtype, device=device
    )

    def func(t: Tensor, y: State) -> Tensor:
        return y @ a.T  # type: ignore[operator]

    def exact(t: float) -> Tensor:
        return y_start @ torch.linalg.matrix_exp(a * (t - t0)).T

    def grad_y0(ta: float, tb: float) -> Tensor:
        # d sum(y0 M^T) / d y0 = ones @ M with M = expm(A (tb - ta)).
        return torch.ones_like(y_start) @ torch.linalg.matrix_exp(a * (tb - ta))

    rate = float(torch.linalg.eigvals(a.double().cpu()).abs().max())
    return ClosedFormProblem("linear_skew", func, t0, t1, exact, grad_y0=grad_y0, rate=rate)


def polynomial_sine(
    *, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> ClosedFormProblem:
    """``y' = 2y/t + t^4 sin(2t) - t^2 + 4t^3`` on ``[1, 8]``, ``y(1) = 1``.

    With ``(y/t^2)' = t^2 sin(2t) - 1 + 4t`` the solution is
    ``y = t^2 (-t^2 cos(2t)/2 + t sin(2t)/2 + cos(2t)/4 - t + 2t^2 + C)`` with
    ``C = cos(2)/4 - sin(2)/2`` from ``y(1) = 1``.
    """
    const = math.cos(2.0) / 4 - math.sin(2.0) / 2

    def func(t: Tensor, y: State) -> Tensor:
        return 2 * y / t + t**4 * torch.sin(2 * t) - t**2 + 4 * t**3  # type: ignore[operator]

    def exact(t: float) -> Tensor:
        c2, s2 = math.cos(2 * t), math.sin(2 * t)
        value = t * t * (-t * t * c2 / 2 + t * s2 / 2 + c2 / 4 - t + 2 * t * t + const)
        return torch.tensor([value], dtype=dtype, device=device)

    def grad_y0(ta: float, tb: float) -> Tensor:
        # The homogeneous solution is y0 (t/ta)^2.
        return torch.tensor([(tb / ta) ** 2], dtype=dtype, device=device)

    return ClosedFormProblem("polynomial_sine", func, 1.0, 8.0, exact, grad_y0=grad_y0, rate=4.0)


def exponential_decay(
    rate: float = 0.7,
    *,
    t0: float = 0.0,
    t1: float = 2.0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> ClosedFormProblem:
    """``y' = -k y`` with a learnable rate ``k``; ``y(t) = y0 exp(-k (t - t0))``.

    Exact gradients of ``sum(y(tb))`` from ``y(ta)``: ``-(tb - ta) sum(y(tb))``
    with respect to ``k`` and ``exp(-k (tb - ta))`` with respect to ``y(ta)``.
    """
    k = torch.tensor(rate, dtype=dtype, device=device, requires_grad=True)
    y_start = torch.tensor([1.0, -2.0, 0.5], dtype=dtype, device=device)

    def func(t: Tensor, y: State) -> Tensor:
        return -k * y  # type: ignore[operator]

    def exact(t: float) -> Tensor:
        return y_start * math.exp(-rate * (t - t0))

    def grad_param(ta: float, tb: float) -> Tensor:
        return torch.as_tensor(-(tb - ta) * float(exact(tb).sum()), dtype=dtype, device=device)

    def grad_y0(ta: float, tb: float) -> Tensor:
        return torch.full_like(y_start, math.exp(-rate * (tb - ta)))

    return ClosedFormProblem(
        "exponential_decay",
        func,
        t0,
        t1,
        exact,
        k,
        grad_param=grad_param,
        grad_y0=grad_y0,
        rate=rate,
    )


def time_dependent_growth(
    *,
    t0: float = 0.0,
    t1: float = 1.5,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> ClosedFormProblem:
    """``y' = t y``; ``y(t) = y0 exp((t^2 - t0^2) / 2)``."""
    y_start = torch.tensor([[1.0, 0.3], [-0.5, 2.0]], dtype=dtype, device=device)

    def func(t: Tensor, y: State) -> Tensor:
        return t * y  # type: ignore[operator]

    def exact(t: float) -> Tensor:
        return y_start * math.exp((t * t - t0 * t0) / 2)

    def grad_y0(ta: float, tb: float) -> Tensor:
        return torch.full_like(y_start, math.exp((tb * tb - ta * ta) / 2))

    return ClosedFormProblem(
        "time_dependent_growth", func, t0, t1, exact, grad_y0=grad_y0, rate=max(abs(t0), abs(t1))
    )


def tuple_rotation(
    *,
    omega: float = 1.3,
    t0: float = 0.0,
    t1: float = 2.0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> ClosedFormProblem:
    """A tuple state ``(x, s)``: ``x' = x R^T`` rotates at rate ``omega``, ``s' = |x|^2``.

    ``x`` has shape ``(4, 2)`` and ``s`` shape ``(4,)``; ``|x|`` is conserved,
    so ``s(t) = s0 + |x0|^2 (t - t0)``.
    """
    x_start = torch.tensor(
        [[1.0, 0.0], [0.5, -1.0], [-2.0, 0.3], [0.1, 0.2]], dtype=dtype, device=device
    )
    s_start = torch.tensor([0.0, 1.0, -1.0, 2.0], dtype=dtype, device=device)
    rot = torch.tensor([[0.0, -omega], [omega, 0.0]], dtype=dtype, device=device)
    sq = (x_start**2).sum(-1)

    def func(t: Tensor, y: State) -> tuple[Tensor, Tensor]:
        x, _ = y  # type: ignore[misc]
        return x @ rot.T, (x**2).sum(-1)

    def exact(t: float) -> tuple[Tensor, Tensor]:
        c, s = math.cos(omega * (t - t0)), math.sin(omega * (t - t0))
        m = torch.tensor([[c, -s], [s, c]], dtype=dtype, device=device)
        return x_start @ m.T, s_start + sq * (t - t0)

    return ClosedFormProblem("tuple_rotation", func, t0, t1, exact, rate=omega)


def all_problems(
    *, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> list[ClosedFormProblem]:
    """Every closed-form problem of this module, built for ``dtype`` and ``device``."""
    return [
        linear_skew(dtype=dtype, device=device),
        polynomial_sine(dtype=dtype, device=device),
        exponential_decay(dtype=dtype, device=device),
        time_dependent_growth(dtype=dtype, device=device),
        tuple_rotation(dtype=dtype, device=device),
    ]


class LinearDynamics(nn.Module):
    """``f(t, y) = y A^T`` for a batch of row vectors, with a learnable ``A``.

    ``y(t) = y0 expm(A t)^T``; with :func:`expm_frechet` the gradients of any
    linear functional of ``y(t)`` with respect to ``A`` have a closed form.
    """

    def __init__(self, a: Tensor) -> None:
        super().__init__()
        self.a = nn.Parameter(a.clone())

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return y @ self.a.T


def expm_frechet(x: Tensor, e: Tensor) -> Tensor:
    """The Fréchet derivative ``L(X, E)`` of ``expm`` at ``X`` in direction ``E``.

    Uses ``expm([[X, E], [0, X]]) = [[expm X, L(X, E)], [0, expm X]]``. The
    gradient of ``<G, expm(X)>`` with respect to ``X`` is ``L(X^T, G)``.
    """
    d = x.shape[0]
    block = torch.zeros(2 * d, 2 * d, dtype=x.dtype, device=x.device)
    block[:d, :d] = x
    block[d:, d:] = x
    block[:d, d:] = e
    return torch.linalg.matrix_exp(block)[:d, d:]
