"""``flowkit list``: the table, the JSON schema, broken plugins, version and help."""

from __future__ import annotations

import json
import types

import pytest
from typer.testing import CliRunner

import flowkit
from flowkit.cli.app import _attach_subcommands, app
from flowkit.interfaces import Integrator
from flowkit.registry import build_registry, reset_registry

_attach_subcommands()
runner = CliRunner()


class _Euler(Integrator):
    order = 1

    def integrate(self, func, y0, t):  # pragma: no cover
        raise AssertionError


def _plugin_module(name, hook, fn):
    module = types.ModuleType(name)
    setattr(module, hook, flowkit.hookimpl(fn))
    return module


@pytest.fixture
def custom_registry():
    def broken(register):
        raise ImportError("needs a GPU library")

    registry = build_registry(
        autoload=False,
        plugins=[
            (
                "mine",
                _plugin_module(
                    "mine",
                    "flowkit_register_integrators",
                    lambda register: register("my_euler", _Euler, aliases=("me",)),
                ),
            ),
            ("flaky", _plugin_module("flaky", "flowkit_register_integrators", broken)),
        ],
    )
    reset_registry(registry)
    yield registry
    reset_registry()


def test_list_json_schema(custom_registry) -> None:
    result = runner.invoke(app, ["list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert rows, "no components listed"
    for row in rows:
        assert set(row) == {"kind", "name", "aliases", "plugin", "distribution", "capabilities"}
    mine = next(r for r in rows if r["name"] == "my_euler")
    assert mine == {
        "kind": "integrator",
        "name": "my_euler",
        "aliases": ["me"],
        "plugin": "mine",
        "distribution": None,
        "capabilities": {
            "order": 1,
            "adaptive": False,
            "reversible": False,
            "native_adjoint": False,
            "checkpointable": False,
        },
    }
    backprop = next(r for r in rows if r["name"] == "backprop")
    assert backprop["plugin"] == "gradients" and backprop["distribution"] == "flowkit"


def test_list_table_shows_components_and_broken_plugins(custom_registry) -> None:
    result = runner.invoke(app, ["list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "my_euler" in result.stdout and "mine" in result.stdout
    assert "broken plugins" in result.stdout
    assert "flaky" in result.stdout and "needs a GPU library" in result.stdout


def test_list_unknown_kind_is_an_error(custom_registry) -> None:
    result = runner.invoke(app, ["list", "--kind", "solver"])
    assert result.exit_code != 0
    assert "unknown kind 'solver'" in result.output


def test_version_and_help() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and flowkit.__version__ in result.stdout
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "list" in result.stdout
