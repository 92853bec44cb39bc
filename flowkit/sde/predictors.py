"""Predictors: one step of the reverse-time SDE, from diffusion time ``s`` down to ``s_next``.

The predictor of a predictor-corrector sampler (Song et al., 2021, Alg. 2)
moves a batch one step down the time grid with the score. Two are built in:

* ``reverse_diffusion``: the reverse of the SDE's *exact* one-step transition.
  Over the step, the forward process is ``x_s = a x_next + G z`` with
  ``a = alpha(s) / alpha(s_next)`` and ``G^2 = sigma(s)^2 - a^2 sigma(s_next)^2``
  (both from the SDE's perturbation kernel); reversing this discrete chain as
  Song et al.'s ``ReverseDiffusionPredictor`` does gives
  ``x_next = x - (a - 1) x + G^2 score(x, s) + G z``. For ``vp`` it is the
  ancestral (DDPM-like) update with ``beta_i = 1 - a^2``, for ``ve`` the
  SMLD update with ``G^2 = sigma_i^2 - sigma_{i-1}^2``; any SDE with an
  exact kernel gets its own, without a per-SDE discretisation.
* ``euler_maruyama``: ``x_next = x - (f(x, s) - g(s)^2 score) h + g(s) sqrt(h) z``
  with ``h = s - s_next > 0``.

Each returns the new state and its mean (the state without the step's noise),
so a sampler can end on the mean ("noise removal").

References:
    Song et al., "Score-Based Generative Modeling through Stochastic
    Differential Equations", ICLR 2021, Appendix E and G.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor

from flowkit.interfaces import SDE

__all__ = [
    "PREDICTORS",
    "EulerMaruyamaPredictor",
    "Predictor",
    "ReverseDiffusionPredictor",
    "ScoreFunction",
    "transition",
]

ScoreFunction = Callable[[Tensor, Tensor], Tensor]
"""``(x, s) -> score``: the model's score at diffusion time ``s`` (0-d), context bound."""


def transition(sde: SDE, s: Tensor, s_next: Tensor) -> tuple[Tensor, Tensor]:
    """``(a, G^2)`` of the exact forward transition ``x_s = a x_next + G z`` (``s_next < s``).

    Arguments:
        sde: the noising SDE (its kernel is exact, see :class:`flowkit.interfaces.SDE`).
        s, s_next: 0-d diffusion times with ``s_next < s``.

    Returns:
        ``a = alpha(s) / alpha(s_next)`` and ``G^2 = sigma(s)^2 - a^2 sigma(s_next)^2``
        (clamped at 0 against round-off).

    Example:
        >>> import torch
        >>> from flowkit.plugins.sdes import VESDE
        >>> sde = VESDE(sigma_min=0.1, sigma_max=1.0)
        >>> s, s_next = torch.tensor(1.0), torch.tensor(0.0)
        >>> a, g2 = transition(sde, s, s_next)
        >>> float(a), round(float(g2), 6)  # sigma_max^2 - sigma_min^2
        (1.0, 0.99)
    """
    alpha, sigma = sde.kernel(s)
    alpha_next, sigma_next = sde.kernel(s_next)
    a = alpha / alpha_next
    return a, (sigma**2 - a**2 * sigma_next**2).clamp_min(0.0)


class Predictor(ABC):
    """One step of the reverse-time SDE of ``sde``, from ``s`` down to ``s_next``.

    Contract: :meth:`step` takes the batch ``x`` at ``s``, the score function,
    the times (0-d tensors, ``s_next < s``) and standard normal noise of
    ``x``'s shape; it evaluates the score once, at ``(x, s)``, and returns
    ``(x_next, mean)``, where ``x_next = mean + (noise term)``.

    Arguments:
        sde: the noising SDE.
    """

    name: ClassVar[str]

    def __init__(self, sde: SDE) -> None:
        self.sde = sde

    @abstractmethod
    def step(
        self, x: Tensor, s: Tensor, s_next: Tensor, score: ScoreFunction, noise: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``(x_next, mean)``; see the class contract."""


class ReverseDiffusionPredictor(Predictor):
    """The reverse of the exact one-step transition (Song et al.'s reverse diffusion).

    Example:
        >>> import torch
        >>> from flowkit.plugins.sdes import VPSDE
        >>> p = ReverseDiffusionPredictor(VPSDE())
        >>> x = torch.zeros(3, 2)
        >>> x_next, mean = p.step(x, torch.tensor(1.0), torch.tensor(0.9),
        ...                       lambda x, s: -x, torch.zeros(3, 2))
        >>> bool((x_next == mean).all() and (mean == 0).all())
        True
    """

    name = "reverse_diffusion"

    def step(
        self, x: Tensor, s: Tensor, s_next: Tensor, score: ScoreFunction, noise: Tensor
    ) -> tuple[Tensor, Tensor]:
        a, g2 = transition(self.sde, s, s_next)
        mean = x - (a - 1.0) * x + g2 * score(x, s)
        return mean + torch.sqrt(g2) * noise, mean


class EulerMaruyamaPredictor(Predictor):
    """One Euler-Maruyama step of the reverse-time SDE with ``ds = s_next - s < 0``.

    Example:
        >>> import torch
        >>> from flowkit.plugins.sdes import VESDE
        >>> p = EulerMaruyamaPredictor(VESDE())
        >>> x = torch.ones(2, 1)
        >>> _, mean = p.step(x, torch.tensor(0.5), torch.tensor(0.4),
        ...                  lambda x, s: torch.zeros_like(x), torch.zeros(2, 1))
        >>> bool((mean == x).all())  # no drift and zero score: the mean stays
        True
    """

    name = "euler_maruyama"

    def step(
        self, x: Tensor, s: Tensor, s_next: Tensor, score: ScoreFunction, noise: Tensor
    ) -> tuple[Tensor, Tensor]:
        h = float(s - s_next)
        mean = x - self.sde.reverse_drift(x, s, score(x, s)) * h
        return mean + self.sde.diffusion(s) * math.sqrt(h) * noise, mean


PREDICTORS: dict[str, type[Predictor]] = {
    cls.name: cls for cls in (ReverseDiffusionPredictor, EulerMaruyamaPredictor)
}
"""The predictors of the ``pc`` sampler, by name."""
