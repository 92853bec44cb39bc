"""Closed forms of score-based models: Gaussian data through any SDE's probability flow.

When the data are ``N(mu, Sigma)`` and the SDE has the Gaussian kernel
``N(alpha(s) x0, sigma(s)^2 I)`` (the :class:`~flowkit.interfaces.SDE`
contract), every marginal is Gaussian,
``p_s = N(alpha mu, alpha^2 Sigma + sigma^2 I)``, and its score is exact
(:class:`~flowkit.sde.GaussianScore`). The probability flow ODE with that score,
started from the exact end-time marginal ``p_T``, carries ``p_T`` to the data
density exactly, so a :class:`flowkit.CNF` on it must return
``log N(x; mu, Sigma)`` up to the integrator's error: a closed form for every
integrator, trace estimator and gradient strategy.

The field is affine in ``x``, ``dx/dt = (ds/dt) (a(s) x + g(s)^2 Sigma_s^{-1}
(x - m_s) / 2)`` with ``f(x, s) = a(s) x``, so its divergence is known too:
``(ds/dt) (dim a(s) + g(s)^2 tr(Sigma_s^{-1}) / 2)``.
:class:`GaussianProbabilityFlow` declares it (``has_divergence``), which lets
the ``analytic`` trace estimator run on it and makes cheap reference solves.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowkit.interfaces import SDE
from flowkit.sde import GaussianScore, ProbabilityFlow

__all__ = ["GaussianProbabilityFlow", "gaussian_data_score", "gaussian_problem"]


class GaussianProbabilityFlow(ProbabilityFlow):
    """The probability flow field of Gaussian data, with its closed-form divergence.

    Arguments:
        score_model: the exact score of the Gaussian data
            (:class:`~flowkit.sde.GaussianScore`).

    Example:
        >>> import torch
        >>> from flowkit.plugins.sdes import VPSDE
        >>> from flowkit.sde import GaussianScore
        >>> sde = VPSDE(start_time=0.0)
        >>> eye = torch.eye(2, dtype=torch.float64)
        >>> field = GaussianProbabilityFlow(GaussianScore(torch.zeros(2).double(), eye, sde))
        >>> t = torch.tensor(0.5, dtype=torch.float64)
        >>> x = torch.zeros(1, 2, dtype=torch.float64)
        >>> float(field.divergence(t, x).abs().max()) < 1e-12  # N(0, I) is fixed under VP
        True
    """

    has_divergence = True

    def __init__(self, score_model: GaussianScore) -> None:
        if not isinstance(score_model, GaussianScore):
            raise TypeError(
                "GaussianProbabilityFlow needs the exact score of Gaussian data "
                f"(flowkit.sde.GaussianScore), got {type(score_model).__name__}."
            )
        super().__init__(score_model)

    def _drift_trace(self, s: Tensor, like: Tensor) -> Tensor:
        """``tr(df/dx) = dim a(s)`` of the affine drift, read off the drift itself."""
        eye = torch.eye(self.dim, dtype=like.dtype, device=like.device)
        origin = torch.zeros(1, self.dim, dtype=like.dtype, device=like.device)
        return torch.diagonal(self.sde.drift(eye, s) - self.sde.drift(origin, s)).sum()

    def rate(self, n_times: int = 1025) -> float:
        """The field's largest rate ``max_t ||df/dx||_2`` over a grid of flow times.

        The Jacobian ``(ds/dt) (a(s) I + g(s)^2 Sigma_s^{-1} / 2)`` is symmetric, so
        its norm is its largest absolute eigenvalue; the maximum is taken over
        ``n_times`` equally spaced times of ``[t0, t1]`` (including both ends).
        Error models of fixed-step methods scale with it (a step ``h`` acts like
        ``rate * h`` on a problem of unit rate).
        """
        dtype = self.score_model.covariance.dtype
        clock = self.clock
        worst = 0.0
        for t in torch.linspace(clock.t0, clock.t1, n_times, dtype=dtype):
            s = torch.as_tensor(clock.diffusion_time(t), dtype=dtype)
            _, covariance = self.score_model.marginal_covariance(s)
            eigen = torch.linalg.eigvalsh(covariance)
            drift = self._drift_trace(s, covariance) / self.dim
            rates = clock.ds_dt * (drift + 0.5 * self.sde.diffusion(s) ** 2 / eigen)
            worst = max(worst, float(rates.abs().max()))
        return worst

    def divergence(self, t: Tensor, x: Tensor, context: Tensor | None = None) -> Tensor:
        """``(ds/dt) (tr(df/dx) + g(s)^2 tr(Sigma_s^{-1}) / 2)`` per row, shape ``(batch,)``."""
        s = torch.as_tensor(self.clock.diffusion_time(t), dtype=x.dtype, device=x.device)
        _, covariance = self.score_model.marginal_covariance(s)
        chol = torch.linalg.cholesky(covariance)
        eye = torch.eye(self.dim, dtype=x.dtype, device=x.device)
        inverse_trace = torch.linalg.solve_triangular(chol, eye, upper=False).pow(2).sum()
        rate = self._drift_trace(s, x) + 0.5 * self.sde.diffusion(s) ** 2 * inverse_trace
        return (self.clock.ds_dt * rate).expand(x.shape[0])


def gaussian_problem(
    mean: Tensor, covariance: Tensor, sde: SDE
) -> tuple[GaussianProbabilityFlow, torch.distributions.MultivariateNormal]:
    """The probability flow field of ``N(mean, covariance)`` data and its exact base.

    Arguments:
        mean: shape ``(dim,)``.
        covariance: shape ``(dim, dim)``, symmetric positive definite.
        sde: the noising process; give it ``start_time=0`` so that the flow ends
            at the data density itself (at ``start_time = eps`` it ends at
            ``p_eps``, which differs from the data density by ``O(eps)``).

    Returns:
        ``(field, base)``: a :class:`GaussianProbabilityFlow` and the exact
        end-time marginal ``p_T`` to use as the CNF's ``base``. A CNF on them
        has ``log_prob(x) = log N(x; mean, covariance)``.

    Example:
        >>> import torch
        >>> from flowkit import CNF
        >>> from flowkit.plugins.sdes import VESDE
        >>> mean = torch.zeros(2, dtype=torch.float64)
        >>> cov = torch.tensor([[1.0, 0.5], [0.5, 2.0]], dtype=torch.float64)
        >>> field, base = gaussian_problem(mean, cov, VESDE(start_time=0.0, sigma_max=3.0))
        >>> cnf = CNF(field, "dopri5", "analytic", "backprop", dim=2, base=base,
        ...           integrator_options={"rtol": 1e-10, "atol": 1e-10})
        >>> x = torch.tensor([[0.3, -0.2]], dtype=torch.float64)
        >>> want = torch.distributions.MultivariateNormal(mean, cov).log_prob(x)
        >>> float((cnf.log_prob(x) - want).abs()) < 1e-7
        True
    """
    score = GaussianScore(mean, covariance, sde)
    end = torch.tensor(sde.end_time, dtype=mean.dtype, device=mean.device)
    return GaussianProbabilityFlow(score), score.marginal(end)


def gaussian_data_score(x: Tensor, mean: Tensor, covariance: Tensor) -> Tensor:
    """``grad_x log N(x; mean, covariance) = -covariance^{-1} (x - mean)``, per row."""
    return -torch.linalg.solve(covariance, (x - mean).T).T
