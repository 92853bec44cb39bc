"""Built-in objectives: maximum likelihood, flow matching and rectified flow.

* ``maximum_likelihood``: the negative log-likelihood through the model's ODE
  with its trace estimator, plus weighted regularizers and STEER's random end
  time; the loss flowkit's trainer has always minimised.
* ``flow_matching``: regression of the field on the velocity of straight paths
  between base noise and data (simulation-free), with an ``independent`` or
  minibatch-``ot`` coupling; built on :mod:`flowkit.matching`.
* ``rectified_flow``: a reflow stage: flow matching on pairs ``(z, teacher(z))``
  of base noise and a frozen teacher's sample of it.
* ``score_matching`` (in :mod:`flowkit.plugins.score_matching`, registered
  here): denoising score matching of a ``probability_flow`` field's score.

Time. :mod:`flowkit.matching` puts the base at ``s = 0`` and data at
``s = 1``; a CNF's base is at ``t0`` and its data at ``t1``. The simulation-free
objectives train ``(t1 - t0) * f(t0 + s (t1 - t0), x)`` on the matching time
``s``, which is the field itself for the default span ``[0, 1]``, so the trained
CNF carries base to data over its own span.

References:
    Grathwohl et al., "FFJORD", ICLR 2019.
    Finlay et al., "How to train your neural ODE", ICML 2020.
    Ghosh et al., "STEER: Simple Temporal Regularization For Neural ODEs", NeurIPS 2020.
    Lipman et al., "Flow Matching for Generative Modeling", ICLR 2023.
    Tong et al., "Improving and generalizing flow-based generative models with
    minibatch optimal transport", TMLR 2024.
    Liu et al., "Flow Straight and Fast", ICLR 2023.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from flowkit.cnf import CNF, StandardNormal
from flowkit.compat import ensure_compatible
from flowkit.errors import InvalidInputError
from flowkit.hookspecs import Register, hookimpl
from flowkit.interfaces import Objective, ObjectiveResult
from flowkit.matching import (
    COUPLINGS,
    check_sigma,
    flow_matching_loss,
    rectified_flow_loss,
    reflow_pairs,
)

__all__ = [
    "FlowMatching",
    "MaximumLikelihood",
    "RectifiedFlow",
    "flowkit_register_objectives",
]


def _name(objective: Objective) -> str:
    return str(getattr(objective, "registry_name", type(objective).__name__))


def _check_model(objective: Objective, model: object) -> CNF:
    if not isinstance(model, CNF):
        raise TypeError(
            f"The objective {_name(objective)!r} trains a flowkit.CNF, got "
            f"{type(model).__name__}; build the model with flowkit.CNF(...)."
        )
    return model


def _check_context(context: Tensor | None, batch: Tensor) -> None:
    if context is None:
        return
    if not isinstance(context, Tensor) or context.ndim == 0 or context.shape[0] != batch.shape[0]:
        got = tuple(context.shape) if isinstance(context, Tensor) else type(context).__name__
        raise InvalidInputError(
            f"context must be a tensor with one row per sample ({batch.shape[0]} rows), got {got}."
        )


def _checked_inputs(
    objective: Objective, model: object, batch: Tensor, context: Tensor | None
) -> tuple[CNF, Tensor]:
    """What every objective checks first: a CNF compatible with it, a valid batch, and
    a context with one row per sample (or none)."""
    cnf = _check_model(objective, model)
    ensure_compatible(objective=objective, field=cnf.field, trace=cnf.trace)
    batch = cnf.check_input(batch, "batch")
    _check_context(context, batch)
    return cnf, batch


def _noise(model: CNF, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Base samples shaped like ``like``: from ``generator`` when the base takes one."""
    if generator is not None and isinstance(model.base, StandardNormal):
        return model.base.sample(
            (like.shape[0],), generator=generator, dtype=like.dtype, device=like.device
        )
    return model.sample_base(like.shape[0])


class _MatchingTime:
    """The CNF's field on the matching time ``s``: ``(t1 - t0) f(t0 + s (t1 - t0), x)``."""

    def __init__(self, field: nn.Module, t0: float, t1: float) -> None:
        self.field = field
        self.t0 = t0
        self.span = t1 - t0
        self.per_sample_time = bool(getattr(field, "per_sample_time", False))

    def __call__(self, s: Tensor, x: Tensor, **kwargs: Any) -> Tensor:
        return self.span * self.field(self.t0 + self.span * s, x, **kwargs)


def _matching_field(model: CNF) -> Callable[..., Tensor]:
    if model.t0 == 0.0 and model.t1 == 1.0:
        return model.field
    return _MatchingTime(model.field, model.t0, model.t1)


