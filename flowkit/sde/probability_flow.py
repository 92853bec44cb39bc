"""The probability flow ODE of a score model, as an ordinary flowkit vector field.

For the SDE ``dx = f(x, s) ds + g(s) dw`` with marginals ``p_s``, the ODE

    dx/ds = f(x, s) - g(s)^2 grad_x log p_s(x) / 2

has the same marginals (Song et al., 2021). :class:`ProbabilityFlow` writes it
in flow time ``t`` (base at ``t0``, data at ``t1``) through the model's
:class:`~flowkit.sde.DiffusionClock`: ``dx/dt = (ds/dt) (f - g^2 score / 2)``.
It is a :class:`~flowkit.interfaces.VectorField` like any other, so a
:class:`flowkit.CNF` built on it gives the score model's exact log-likelihood
(continuity equation, any trace estimator, integrator and gradient strategy)
and samples it deterministically with ``CNF.sample``; its
:meth:`~ProbabilityFlow.base_density` (the SDE's prior) is the CNF's default
base.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from flowkit.interfaces import GaussianPrior, VectorField
from flowkit.sde.score import ScoreModel

__all__ = ["ProbabilityFlow"]


class ProbabilityFlow(VectorField):
    """The probability flow field of ``score_model`` (and its SDE), in flow time.

    Arguments:
        score_model: a :class:`~flowkit.sde.ScoreModel` (learned, as
            :class:`~flowkit.sde.NetworkScore`, or exact).

    Example:
        >>> import torch
        >>> from flowkit import CNF
        >>> from flowkit.plugins.sdes import VPSDE
        >>> from flowkit.sde import GaussianScore, ProbabilityFlow
        >>> sde = VPSDE(start_time=0.0)
        >>> score = GaussianScore(torch.zeros(2), torch.eye(2), sde)
        >>> cnf = CNF(ProbabilityFlow(score), "dopri5", "exact", "backprop", dim=2)
        >>> x = torch.zeros(1, 2)
        >>> round(float(cnf.log_prob(x)), 5)  # N(0, I) stays N(0, I) under VP
        -1.83788
    """

    def __init__(self, score_model: ScoreModel) -> None:
        super().__init__()
        if not isinstance(score_model, ScoreModel):
            raise TypeError(
                f"score_model must be a flowkit.sde.ScoreModel, got {type(score_model).__name__}; "
                "wrap a network with flowkit.sde.NetworkScore(network, sde, dim)."
            )
        self.score_model = score_model
        self.dim = score_model.dim
        self.context_dim = getattr(getattr(score_model, "network", None), "context_dim", 0)

    @property
    def sde(self) -> Any:
        """The noising SDE."""
        return self.score_model.sde

    @property
    def clock(self) -> Any:
        """The map between flow time and diffusion time."""
        return self.score_model.clock

    def forward(self, t: Tensor, x: Tensor, context: Tensor | None = None) -> Tensor:
        """``dx/dt`` at flow time ``t`` (0-d) for ``x`` of shape ``(batch, dim)``.

        Outside the model's domain (diffusion time below the SDE's start time or above its end
        time, where e.g. VP's kernel variance turns negative) the field is
        held at the nearest end: adaptive solvers that step past the end of
        the span and interpolate back (torchdiffeq's) then see a continuous
        field instead of NaN.
        """
        s = self.clock.diffusion_time(t)
        if isinstance(s, Tensor):
            s = s.clamp(self.sde.start_time, self.sde.end_time)
        score = self.score_model.score(x, s, context)
        return self.clock.ds_dt * self.sde.probability_flow_drift(x, s, score)

    def base_density(self) -> GaussianPrior:
        """The SDE's prior at its end time: the density a CNF on this field starts from."""
        return self.sde.prior(self.dim)  # type: ignore[no-any-return]
