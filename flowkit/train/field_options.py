"""The options a run builds its vector field with: the configured ones, fitted to the field.

Decisions:
    * The default ``field_options`` (64-64-64, tanh) are the recommended MLP's.
      Left at that default, a field that does not take one of those options
      gets only those it takes: ``--field probability_flow`` (whose score
      network is an MLP with those same defaults) works without
      ``--field-options``. Options the user gave are passed as given, and one
      the field does not take is an error as always.
    * A probability flow field (``probability_flow``, trained by
      ``score_matching``) maps diffusion time onto the CNF's flow time, so it
      gets the run's span: ``t1`` is the run's ``t1`` (``t0 = 0``) unless
      ``field_options`` sets it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from flowkit.train.config import TrainConfig

__all__ = ["configured_field_options", "run_field_options"]


def _default_field_options() -> dict[str, Any]:
    field = next(f for f in dataclasses.fields(TrainConfig) if f.name == "field_options")
    return dict(field.default_factory())  # type: ignore[misc]


def configured_field_options(config: TrainConfig) -> dict[str, Any]:
    """``config.field_options``; left at the default, only the options the field takes."""
    options = dict(config.field_options)
    if options != _default_field_options():
        return options
    from flowkit.registry import get_registry

    spec = get_registry().get("vector_field", config.field)
    valid = spec.options() if callable(spec.options) else spec.options
    if valid is None:
        return options
    return {k: v for k, v in options.items() if k in valid}


def run_field_options(config: TrainConfig) -> dict[str, Any]:
    """:func:`configured_field_options`, with the run's span for a probability flow field."""
    from flowkit.compat import is_score_field
    from flowkit.registry import get_registry

    options = configured_field_options(config)
    if is_score_field(get_registry().get("vector_field", config.field)):
        options.setdefault("t1", float(config.t1))
    return options
