"""Score models: ``grad_x log p_s(x)`` of an SDE's marginals, learned or exact.

:class:`ScoreModel` is the contract the probability flow field, the samplers
and the ``score_matching`` objective rely on: ``score(x, s, context=None)`` in
diffusion time ``s``. :class:`NetworkScore` wraps any flowkit vector field as
a learned score (the network takes flow time, through the model's
:class:`~flowkit.sde.DiffusionClock`), either predicting the score itself or
the noise (``score = -eps_hat / sigma(s)``, Ho et al.'s parametrisation).
:class:`GaussianScore` is the exact score of Gaussian data, for tests and as
a reference.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from typing import Literal

import torch
from torch import Tensor, nn

from flowkit.interfaces import SDE
from flowkit.matching.losses import evaluate_field
from flowkit.sde.clock import DiffusionClock

__all__ = ["PARAMETRISATIONS", "GaussianScore", "NetworkScore", "Parametrisation", "ScoreModel"]

Parametrisation = Literal["score", "noise"]
PARAMETRISATIONS: tuple[str, ...] = ("score", "noise")


def _times(s: Tensor, x: Tensor) -> Tensor:
    """``s`` as a tensor in ``x``'s dtype and device (0-d or one per row)."""
    s = torch.as_tensor(s, dtype=x.dtype, device=x.device)
    if s.dim() > 1 or (s.dim() == 1 and s.shape[0] != x.shape[0]):
        raise ValueError(
            f"times must be 0-d or one per row (shape ({x.shape[0]},)), got shape {tuple(s.shape)}."
        )
    return s


class ScoreModel(nn.Module, ABC):
    """The score ``grad_x log p_s(x)`` of the marginals of ``sde``.

    Contract: :meth:`score` takes ``x`` of shape ``(batch, dim)`` and diffusion
    times ``s`` (0-d, or ``(batch,)``) and returns a tensor of ``x``'s shape;
    rows are independent (row ``b`` depends on row ``b`` of ``x``, of ``s``
    and of ``context`` only). ``clock`` maps diffusion time to the flow time
    of the CNF that the model's probability flow field belongs to.

    Arguments:
        sde: the noising process.
        dim: the data dimension.
        t0, t1: the flow-time span of the CNF (default ``[0, 1]``).
    """

    accepts_context: bool = False

    def __init__(self, sde: SDE, dim: int, *, t0: float = 0.0, t1: float = 1.0) -> None:
        super().__init__()
        self.sde = sde
        self.dim = dim
        self.clock = DiffusionClock(start_time=sde.start_time, end_time=sde.end_time, t0=t0, t1=t1)

    @abstractmethod
    def score(self, x: Tensor, s: Tensor, context: Tensor | None = None) -> Tensor:
        """The score at ``x`` and diffusion times ``s``; see the class contract."""

    def forward(self, x: Tensor, s: Tensor, context: Tensor | None = None) -> Tensor:
        return self.score(x, s, context)


class NetworkScore(ScoreModel):
    """A learned score: a flowkit vector field ``net(t, x)`` read as a score or as noise.

    Arguments:
        network: any vector field (``nn.Module`` with ``forward(t, x)``, and a
            ``context`` keyword for a conditional score) of dimension ``dim``.
        sde, dim, t0, t1: as in :class:`ScoreModel`.
        parametrisation: ``"score"`` (the network is the score) or ``"noise"``
            (it predicts the standard normal noise ``z`` of
            ``x = alpha x0 + sigma z``, and the score is ``-net / sigma(s)``);
            ``noise`` keeps the network's output of order one at every time.

    Raises:
        ValueError: for an unknown parametrisation.
    """

    def __init__(
        self,
        network: nn.Module,
        sde: SDE,
        dim: int,
        *,
        parametrisation: Parametrisation = "score",
        t0: float = 0.0,
        t1: float = 1.0,
    ) -> None:
        super().__init__(sde, dim, t0=t0, t1=t1)
        if parametrisation not in PARAMETRISATIONS:
            raise ValueError(
                f"Unknown parametrisation {parametrisation!r}; choose one of "
                f"{', '.join(PARAMETRISATIONS)}."
            )
        self.network = network
        self.parametrisation = parametrisation
        forward = getattr(network, "forward", network)
        self.accepts_context = "context" in inspect.signature(forward).parameters

    def network_output(self, x: Tensor, s: Tensor, context: Tensor | None = None) -> Tensor:
        """The raw network output at diffusion times ``s`` (0-d, or one per row).

        One time is passed to the network as its flow time; one time per row
        goes through :func:`flowkit.matching.evaluate_field` (the network's
        ``per_sample_time`` path, or ``vmap`` over rows), as in flow matching.
        """
        t = self.clock.flow_time(_times(s, x))
        if t.dim() == 1:
            return evaluate_field(self.network, t, x, context)
        if context is not None:
            return self.network(t, x, context=context)  # type: ignore[no-any-return]
        return self.network(t, x)  # type: ignore[no-any-return]

    def score(self, x: Tensor, s: Tensor, context: Tensor | None = None) -> Tensor:
        s = _times(s, x)
        out = self.network_output(x, s, context)
        if self.parametrisation == "score":
            return out
        _, sigma = self.sde.marginal(x, s)
        return -out / sigma

    def extra_repr(self) -> str:
        return f"parametrisation={self.parametrisation!r}, sde={self.sde!r}"


class GaussianScore(ScoreModel):
    """The exact score of ``p_s`` when the data are ``N(mean, covariance)``.

    ``p_s = N(alpha(s) mean, alpha(s)^2 covariance + sigma(s)^2 I)``, so the
    score is ``-(alpha^2 C + sigma^2 I)^{-1} (x - alpha mean)``, solved per
    time by a Cholesky factorisation.

    Arguments:
        mean: shape ``(dim,)``.
        covariance: shape ``(dim, dim)``, symmetric positive definite.
        sde, t0, t1: as in :class:`ScoreModel`.
    """

    def __init__(
        self, mean: Tensor, covariance: Tensor, sde: SDE, *, t0: float = 0.0, t1: float = 1.0
    ) -> None:
        super().__init__(sde, mean.shape[-1], t0=t0, t1=t1)
        self.register_buffer("mean", mean)
        self.register_buffer("covariance", covariance)

    def marginal_covariance(self, s: Tensor) -> tuple[Tensor, Tensor]:
        """``(alpha(s) mean, alpha^2 C + sigma^2 I)`` for one time ``s`` (0-d)."""
        alpha, sigma = self.sde.kernel(s)
        eye = torch.eye(self.dim, dtype=self.covariance.dtype, device=self.covariance.device)
        return alpha * self.mean, alpha**2 * self.covariance + sigma**2 * eye

    def marginal(self, s: Tensor) -> torch.distributions.MultivariateNormal:
        """The exact marginal ``p_s`` at one time ``s``."""
        loc, cov = self.marginal_covariance(torch.as_tensor(s, dtype=self.mean.dtype))
        return torch.distributions.MultivariateNormal(loc, covariance_matrix=cov)

    def score(self, x: Tensor, s: Tensor, context: Tensor | None = None) -> Tensor:
        s = _times(s, x)
        if s.dim() == 0:
            loc, cov = self.marginal_covariance(s)
            return -torch.cholesky_solve((x - loc).T, torch.linalg.cholesky(cov)).T
        rows = [self.score(x[i : i + 1], s[i]) for i in range(x.shape[0])]
        return torch.cat(rows)
