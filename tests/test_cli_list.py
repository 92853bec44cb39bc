"""``flowkit list``: the table, the JSON schema, broken plugins, version and help."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
from typer.testing import CliRunner

import flowkit
from flowkit import registry as registry_module
from flowkit.cli.app import app, attach_subcommands
from flowkit.interfaces import Integrator
from flowkit.registry import build_registry, reset_registry
from flowkit.registry import building as registry_building

attach_subcommands()
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
    listing = json.loads(result.stdout)
    assert set(listing) == {"components", "broken_plugins"}
    assert listing["broken_plugins"] == [
        {
            "plugin": "flaky",
            "distribution": None,
            "error": "raised in broken: ImportError: needs a GPU library",
        }
    ]
    rows = listing["components"]
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


def test_list_json_of_one_kind_keeps_the_broken_plugins(custom_registry) -> None:
    result = runner.invoke(app, ["list", "--json", "--kind", "trace_estimator"])
    assert result.exit_code == 0, result.output
    listing = json.loads(result.stdout)
    assert {row["kind"] for row in listing["components"]} == {"trace_estimator"}
    assert [b["plugin"] for b in listing["broken_plugins"]] == ["flaky"]


class _FakeEntryPoint:
    def __init__(self, name: str, target: object, distribution: str) -> None:
        self.name = name
        self._target = target
        self.dist = types.SimpleNamespace(name=distribution)

    def load(self) -> object:
        return self._target


@pytest.fixture
def bad_plugins_installed(monkeypatch: pytest.MonkeyPatch):
    """A plugin clashing with the built-in 'dopri5' and one with a misspelled hook,
    found through (faked) entry points when ``flowkit list`` builds the registry."""
    installed = [
        _FakeEntryPoint(
            "clash",
            _plugin_module(
                "clash", "flowkit_register_integrators", lambda register: register("dopri5", _Euler)
            ),
            "flowkit-clash",
        ),
        _FakeEntryPoint(
            "typo",
            _plugin_module("typo", "flowkit_register_integrator", lambda register: None),
            "flowkit-typo",
        ),
    ]
    monkeypatch.setattr(registry_building, "entry_points", lambda *, group: list(installed))
    monkeypatch.delenv(registry_module.AUTOLOAD_ENV, raising=False)
    monkeypatch.delenv(registry_module.BLOCK_ENV, raising=False)
    reset_registry()
    yield
    reset_registry()


def test_list_with_bad_plugins_exits_0_and_shows_them_with_the_fix(bad_plugins_installed) -> None:
    result = runner.invoke(app, ["list"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert result.exception is None
    out = result.stdout
    assert "broken plugins" in out
    assert "rk4" in out and "hutchinson" in out  # everything else is listed
    broken_table = out[out.index("broken plugins") :]
    for needle in (
        "clash",
        "flowkit-clash",
        "'native_integrators'",
        "FLOWKIT_BLOCK_PLUGINS=clash",
        "replaces='dopri5'",
        "typo",
        "Did you mean 'flowkit_register_integrators'",
    ):
        assert needle in broken_table, needle


def test_list_json_with_bad_plugins(bad_plugins_installed) -> None:
    result = runner.invoke(app, ["list", "--json"])
    assert result.exit_code == 0, result.output
    listing = json.loads(result.stdout)
    broken = {b["plugin"]: b for b in listing["broken_plugins"]}
    assert set(broken) == {"clash", "typo"}
    assert broken["clash"]["distribution"] == "flowkit-clash"
    assert "'native_integrators' (distribution flowkit)" in broken["clash"]["error"]
    assert "replaces='dopri5'" in broken["clash"]["error"]
    assert "Did you mean" in broken["typo"]["error"]
    names = {row["name"] for row in listing["components"] if row["kind"] == "integrator"}
    assert "rk4" in names and "dopri5" not in names  # the clashing name is withheld


def test_list_in_a_fresh_interpreter_with_a_clashing_distribution(tmp_path: Path) -> None:
    """End to end: a distribution on sys.path (a .dist-info, no install) clashes."""
    (tmp_path / "clashing_plugin.py").write_text(
        textwrap.dedent(
            """
            import flowkit
            from flowkit.interfaces import Integrator

            class Mine(Integrator):
                def integrate(self, func, y0, t):
                    raise NotImplementedError

            @flowkit.hookimpl
            def flowkit_register_integrators(register):
                register("dopri5", Mine)
            """
        )
    )
    info = tmp_path / "flowkit_clashing_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: flowkit-clashing-plugin\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text("[flowkit]\nclashing = clashing_plugin\n")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FLOWKIT_")},
        "PYTHONPATH": str(tmp_path),
        "COLUMNS": "400",
    }
    table = subprocess.run(
        [sys.executable, "-m", "flowkit", "list"], env=env, capture_output=True, text=True
    )
    assert table.returncode == 0, table.stderr
    assert "Traceback" not in table.stderr
    assert "clashing" in table.stdout and "flowkit-clashing-plugin" in table.stdout
    assert "FLOWKIT_BLOCK_PLUGINS=clashing" in table.stdout
    code = (
        "import torch, flowkit\n"
        "y = flowkit.odeint(lambda t, y: -y, torch.ones(1), torch.tensor([0., 1.]), "
        "method='rk4', options={'n_steps': 50})\n"
        "assert abs(y[-1].item() - 0.36787944) < 1e-6, y\n"
        "try:\n"
        "    flowkit.odeint(lambda t, y: -y, torch.ones(1), torch.tensor([0., 1.]))\n"
        "except flowkit.PluginConflictError as e:\n"
        "    print('conflict:', e)\n"
    )
    solved = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert solved.returncode == 0, solved.stderr
    assert "conflict: The integrator name 'dopri5' is registered twice" in solved.stdout


def test_list_unknown_kind_is_an_error(custom_registry) -> None:
    result = runner.invoke(app, ["list", "--kind", "solver"])
    assert result.exit_code != 0
    assert "unknown kind 'solver'" in result.output


def test_version_and_help() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and flowkit.__version__ in result.stdout
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "list" in result.stdout


def test_attach_subcommands_adds_each_subcommand_once() -> None:
    attach_subcommands()
    names = [command.name for command in attach_subcommands().registered_commands]
    assert sorted(names) == ["bench", "evaluate", "list", "sample", "train"]
