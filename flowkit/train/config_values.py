"""Values of a training configuration: its TOML sections, its error, checking a value's type.

The shared ground of :mod:`flowkit.train.config` (the :class:`TrainConfig`
dataclass), :mod:`flowkit.train.schedule` (its stages) and
:mod:`flowkit.train.config_io` (TOML and ``KEY=VALUE``): :func:`coerce` checks
one value against a field's type hint and converts what is safe to convert
(an integral float to an int, an int to a float).
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal

from flowkit.errors import FlowkitError

__all__ = ["GROUPS", "ConfigError", "coerce"]

GROUPS: tuple[str, ...] = ("data", "model", "optim", "output", "run")
"""The TOML sections a configuration file may group its keys into."""


class ConfigError(FlowkitError, ValueError):
    """An invalid training configuration: unknown key, wrong type or value."""


def coerce(name: str, value: Any, hint: Any) -> Any:
    """``value`` checked against the type ``hint`` of the field (or key) ``name``.

    Raises:
        ConfigError: naming the field, the value and the type it must have.
    """
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return coerce(name, value, inner)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{name} must be one of {', '.join(map(repr, args))}, got {value!r}.")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {value!r}.")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{name} must be an integer, got {value!r}.")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} must be a number, got {value!r}.")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string, got {value!r}.")
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name} must be a list, got {value!r}.")
        return list(value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{name} must be a table of KEY = VALUE, got {value!r}.")
        value_hint = args[1]
        return {
            str(k): (coerce(f"{name}.{k}", v, value_hint) if value_hint is not Any else v)
            for k, v in value.items()
        }
    return value
