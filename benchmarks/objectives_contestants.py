"""The contestants of ``benchmarks/objectives.py``: objectives and schedules, by name.

* :class:`Phase`: one stretch of a contestant's training (an objective, its options,
  its share of the time budget, its learning rate).
* :func:`contestants`: the compared objectives and schedules, each a list of phases.
* :data:`CONTESTANTS` and :data:`CONDITIONAL_CONTESTANTS`: the names each mode accepts.
* :data:`SCORE_MODEL` and :func:`model_values`: the score model that ``score_matching``
  trains (a ``probability_flow`` field; the other contestants train the recommended MLP).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from training_setups import RECOMMENDED

__all__ = [
    "CONDITIONAL_CONTESTANTS",
    "CONTESTANTS",
    "SCORE_MODEL",
    "Phase",
    "contestants",
    "model_values",
]


@dataclass(frozen=True)
class Phase:
    """One stretch of a contestant's training.

    Attributes:
        objective: the registered objective's name.
        options: its options (``teacher`` is added for a reflow stage).
        until: the fraction of the time budget at which the phase ends.
        lr: Adam's peak learning rate with cosine decay over the phase's seconds,
            or ``None`` for the trainer's recommended optimiser and schedule.
        teacher: pass the model at the phase start as ``teacher=`` (reflow).
    """

    objective: str
    options: dict[str, Any] = field(default_factory=dict)
    until: float = 1.0
    lr: float | None = None
    teacher: bool = False


SCORE_MODEL: dict[str, Any] = {
    "field": "probability_flow",
    "field_options": {
        "score_field_options": {"hidden": [64, 64, 64], "activation": "tanh"},
        "sde": "vp",
        "sde_options": {"beta_max": 10.0},
        "parametrisation": "noise",
    },
    "trace": "exact",
}
"""The score model of the ``score_matching`` contestant: the probability flow of a noise-
predicting MLP (64-64-64, tanh) under the VP SDE with ``beta_max = 10``, trained with the
``sigma2`` weighting at Adam 1e-2: the lowest validation NLL at 60 s among the candidates of
``score_matching_tuning.py`` (``--budget 40``, then ``--budget 60`` around the winner)."""
SCORE_OPTIONS: dict[str, Any] = {}
"""The ``score_matching`` objective's options (chosen with :data:`SCORE_MODEL`)."""
SCORE_LR = 1e-2
"""Its peak Adam learning rate (cosine decay over the budget)."""


def model_values(name: str, recommended: dict[str, Any]) -> dict[str, Any]:
    """The trainer configuration of contestant ``name``: the recommended model, or the
    score model for ``score_matching`` (same span, data and batches)."""
    if name == "score_matching":
        return {**recommended, **SCORE_MODEL}
    return dict(recommended)


def contestants(fm_lr: float, finetune_lr: float, switch: float) -> dict[str, list[Phase]]:
    """The compared objectives and schedules, by name."""
    ml = Phase("maximum_likelihood", {"regularizers": dict(RECOMMENDED["regularizers"])})
    return {
        "maximum_likelihood": [ml],
        "flow_matching": [Phase("flow_matching", {"coupling": "independent"}, lr=fm_lr)],
        "flow_matching_ot": [Phase("flow_matching", {"coupling": "ot"}, lr=fm_lr)],
        "fm_then_ml": [
            Phase("flow_matching", {"coupling": "independent"}, until=switch, lr=fm_lr),
            Phase(ml.objective, ml.options, lr=finetune_lr),
        ],
        "reflow": [
            Phase("flow_matching", {"coupling": "independent"}, until=switch, lr=fm_lr),
            Phase("rectified_flow", lr=fm_lr, teacher=True),
        ],
        "score_matching": [Phase("score_matching", dict(SCORE_OPTIONS), lr=SCORE_LR)],
    }


CONTESTANTS = tuple(contestants(1e-2, 3e-3, 0.5))
"""The contestants' names, in the order they are reported."""

CONDITIONAL_CONTESTANTS = ("maximum_likelihood", "flow_matching")
"""The contestants of ``--conditional`` (the objectives the goal names)."""
