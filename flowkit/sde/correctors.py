"""Correctors: Markov chain steps that leave the marginal ``p_s`` invariant, at one time ``s``.

The corrector of a predictor-corrector sampler (Song et al., 2021, Alg. 2
and 4) pulls the batch towards ``p_s`` after (here: before, see
:func:`flowkit.sde.sample`) each predictor step, using the score only:

* ``langevin``: unadjusted Langevin dynamics
  ``x <- x + eps score(x, s) + sqrt(2 eps) z``, with the step size set by the
  signal-to-noise ratio ``snr`` as in Song et al.'s Algorithm 4 and code:
  ``eps = 2 r (snr ||z|| / ||score||)^2``, the norms averaged over the batch
  (one step size for the whole batch), and ``r = a^2`` the squared drift
  factor of the SDE's transition to the next time (``1 - beta_i`` for
  ``vp``/``subvp``, 1 for ``ve``; see :func:`flowkit.sde.predictors.transition`).
* ``none``: no correction.

References:
    Song et al., "Score-Based Generative Modeling through Stochastic
    Differential Equations", ICLR 2021, Appendix G, Algorithm 4.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor

from flowkit.interfaces import SDE
from flowkit.sde.predictors import ScoreFunction, transition

__all__ = ["CORRECTORS", "Corrector", "LangevinCorrector", "NoCorrector", "NoiseSource"]

NoiseSource = Callable[[Tensor], Tensor]
"""``like -> z``: standard normal noise of ``like``'s shape, dtype and device."""


class Corrector(ABC):
    """``steps`` corrector moves at diffusion time ``s`` (the next grid time is ``s_next``).

    Contract: :meth:`correct` returns the corrected batch (``x``'s shape) and
    the number of score evaluations it made.

    Arguments:
        sde: the noising SDE.
        snr: the signal-to-noise ratio (positive), for correctors that use it.
        steps: corrector moves per time (a positive integer).
    """

    name: ClassVar[str]

    def __init__(self, sde: SDE, *, snr: float, steps: int) -> None:
        self.sde = sde
        self.snr = snr
        self.steps = steps

    @abstractmethod
    def correct(
        self, x: Tensor, s: Tensor, s_next: Tensor, score: ScoreFunction, noise: NoiseSource
    ) -> tuple[Tensor, int]:
        """``(x_corrected, score evaluations)``; see the class contract."""


class LangevinCorrector(Corrector):
    """Unadjusted Langevin moves with Song et al.'s signal-to-noise step size.

    Example:
        >>> import torch
        >>> from flowkit.plugins.sdes import VESDE
        >>> c = LangevinCorrector(VESDE(), snr=0.16, steps=2)
        >>> g = torch.Generator().manual_seed(0)
        >>> noise = lambda like: torch.randn(like.shape, generator=g)
        >>> x, nfe = c.correct(torch.ones(4, 2), torch.tensor(0.5), torch.tensor(0.4),
        ...                    lambda x, s: -x, noise)
        >>> x.shape, nfe
        (torch.Size([4, 2]), 2)
    """

    name = "langevin"

    def correct(
        self, x: Tensor, s: Tensor, s_next: Tensor, score: ScoreFunction, noise: NoiseSource
    ) -> tuple[Tensor, int]:
        a, _ = transition(self.sde, s, s_next)
        ratio = float(a) ** 2
        for _ in range(self.steps):
            grad = score(x, s)
            z = noise(x)
            grad_norm = float(torch.linalg.vector_norm(grad, dim=-1).mean())
            noise_norm = float(torch.linalg.vector_norm(z, dim=-1).mean())
            if grad_norm == 0.0:  # at the mode of every sample: Langevin has no scale
                continue
            eps = 2.0 * ratio * (self.snr * noise_norm / grad_norm) ** 2
            x = x + eps * grad + math.sqrt(2.0 * eps) * z
        return x, self.steps


class NoCorrector(Corrector):
    """No correction: the ``pc`` sampler with it is its predictor alone."""

    name = "none"

    def correct(
        self, x: Tensor, s: Tensor, s_next: Tensor, score: ScoreFunction, noise: NoiseSource
    ) -> tuple[Tensor, int]:
        return x, 0


CORRECTORS: dict[str, type[Corrector]] = {cls.name: cls for cls in (LangevinCorrector, NoCorrector)}
"""The correctors of the ``pc`` sampler, by name."""
