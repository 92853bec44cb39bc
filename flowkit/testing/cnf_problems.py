"""Closed-form CNF problems: fields whose flow and log-density are known exactly.

Plugin authors check integrators, trace estimators and gradient strategies on
a CNF against these references (in float64). Conventions follow GUIDE §1: the
base ``N(0, I)`` sits at ``t0``, data at ``t1``, and
``log p_t1(x) = log p_t0(z) - integral_{t0}^{t1} tr(df/dx) dt`` with ``z`` the
point ``x`` flows back to.

Problems:
    * affine, possibly time-dependent: ``f(t, x) = (1 + c t) (M x + b)``; the
      flow over ``[t0, t1]`` is ``expm(S [[M, b], [0, 0]])`` on ``[x; 1]`` with
      ``S = (t1 - t0) + c (t1^2 - t0^2) / 2``, and the divergence integral is
      ``S tr(M)`` (``c = 0`` gives the constant field ``A = M``);
    * conditional affine: ``f(t, x, context) = M x + b + C context``, the
      affine flow with the shift ``b + C context`` of each sample's own
      context, so the conditional log-density is Gaussian in closed form;
    * elementwise nonlinear: ``f(x) = a * tanh(x)``, whose flow is
      ``sinh(x(t)) = sinh(x(s)) exp(a (t - s))`` per coordinate, with
      ``dx(t)/dx(s) = exp(a (t - s)) cosh(x(s)) / cosh(x(t))``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowkit.distributions import standard_normal_log_prob
from flowkit.interfaces import VectorField
from flowkit.plugins.vector_fields import LinearField
from flowkit.registry import ComponentSpec
from flowkit.testing.tolerances import Tolerance, accuracy_options

__all__ = [
    "TanhField",
    "affine_field",
    "affine_log_prob",
    "affine_pull_back",
    "conditional_affine_field",
    "conditional_affine_log_prob",
    "conditional_affine_pull_back",
    "solver_options",
    "standard_normal_log_prob",
    "tanh_log_prob",
    "tanh_pull_back",
    "time_integral",
]


def time_integral(rate: float, t0: float, t1: float) -> float:
    """``S = integral_{t0}^{t1} (1 + rate t) dt``."""
    return (t1 - t0) + rate * (t1**2 - t0**2) / 2


def affine_field(matrix: Tensor, bias: Tensor | None = None, rate: float = 0.0) -> LinearField:
    """The ``linear`` field ``f(t, x) = (1 + rate t) (matrix x + bias)``.

    Arguments:
        matrix: ``M``, shape ``(dim, dim)``.
        bias: ``b``, shape ``(dim,)`` (default zeros).
        rate: ``c``; 0 gives a time-independent field.
    """
    dim = matrix.shape[0]
    bias = torch.zeros(dim, dtype=matrix.dtype) if bias is None else bias
    if rate == 0.0:
        return LinearField(dim=dim, matrix=matrix, bias=bias)
    return LinearField(
        dim=dim,
        matrix=matrix,
        bias=bias,
        time_dependent=True,
        time_matrix=rate * matrix,
        time_bias=rate * bias,
    )


def affine_pull_back(
    x: Tensor,
    matrix: Tensor,
    bias: Tensor | None = None,
    *,
    rate: float = 0.0,
    t0: float = 0.0,
    t1: float = 1.0,
) -> Tensor:
    """Where the affine flow takes ``x`` at ``t1`` back to at ``t0``."""
    dim = matrix.shape[0]
    aug = torch.zeros(dim + 1, dim + 1, dtype=x.dtype, device=x.device)
    aug[:dim, :dim] = matrix
    if bias is not None:
        aug[:dim, dim] = bias
    back = torch.linalg.matrix_exp(-time_integral(rate, t0, t1) * aug)
    return x @ back[:dim, :dim].T + back[:dim, dim]


def affine_log_prob(
    x: Tensor,
    matrix: Tensor,
    bias: Tensor | None = None,
    *,
    rate: float = 0.0,
    t0: float = 0.0,
    t1: float = 1.0,
) -> Tensor:
    """The exact ``log p_t1(x)`` of the affine CNF with a standard normal base."""
    z = affine_pull_back(x, matrix, bias, rate=rate, t0=t0, t1=t1)
    return standard_normal_log_prob(z) - time_integral(rate, t0, t1) * torch.trace(matrix)


def conditional_affine_field(
    matrix: Tensor, context_matrix: Tensor, bias: Tensor | None = None
) -> LinearField:
    """The conditional ``linear`` field ``f(t, x, context) = matrix x + bias + C context``.

    Arguments:
        matrix: ``M``, shape ``(dim, dim)``.
        context_matrix: ``C``, shape ``(dim, c)``.
        bias: ``b``, shape ``(dim,)`` (default zeros).
    """
    dim, width = context_matrix.shape
    bias = torch.zeros(dim, dtype=matrix.dtype) if bias is None else bias
    return LinearField(
        dim=dim, matrix=matrix, bias=bias, context_dim=width, context_matrix=context_matrix
    )


def conditional_affine_pull_back(
    x: Tensor,
    context: Tensor,
    matrix: Tensor,
    context_matrix: Tensor,
    bias: Tensor | None = None,
    *,
    t0: float = 0.0,
    t1: float = 1.0,
) -> Tensor:
    """Where ``M x + b + C context`` takes each row of ``x`` at ``t1`` back to at ``t0``.

    Each sample flows along the affine field with its own shift ``b + C c``:
    ``expm(-(t1 - t0) [[M, s], [0, 0]])`` on ``[x; 1]``, one matrix exponential
    per row (differentiable in ``x``, the context and the coefficients).

    Arguments:
        x: shape ``(batch, dim)``.
        context: shape ``(batch, c)``, or ``(c,)`` for every row.
    """
    dim = matrix.shape[0]
    shift = context @ context_matrix.T
    shift = shift.expand(x.shape[0], dim)
    if bias is not None:
        shift = shift + bias
    aug = torch.zeros(x.shape[0], dim + 1, dim + 1, dtype=x.dtype, device=x.device)
    aug[:, :dim, :dim] = matrix
    aug[:, :dim, dim] = shift
    back = torch.linalg.matrix_exp(-(t1 - t0) * aug)
    return (back[:, :dim, :dim] @ x.unsqueeze(-1)).squeeze(-1) + back[:, :dim, dim]


def conditional_affine_log_prob(
    x: Tensor,
    context: Tensor,
    matrix: Tensor,
    context_matrix: Tensor,
    bias: Tensor | None = None,
    *,
    t0: float = 0.0,
    t1: float = 1.0,
) -> Tensor:
    """The exact ``log p_t1(x | context)`` of the conditional affine CNF, standard normal base.

    Given its context, a sample is Gaussian: ``x = expm(S M) z + (expm(S M) - I)
    M^{-1} (b + C c)`` with ``S = t1 - t0`` (for invertible ``M``), so
    ``log p(x | c) = log N(z; 0, I) - S tr(M)`` with ``z`` its pull-back.
    """
    z = conditional_affine_pull_back(x, context, matrix, context_matrix, bias, t0=t0, t1=t1)
    return standard_normal_log_prob(z) - (t1 - t0) * torch.trace(matrix)


class TanhField(VectorField):
    """The elementwise field ``f(x) = a * tanh(x)`` with its closed-form divergence.

    Arguments:
        rates: ``a``, shape ``(dim,)``.
    """

    has_divergence = True

    def __init__(self, *, rates: Tensor) -> None:
        super().__init__()
        self.rates = torch.nn.Parameter(torch.as_tensor(rates).clone())
        self.dim = self.rates.shape[0]

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        """``a * tanh(x)``."""
        return self.rates * torch.tanh(x)

    def divergence(self, t: Tensor, x: Tensor) -> Tensor:
        """``sum_i a_i sech^2(x_i)``."""
        return (self.rates / torch.cosh(x).pow(2)).sum(-1)


def tanh_pull_back(x: Tensor, rates: Tensor, *, t0: float = 0.0, t1: float = 1.0) -> Tensor:
    """Where ``f = a tanh(x)`` takes ``x`` at ``t1`` back to at ``t0``."""
    return torch.asinh(torch.sinh(x) * torch.exp(-rates * (t1 - t0)))


def tanh_log_prob(x: Tensor, rates: Tensor, *, t0: float = 0.0, t1: float = 1.0) -> Tensor:
    """The exact ``log p_t1(x)`` of the ``a tanh(x)`` CNF with a standard normal base.

    ``log|det dz/dx| = sum_i (-a_i (t1 - t0) + log cosh(x_i) - log cosh(z_i))``.
    """
    z = tanh_pull_back(x, rates, t0=t0, t1=t1)
    log_det = (-rates * (t1 - t0) + torch.log(torch.cosh(x)) - torch.log(torch.cosh(z))).sum(-1)
    return standard_normal_log_prob(z) + log_det


def solver_options(
    spec: ComponentSpec,
    *,
    target: float | None = None,
    max_steps: int = 100,
    span: float = 1.0,
    dtype: torch.dtype = torch.float64,
) -> tuple[dict[str, float], Tolerance]:
    """Options that make an integrator accurate to about ``target``, and the bound to check.

    Adaptive integrators get ``rtol = atol = target`` (default
    ``max(1e-9, 10**-(2 order + 1))``, tight yet affordable for low orders);
    fixed-step ones the step (option ``step_size``, or ``n_steps``)
    of :func:`~flowkit.testing.tolerances.fixed_step_for`, but at most
    ``max_steps`` steps over ``span`` (low-order methods then get a looser,
    still model-derived bound). The bound is
    :func:`~flowkit.testing.tolerances.integrator_tolerance` for those options.

    Arguments:
        spec: the integrator's registry spec (its capabilities decide).
        target: the wanted global error (default: by order, see above).
        max_steps: the cap on fixed steps (keeps tests fast).
        span: the length of the time span solved over.
        dtype: the dtype computed in (adds its round-off).

    Raises:
        TypeError: for a fixed-step integrator without a step option.
    """
    if target is None:
        target = max(1e-9, 10.0 ** -(2 * spec.capabilities["order"] + 1))
    return accuracy_options(
        spec.capabilities,
        set(spec.options() or []) or None,
        target=target,
        span=span,
        dtype=dtype,
        max_steps=max_steps,
    )