class MaximumLikelihood(Objective):
    """The negative log-likelihood, plus weighted regularizers, with STEER's end time.

    ``loss = -mean log p(x) + sum_k w_k mean R_k(x)``, where ``log p`` and the
    penalties ``R_k`` of the model's regularizers come from one backward solve
    (:meth:`flowkit.CNF.log_prob_and_regularization`). With a ``context`` (one
    row per sample, for a conditional CNF) it is ``-mean log p(x | context)``.
    With ``steer > 0`` the data time of that solve is ``t1 + steer (2u - 1)``, ``u ~ U[0, 1)`` drawn
    from ``generator`` (STEER). The trace estimator's probes come from the
    model's own generator (its ``seed``), not from ``generator``. This is the
    loss of :meth:`flowkit.train.Trainer.compute_loss`, value for value.

    Arguments:
        regularizers: a weight ``>= 0`` for each of the model's regularizers,
            keyed by the name it was given to the CNF with (weight 0 logs a
            penalty without training on it).
        steer: the half-width of STEER's end-time interval, ``>= 0``
            (``0``: always the model's ``t1``); below ``|t1 - t0|``.

    Metrics: ``nll``, ``reg_<name>`` per regularizer, and ``t1`` with STEER.

    Raises:
        ValueError, TypeError: for a negative or non-numeric weight or steer.
        InvalidInputError: in :meth:`loss`, for a bad batch or context (one row
            per sample; :meth:`flowkit.CNF.check_context` says the rest), for
            weights that do not match the model's regularizers, or a steer too
            wide for the model's span.
        IncompatibleComponentsError: for a model without a trace estimator.
    """

    simulation_free: ClassVar[bool] = False
    requires_trace: ClassVar[bool] = True
    accepts_context: ClassVar[bool] = True

    def __init__(
        self, *, regularizers: Mapping[str, float] | None = None, steer: float = 0.0
    ) -> None:
        weights = dict(regularizers or {})
        for name, weight in weights.items():
            if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
                raise TypeError(f"regularizers[{name!r}] must be a number, got {weight!r}.")
            if not (math.isfinite(float(weight)) and weight >= 0):
                raise ValueError(f"regularizers[{name!r}] must be finite and >= 0, got {weight}.")
        if isinstance(steer, bool) or not isinstance(steer, numbers.Real):
            raise TypeError(f"steer must be a number, got {steer!r}.")
        if not (math.isfinite(float(steer)) and steer >= 0):
            raise ValueError(f"steer must be finite and >= 0, got {steer}.")
        self.weights = {name: float(w) for name, w in weights.items()}
        self.steer = float(steer)

    def _weights(self, model: CNF, like: Tensor) -> tuple[list[str], Tensor]:
        names = [str(getattr(r, "registry_name", type(r).__name__)) for r in model.regularizers]
        extra = sorted(set(self.weights) - set(names))
        missing = [n for n in names if n not in self.weights]
        if extra or missing:
            raise InvalidInputError(
                f"maximum_likelihood weights {sorted(self.weights) or '(none)'} do not match "
                f"the model's regularizers {names or '(none)'}: "
                + (f"no regularizer {extra} on the model; " if extra else "")
                + (f"no weight for {missing}; " if missing else "")
                + "give one weight per regularizer of the CNF (0 logs it without training on it)."
            )
        weights = torch.tensor(
            [self.weights[n] for n in names], dtype=like.dtype, device=like.device
        )
        return names, weights

    def _end_time(self, model: CNF, generator: torch.Generator | None) -> float | None:
        if self.steer <= 0:
            return None
        if self.steer >= abs(model.t1 - model.t0):
            raise InvalidInputError(
                f"steer={self.steer} must be smaller than the model's time span "
                f"|t1 - t0| = {abs(model.t1 - model.t0)}, or the end time could reach the "
                "base time; use e.g. steer = |t1 - t0| / 2."
            )
        u = float(torch.rand((), generator=generator, dtype=torch.float64))
        return model.t1 + self.steer * (2.0 * u - 1.0)

    def loss(
        self,
        model: CNF,
        batch: Tensor,
        *,
        context: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> ObjectiveResult:
        """``-mean log p(batch)`` plus the weighted mean penalties; see the class docstring."""
        model, batch = _checked_inputs(self, model, batch, context)
        names, weights = self._weights(model, batch)
        t1 = self._end_time(model, generator)
        logp, reg = model.log_prob_and_regularization(batch, t1=t1, context=context)
        nll = -logp.mean()
        loss = nll
        metrics = {"nll": float(nll.detach())}
        if names:
            means = reg.mean(dim=0)
            loss = loss + (weights * means).sum()
            for name, value in zip(names, means.detach().tolist(), strict=True):
                metrics[f"reg_{name}"] = float(value)
        if t1 is not None:
            metrics["t1"] = t1
        return ObjectiveResult(loss, metrics)


class FlowMatching(Objective):
    """Conditional flow matching on straight paths from base noise to data.

    For each call, base noise ``x0`` (one row per data row) is drawn, coupled
    with the batch, and the field is regressed on the paths' velocity
    (:func:`flowkit.matching.flow_matching_loss`): no ODE is solved. The noise,
    the times and the path noise come from ``generator`` when the model's base
    is the standard normal (otherwise the noise comes from ``model.sample_base``).

    Arguments:
        coupling: ``"independent"`` (rows paired as drawn) or ``"ot"``
            (minibatch exact optimal transport).
        sigma: the width of the conditional path, ``>= 0``.

    A ``context`` is passed to the field as ``context=`` (coupled with the
    data); the field must accept it.

    Metrics: ``fm_loss``.

    Raises:
        ValueError: for an unknown coupling or a negative sigma.
        TypeError: for a non-numeric sigma.
        InvalidInputError: in :meth:`loss`, for a bad batch or context.
    """

    simulation_free: ClassVar[bool] = True
    requires_trace: ClassVar[bool] = False
    accepts_context: ClassVar[bool] = True

    def __init__(self, *, coupling: str = "independent", sigma: float = 0.0) -> None:
        if coupling not in COUPLINGS:
            raise ValueError(
                f"Unknown coupling {coupling!r}; choose one of: {', '.join(COUPLINGS)}."
            )
        self.coupling = coupling
        self.sigma = check_sigma(sigma)

    def loss(
        self,
        model: CNF,
        batch: Tensor,
        *,
        context: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> ObjectiveResult:
        """The flow-matching loss of ``model.field`` on ``batch``."""
        model, batch = _checked_inputs(self, model, batch, context)
        x0 = _noise(model, batch, generator)
        loss = flow_matching_loss(
            _matching_field(model),
            x0,
            batch,
            coupling=self.coupling,
            sigma=self.sigma,
            context=context,
            generator=generator,
        )
        return ObjectiveResult(loss, {"fm_loss": float(loss.detach())})


class RectifiedFlow(Objective):
    """A reflow stage: flow matching on pairs of noise and a frozen teacher's sample of it.

    Decision: the objective holds a *sampler*, not a fixed set of pairs. At
    construction it keeps a frozen copy of ``teacher`` (a deep copy of a CNF,
    so the model being trained may be its own teacher: the stage then starts
    from the current model, and training does not move the pairs). Each call
    draws fresh noise ``z`` (one row per batch row), pushes it through the
    teacher (:func:`flowkit.matching.reflow_pairs`, without gradients) and
    returns :func:`flowkit.matching.rectified_flow_loss` on the pairs. The
    batch's values are not used, only its size, dtype and device: the pairs
    are the training data. Fresh pairs every step cost one teacher solve per
    step but never revisit a pair (an unbounded pair set); to train on a fixed
    set, build it once with :func:`flowkit.matching.reflow_pairs` and use
    :func:`flowkit.matching.rectified_flow_loss` directly.

    Arguments:
        teacher: the previous stage: a :class:`flowkit.CNF` (its ``transform``
            maps noise to samples; a conditional CNF maps each noise row under
            its own context row, so the pairs are drawn per context) or any
            callable ``z -> x`` (called as ``teacher(z, context=context)`` when a
            context is given).
        batch_size: push the noise through the teacher in chunks of at most
            this many rows (``None``: all at once).

    Metrics: ``rf_loss``.

    Raises:
        TypeError: if ``teacher`` is not a CNF or callable.
        ValueError: for a bad ``batch_size``.
        InvalidInputError: in :meth:`loss`, for a bad batch or context (a CNF
            teacher checks the context as :meth:`flowkit.CNF.check_context` does).
    """

    simulation_free: ClassVar[bool] = True
    requires_trace: ClassVar[bool] = False
    accepts_context: ClassVar[bool] = True

    def __init__(
        self, *, teacher: CNF | Callable[..., Tensor], batch_size: int | None = None
    ) -> None:
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        ):
            raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}.")
        if isinstance(teacher, CNF):
            frozen = copy.deepcopy(teacher)
            frozen.requires_grad_(False)
            frozen.eval()
            self.teacher: CNF | Callable[..., Tensor] = frozen
        elif callable(teacher):
            self.teacher = teacher
        else:
            raise TypeError(
                f"teacher must be a flowkit.CNF or a callable z -> x, got {type(teacher).__name__}."
            )
        self.batch_size = batch_size

    def loss(
        self,
        model: CNF,
        batch: Tensor,
        *,
        context: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> ObjectiveResult:
        """The rectified-flow loss of ``model.field`` on fresh pairs from the teacher."""
        model, batch = _checked_inputs(self, model, batch, context)
        sampler = self.teacher.transform if isinstance(self.teacher, CNF) else self.teacher
        z = _noise(model, batch, generator)
        pairs = reflow_pairs(sampler, z, context=context, batch_size=self.batch_size)
        loss = rectified_flow_loss(_matching_field(model), pairs, generator=generator)
        return ObjectiveResult(loss, {"rf_loss": float(loss.detach())})


@hookimpl
def flowkit_register_objectives(register: Register) -> None:
    """Register the built-in objectives."""
    register("maximum_likelihood", MaximumLikelihood, aliases=("mle", "likelihood"))
    register("flow_matching", FlowMatching, aliases=("fm", "cfm"))
    register("rectified_flow", RectifiedFlow, aliases=("reflow",))
    from flowkit.plugins.score_matching import ScoreMatching  # its own module: this one is full

    register("score_matching", ScoreMatching, aliases=("sm", "dsm"))
