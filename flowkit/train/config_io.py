"""Writing a training configuration as TOML, and reading a command line's ``KEY=VALUE``.

:func:`dump_toml` writes a configuration as a TOML document grouped in the
sections of :data:`~flowkit.train.config_values.GROUPS` (what
:func:`flowkit.train.config.load_toml` reads back), and
:func:`parse_assignment` reads a command line's ``KEY=VALUE`` with VALUE as a
TOML value.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from typing import TYPE_CHECKING, Any

from flowkit.train.config_values import GROUPS, ConfigError

if TYPE_CHECKING:
    from flowkit.train.config import TrainConfig

__all__ = ["dump_toml", "parse_assignment"]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return (
            repr(value)
            if math.isfinite(value)
            else ("nan" if math.isnan(value) else ("inf" if value > 0 else "-inf"))
        )
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise ConfigError(f"Cannot write {value!r} ({type(value).__name__}) to TOML.")


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)


def dump_toml(config: TrainConfig) -> str:
    """The configuration as a TOML document, grouped in sections; unset options are omitted."""
    lines: list[str] = []
    for group in GROUPS:
        lines.append(f"[{group}]")
        for f in dataclasses.fields(config):
            value = getattr(config, f.name)
            if f.metadata["group"] == group and value is not None:
                lines.append(f"{f.name} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def parse_assignment(text: str, *, option: str) -> tuple[str, Any]:
    """Parse ``KEY=VALUE`` from the command line, reading VALUE as TOML (else a string).

    Raises:
        ConfigError: when there is no ``=`` or the key is empty.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"{option} expects KEY=VALUE, got {text!r}.")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key, value
