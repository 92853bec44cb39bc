"""The ``probability_flow`` vector field: a score network and a noising SDE, by name.

A registered field like any other (``CNF("probability_flow", ...)``,
``flowkit train --field probability_flow``): it builds the score network from
another registered field (``score_field``, default ``mlp``) and the SDE from
the ``sde`` kind (default ``vp``), and evaluates the probability flow ODE of
:class:`flowkit.sde.ProbabilityFlow`. The ``score_matching`` objective trains
its score network; likelihoods and ODE samples come from the CNF as always.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowkit.sde import NetworkScore, Parametrisation, ProbabilityFlow

__all__ = ["ProbabilityFlowField"]


class ProbabilityFlowField(ProbabilityFlow):
    """The probability flow ODE of a score network, built from registered names.

    Arguments:
        dim: the data dimension.
        score_field: the registered vector field used as the score network
            (default ``"mlp"``), built with ``dim`` and ``context_dim``.
        score_field_options: its options (e.g. ``{"hidden": [128, 128]}``).
        sde: the registered SDE (``"vp"``, ``"subvp"``, ``"ve"``, ...).
        sde_options: its options (e.g. ``{"beta_max": 10.0}``).
        parametrisation: ``"noise"`` (default; the network predicts the noise,
            score ``= -net / sigma(s)``) or ``"score"``.
        context_dim: the context size of a conditional score network (0: none).
        t0, t1: the flow-time span of the CNF the field belongs to (default
            ``[0, 1]``): its diffusion clock maps ``t0`` to the SDE's end time
            and ``t1`` to its start time (``flowkit train`` sets ``t1`` to the
            run's).

    Raises:
        UnknownComponentError: for an unknown ``score_field`` or ``sde``.
        TypeError, ValueError: for options those components refuse.
    """

    def __init__(
        self,
        *,
        dim: int,
        score_field: str = "mlp",
        score_field_options: Mapping[str, Any] | None = None,
        sde: str = "vp",
        sde_options: Mapping[str, Any] | None = None,
        parametrisation: Parametrisation = "noise",
        context_dim: int = 0,
        t0: float = 0.0,
        t1: float = 1.0,
    ) -> None:
        from flowkit.registry import get_registry

        registry = get_registry()
        options = dict(score_field_options or {})
        options["dim"] = dim
        if context_dim:
            options["context_dim"] = context_dim
        network = registry.create("vector_field", score_field, **options)
        process = registry.create("sde", sde, **dict(sde_options or {}))
        score = NetworkScore(network, process, dim, parametrisation=parametrisation, t0=t0, t1=t1)
        super().__init__(score)
        self.context_dim = context_dim
