"""The schedule of a training configuration: stages of objectives, run one after the other.

A schedule is a list of stages ``{objective, iterations, objective_options}``,
given as TOML ``[[schedule]]`` tables or on the command line as
``--schedule NAME:ITERATIONS,NAME:ITERATIONS`` (:func:`parse_schedule`).
:func:`check_stage` validates one stage and :func:`check_objective_options`
refuses the options that the trainer sets itself (a maximum-likelihood
stage's regularizers and STEER, a rectified-flow stage's teacher).
"""

from __future__ import annotations

import difflib
from typing import Any

from flowkit.train.config_values import ConfigError, coerce

__all__ = [
    "STAGE_KEYS",
    "check_objective_options",
    "check_stage",
    "is_maximum_likelihood",
    "parse_schedule",
]

STAGE_KEYS = ("objective", "iterations", "objective_options")
"""The keys of a stage of the schedule."""
_ML_NAMES = ("maximum_likelihood", "mle", "likelihood")
_RESERVED_OPTIONS = {
    "maximum_likelihood": {
        "regularizers": "--regularizer NAME=WEIGHT (regularizers in the configuration)",
        "steer": "--steer (steer in the configuration)",
    },
    "rectified_flow": {
        "teacher": "nothing: the trainer sets it to a frozen copy of the model at the "
        "start of the stage",
    },
}


def is_maximum_likelihood(objective: str) -> bool:
    """Whether ``objective`` names the built-in maximum likelihood (or one of its aliases)."""
    return objective.strip().lower().replace("-", "_") in _ML_NAMES


def check_objective_options(objective: str, options: dict[str, Any]) -> None:
    """Refuse the ``options`` of ``objective`` that the trainer sets itself.

    Raises:
        ConfigError: naming the option and where to give it instead.
    """
    key = objective.strip().lower().replace("-", "_")
    if key in _ML_NAMES:
        key = "maximum_likelihood"
    elif key == "reflow":
        key = "rectified_flow"
    for option, where in _RESERVED_OPTIONS.get(key, {}).items():
        if option in options:
            raise ConfigError(
                f"objective_options {option!r} of {objective!r} is set by the trainer; "
                f"give it with {where}."
            )


def check_stage(index: int, stage: Any) -> dict[str, Any]:
    """Stage ``index`` (from 0) of a schedule, checked and with its values converted.

    Raises:
        ConfigError: not a table, unknown or missing keys, bad values.
    """
    where = f"schedule stage {index + 1}"
    if not isinstance(stage, dict):
        raise ConfigError(
            f"{where} must be a table {{objective, iterations, objective_options}}, got {stage!r}."
        )
    unknown = sorted(set(stage) - set(STAGE_KEYS))
    if unknown:
        hints = [
            repr(k) + (f" (did you mean {close[0]!r}?)" if close else "")
            for k in unknown
            for close in [difflib.get_close_matches(k, STAGE_KEYS, n=1, cutoff=0.6)]
        ]
        raise ConfigError(
            f"Unknown key(s) {', '.join(hints)} in {where}; valid keys: {', '.join(STAGE_KEYS)}."
        )
    for required in ("objective", "iterations"):
        if required not in stage:
            raise ConfigError(f"{where} lacks {required!r}; give objective and iterations.")
    objective = coerce(f"{where}.objective", stage["objective"], str)
    iterations = coerce(f"{where}.iterations", stage["iterations"], int)
    if iterations <= 0:
        raise ConfigError(f"{where}.iterations must be positive, got {iterations}.")
    options = coerce(
        f"{where}.objective_options", stage.get("objective_options", {}), dict[str, Any]
    )
    return {"objective": objective, "iterations": iterations, "objective_options": options}


def parse_schedule(text: str) -> list[dict[str, Any]]:
    """Parse ``NAME:ITERATIONS,NAME:ITERATIONS`` (the command line's ``--schedule``).

    Raises:
        ConfigError: for an entry that is not ``NAME:ITERATIONS`` with a positive integer.
    """
    stages: list[dict[str, Any]] = []
    for entry in text.split(","):
        name, sep, count = entry.strip().partition(":")
        if not sep or not name.strip() or not count.strip().isdigit() or int(count) <= 0:
            raise ConfigError(
                f"--schedule expects NAME:ITERATIONS[,NAME:ITERATIONS...] with positive "
                f"iterations (e.g. flow_matching:800,maximum_likelihood:200), got {entry!r}."
            )
        stages.append({"objective": name.strip(), "iterations": int(count)})
    return stages
