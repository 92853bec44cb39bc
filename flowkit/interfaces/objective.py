"""The objective contract: the training loss of a model on one batch, and its metrics."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar, NamedTuple

import torch
from torch import Tensor

if TYPE_CHECKING:  # pragma: no cover - imports for type hints only
    from flowkit.cnf import CNF

__all__ = ["Objective", "ObjectiveResult"]


class ObjectiveResult(NamedTuple):
    """What :meth:`Objective.loss` returns.

    Attributes:
        loss: the loss to minimise, a 0-d floating tensor with a graph to the
            model's parameters.
        metrics: values to log for this batch, by name, as Python floats
            (detached; e.g. ``{"nll": 1.23}``).
    """

    loss: Tensor
    metrics: dict[str, float]


class Objective(ABC):
    """How a :class:`flowkit.CNF` is trained: a loss of the model on one batch.

    Contract:
        * Options are keyword arguments of the constructor; an unknown option
          is a ``TypeError`` (the registry's validation), a bad value a
          ``ValueError`` or ``TypeError`` raised at construction.
        * :meth:`loss` takes the model, a batch of data of shape
          ``(batch, dim)`` (in the model's dtype and device) and, optionally,
          a ``context`` with one row per sample and a ``torch.Generator`` for
          the objective's own random draws (times, noise, end times). It
          returns an :class:`ObjectiveResult`: a finite 0-d loss whose
          gradients reach every parameter of ``model.field``, and the metrics
          to log as floats.
        * The loss is an average over the batch (it does not grow with the
          batch size), so learning rates carry over between batch sizes.
        * Errors the user can act on are raised as such: a bad batch as
          :class:`~flowkit.errors.InvalidInputError` (from
          ``model.check_input``), a context the objective cannot use as
          :class:`~flowkit.errors.InvalidInputError` saying why, a model
          lacking what the objective needs as
          :class:`~flowkit.errors.IncompatibleComponentsError` from
          :func:`flowkit.compat.ensure_compatible`.
        * :func:`flowkit.testing.objective_checks.check_objective` checks the
          contract; plugin authors run it on their objectives.

    Capabilities (class attributes):
        simulation_free: whether the loss is computed without solving the
            model's ODE (flow matching); then the model's integrator and
            gradient strategy play no part in training.
        requires_trace: whether the loss needs the model's trace estimator
            (maximum likelihood); the compatibility function checks the model
            has one.
        accepts_context: whether :meth:`loss` can use a ``context``; an
            objective without it raises when one is given.
        requires_score_model: whether the loss trains a score model, so the
            model's field must be a probability flow field
            (:class:`flowkit.sde.ProbabilityFlow`, registered as
            ``probability_flow``); the compatibility function checks it.
    """

    simulation_free: ClassVar[bool] = False
    requires_trace: ClassVar[bool] = False
    accepts_context: ClassVar[bool] = False
    requires_score_model: ClassVar[bool] = False
    capability_names: ClassVar[tuple[str, ...]] = (
        "simulation_free",
        "requires_trace",
        "accepts_context",
        "requires_score_model",
    )

    @abstractmethod
    def loss(
        self,
        model: CNF,
        batch: Tensor,
        *,
        context: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> ObjectiveResult:
        """The loss of ``model`` on ``batch`` and the metrics to log; see the class contract."""
