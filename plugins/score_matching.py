"""Built-in objective ``score_matching``: denoising score matching of a probability flow field.

A score-based model in flowkit is a :class:`flowkit.CNF` whose field is the
probability flow ODE of a score model (:class:`flowkit.sde.ProbabilityFlow`,
registered as the field ``probability_flow``). This objective trains that
score model by continuous-time denoising score matching
(:func:`flowkit.sde.losses.denoising_score_matching_loss`), without solving
the ODE; the trained CNF then gives exact likelihoods through the probability
flow and samples like any other CNF. Registered by the ``objectives`` plugin.

References:
    Song et al., "Score-Based Generative Modeling through Stochastic
    Differential Equations", ICLR 2021.
    Song et al., "Maximum Likelihood Training of Score-Based Diffusion
    Models", NeurIPS 2021.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from flowkit.plugins.objectives import _checked_inputs
from torch import Tensor, nn

from flowkit.cnf import CNF
from flowkit.errors import InvalidInputError
from flowkit.interfaces import Objective, ObjectiveResult
from flowkit.sde import ProbabilityFlow, ScoreModel
from flowkit.sde.losses import check_reduction, check_weighting, denoising_score_matching_loss

__all__ = ["ScoreMatching", "score_model_of"]


def score_model_of(field: nn.Module) -> ScoreModel:
    """The score model inside a probability flow field (also one bound to a context).

    Raises:
        TypeError: when ``field`` holds no probability flow field (the
            objective's compatibility check reports this case first, as an
            :class:`~flowkit.errors.IncompatibleComponentsError`).
    """
    inner: object = field
    while not isinstance(inner, ProbabilityFlow) and isinstance(
        getattr(inner, "field", None), nn.Module
    ):
        inner = inner.field  # type: ignore[attr-defined]
    if not isinstance(inner, ProbabilityFlow):
        raise TypeError(f"{type(field).__name__} is not a probability flow field.")
    return inner.score_model  # type: ignore[no-any-return]


class ScoreMatching(Objective):
    """Continuous-time denoising score matching of the model's score network.

    Each call draws one diffusion time ``s ~ U(start_time, end_time)`` of the
    field's SDE and one noise vector ``z ~ N(0, I)`` per row of the batch
    (from ``generator``), perturbs the data to ``x_s = alpha x0 + sigma z``
    and returns the weighted squared error of the score against the
    conditional score ``-z / sigma``, averaged over the batch (see
    :mod:`flowkit.sde.losses`). No ODE is solved: the model's integrator,
    trace estimator and gradient strategy play no part in training, only in
    evaluating the trained model.

    Arguments:
        weighting: ``"sigma2"`` (default; ``lambda = sigma^2``, i.e.
            ``||sigma score + z||^2``, which is the noise-prediction loss
            ``||eps_hat - z||^2`` for a field with ``parametrisation="noise"``)
            or ``"likelihood"`` (``lambda = g^2``, Song et al.'s maximum
            likelihood weighting).
        reduction: ``"sum"`` (default; squared error summed over dimensions,
            Song et al.'s convention) or ``"mean"`` (averaged; the loss scale
            does not grow with the dimension).
        importance_sampling: with ``weighting="likelihood"``, draw times with
            density proportional to ``g^2 / sigma^2`` and reweight: the same
            loss in expectation with a much smaller variance (default False).

    A ``context`` (one row per sample) goes to a conditional score network
    (``field_options={"context_dim": c}``).

    Metrics: ``score_matching_loss``.

    Raises:
        ValueError: for an unknown weighting or reduction, or importance
            sampling without the likelihood weighting.
        IncompatibleComponentsError: in :meth:`loss`, for a model whose field
            is not a probability flow field (use ``--field probability_flow``).
        InvalidInputError: in :meth:`loss`, for a bad batch or context, or a
            model whose time span differs from its score model's clock.

    Example:
        >>> import torch, flowkit
        >>> model = flowkit.CNF("probability_flow", "dopri5", "exact", "backprop", dim=2,
        ...                     field_options={"score_field_options": {"hidden": [16]}})
        >>> result = ScoreMatching().loss(model, torch.randn(64, 2),
        ...                               generator=torch.Generator().manual_seed(0))
        >>> sorted(result.metrics), result.loss.requires_grad
        (['score_matching_loss'], True)
    """

    simulation_free: ClassVar[bool] = True
    requires_trace: ClassVar[bool] = False
    accepts_context: ClassVar[bool] = True
    requires_score_model: ClassVar[bool] = True

    def __init__(
        self,
        *,
        weighting: str = "sigma2",
        reduction: str = "sum",
        importance_sampling: bool = False,
    ) -> None:
        self.weighting = check_weighting(weighting)
        self.reduction = check_reduction(reduction)
        if not isinstance(importance_sampling, bool):
            raise TypeError(
                f"importance_sampling must be True or False, got {importance_sampling!r}."
            )
        if importance_sampling and self.weighting != "likelihood":
            raise ValueError(
                "importance_sampling applies to weighting='likelihood' only (the 'sigma2' "
                "weighting is already flat in time); drop it or set weighting='likelihood'."
            )
        self.importance_sampling = importance_sampling

    def loss(
        self,
        model: CNF,
        batch: Tensor,
        *,
        context: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> ObjectiveResult:
        """The denoising score matching loss of the model's score network on ``batch``."""
        model, batch = _checked_inputs(self, model, batch, context)
        context = model.check_context(context, batch)
        score_model = score_model_of(model.field)
        clock = score_model.clock
        if (float(model.t0), float(model.t1)) != (clock.t0, clock.t1):
            raise InvalidInputError(
                f"The CNF runs over t in [{float(model.t0):g}, {float(model.t1):g}] but its "
                f"probability flow field maps diffusion time onto [{clock.t0:g}, {clock.t1:g}]; "
                "build the CNF with the field's span (the default t0=0, t1=1)."
            )
        loss = denoising_score_matching_loss(
            score_model,
            batch,
            context=context,
            weighting=self.weighting,  # type: ignore[arg-type]
            reduction=self.reduction,
            importance_sampling=self.importance_sampling,
            generator=generator,
        )
        return ObjectiveResult(loss, {"score_matching_loss": float(loss.detach())})
