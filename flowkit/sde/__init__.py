"""Score-based generative models: SDEs, scores, the probability flow ODE, reverse-time sampling.

The noising SDEs themselves are plugins of kind ``sde``
(:class:`flowkit.interfaces.SDE`; built-ins ``vp``, ``subvp``, ``ve``), SDE
solvers plugins of kind ``sde_integrator``
(:class:`flowkit.interfaces.SDEIntegrator`). This package holds what ties them
to flowkit's CNFs:

* :class:`DiffusionClock`: the one map between diffusion time (data at 0,
  noise at T) and flow time (base at ``t0``, data at ``t1``);
* :class:`ScoreModel`, :class:`NetworkScore`, :class:`GaussianScore`: scores;
* :class:`ProbabilityFlow`: the probability flow ODE as a vector field, so a
  :class:`flowkit.CNF` on it gives exact likelihoods and ODE samples;
* :func:`sample`: the samplers of a score model (reverse-time SDE,
  predictor-corrector, probability flow ODE), with the predictors and
  correctors of :mod:`flowkit.sde.predictors` and :mod:`flowkit.sde.correctors`;
* :func:`compare_samplers`: sample quality against sampler cost, side by side;
* :func:`denoising_score_matching_loss`: the loss of the ``score_matching``
  objective, usable on any :class:`ScoreModel` without the registry.
"""

from flowkit.sde.clock import DiffusionClock
from flowkit.sde.comparison import SamplerScore, SamplerSetting, compare_samplers
from flowkit.sde.losses import WEIGHTINGS, denoising_score_matching_loss
from flowkit.sde.probability_flow import ProbabilityFlow
from flowkit.sde.sampling import SAMPLERS, SampleResult, SamplerOptionError, sample
from flowkit.sde.score import (
    PARAMETRISATIONS,
    GaussianScore,
    NetworkScore,
    Parametrisation,
    ScoreModel,
)

__all__ = [
    "PARAMETRISATIONS",
    "DiffusionClock",
    "GaussianScore",
    "NetworkScore",
    "Parametrisation",
    "ProbabilityFlow",
    "SAMPLERS",
    "WEIGHTINGS",
    "SampleResult",
    "SamplerOptionError",
    "ScoreModel",
    "SamplerScore",
    "SamplerSetting",
    "compare_samplers",
    "denoising_score_matching_loss",
    "sample",
]
