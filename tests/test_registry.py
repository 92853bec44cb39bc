"""Registry behaviour: discovery, names, options, clashes, broken plugins, blocking.

Each test builds a fresh registry (a fresh pluggy plugin manager) from plugins
defined here, with entry points faked instead of installed.
"""

from __future__ import annotations

import types
from typing import Any

import pytest
import torch

import flowkit
from flowkit import registry as registry_module
from flowkit.errors import PluginConflictError, PluginLoadError, UnknownComponentError
from flowkit.interfaces import GradientStrategy, Integrator, TraceEstimator, VectorField
from flowkit.registry import build_registry


class _Euler(Integrator):
    order = 1

    def __init__(self, *, n_steps: int = 10, rtol: float = 1e-3) -> None:
        self.n_steps = n_steps
        self.rtol = rtol

    def integrate(self, func, y0, t):  # pragma: no cover - never solved here
        raise AssertionError("not used")


class _Other(_Euler):
    pass


class _ReversibleGradient(GradientStrategy):
    requires = ("reversible",)

    def solve(self, integrator, func, y0, t, *, params=None):  # pragma: no cover
        raise AssertionError("not used")


def plugin(name: str, **hooks: Any) -> types.ModuleType:
    """A plugin module named ``name`` with the given hook implementations."""
    module = types.ModuleType(name)
    for hook_name, function in hooks.items():
        setattr(module, hook_name, flowkit.hookimpl(function))
    return module


def integrators(*entries: tuple[str, Any, dict[str, Any]]):
    def hook(register):
        for name, factory, kwargs in entries:
            register(name, factory, **kwargs)

    return hook


class FakeDistribution:
    def __init__(self, name: str) -> None:
        self.name = name


class FakeEntryPoint:
    """Stands in for an installed distribution's ``flowkit`` entry point."""

    def __init__(self, name: str, target: Any, distribution: str) -> None:
        self.name = name
        self._target = target
        self.dist = FakeDistribution(distribution)

    def load(self) -> Any:
        if isinstance(self._target, Exception):
            raise self._target
        return self._target


@pytest.fixture
def fake_entry_points(monkeypatch: pytest.MonkeyPatch):
    """Install a list of fake entry points in place of the real ones."""
    installed: list[FakeEntryPoint] = []

    def entry_points(*, group: str):
        assert group == "flowkit"
        return list(installed)

    monkeypatch.setattr(registry_module, "entry_points", entry_points)
    monkeypatch.delenv(registry_module.AUTOLOAD_ENV, raising=False)
    monkeypatch.delenv(registry_module.BLOCK_ENV, raising=False)
    return installed


def test_import_builds_nothing() -> None:
    import importlib
    import subprocess
    import sys

    code = (
        "import flowkit, flowkit.registry as r, sys; "
        "assert r._REGISTRY is None; "
        "assert not any(m.startswith('flowkit.plugins.') for m in sys.modules), "
        "[m for m in sys.modules if m.startswith('flowkit.plugins.')]"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    importlib.import_module("flowkit")


def test_names_aliases_and_origin() -> None:
    reg = build_registry(
        autoload=False,
        builtins=False,
        plugins=[
            (
                "mine",
                plugin(
                    "mine",
                    flowkit_register_integrators=integrators(
                        ("euler_x", _Euler, {"aliases": ("forward_euler_x",)})
                    ),
                ),
            )
        ],
    )
    spec = reg.get("integrator", "forward_euler_x")
    assert spec.name == "euler_x"
    assert spec.plugin == "mine"
    assert spec.distribution is None
    assert spec.capabilities["order"] == 1
    assert reg.get("integrator", "Euler-X").name == "euler_x"  # case and dashes normalised
    assert reg.names("integrator") == ["euler_x"]


def test_unknown_name_lists_available_and_closest() -> None:
    reg = build_registry(
        autoload=False,
        builtins=False,
        plugins=[
            plugin(
                "p",
                flowkit_register_integrators=integrators(
                    ("dopri5", _Euler, {}), ("rk4", _Euler, {})
                ),
            )
        ],
    )
    with pytest.raises(UnknownComponentError) as info:
        reg.get("integrator", "dopri")
    message = str(info.value)
    assert "Unknown integrator 'dopri'" in message
    assert "Did you mean 'dopri5'" in message
    assert "Available: dopri5, rk4" in message
    assert isinstance(info.value, KeyError)


def test_unknown_option_is_type_error_naming_valid_ones() -> None:
    reg = build_registry(
        autoload=False,
        builtins=False,
        plugins=[plugin("p", flowkit_register_integrators=integrators(("e", _Euler, {})))],
    )
    assert reg.create("integrator", "e", n_steps=3).n_steps == 3
    with pytest.raises(TypeError, match=r"Unknown option\(s\) 'nsteps' for integrator 'e'") as info:
        reg.create("integrator", "e", nsteps=3)
    assert "Valid options: n_steps, rtol" in str(info.value)


def test_resolve_refuses_options_with_an_instance() -> None:
    reg = build_registry(autoload=False, builtins=False)
    with pytest.raises(TypeError, match="passed as an instance"):
        reg.resolve("integrator", _Euler(), {"n_steps": 2})


def test_clash_names_both_plugins_and_the_way_out(fake_entry_points) -> None:
    fake_entry_points.append(
        FakeEntryPoint(
            "first",
            plugin("first", flowkit_register_integrators=integrators(("fast", _Euler, {}))),
            "first-dist",
        )
    )
    fake_entry_points.append(
        FakeEntryPoint(
            "second",
            plugin("second", flowkit_register_integrators=integrators(("fast", _Other, {}))),
            "second-dist",
        )
    )
    with pytest.raises(PluginConflictError) as info:
        build_registry(builtins=False)
    message = str(info.value)
    for needle in ("'fast'", "'first'", "first-dist", "'second'", "second-dist"):
        assert needle in message
    assert "FLOWKIT_BLOCK_PLUGINS" in message and "replaces=" in message


def test_alias_clashing_with_a_name_is_a_conflict() -> None:
    with pytest.raises(PluginConflictError, match="'rk'"):
        build_registry(
            autoload=False,
            builtins=False,
            plugins=[
                plugin("a", flowkit_register_integrators=integrators(("rk", _Euler, {}))),
                plugin(
                    "b",
                    flowkit_register_integrators=integrators(("rk5", _Other, {"aliases": ("rk",)})),
                ),
            ],
        )


def test_replaces_supersedes_on_purpose() -> None:
    reg = build_registry(
        autoload=False,
        builtins=False,
        plugins=[
            plugin("base", flowkit_register_integrators=integrators(("rk", _Euler, {}))),
            plugin(
                "better",
                flowkit_register_integrators=integrators(("rk_fast", _Other, {"replaces": "rk"})),
            ),
        ],
    )
    assert reg.names("integrator") == ["rk_fast"]
    spec = reg.get("integrator", "rk")
    assert spec.factory is _Other and spec.plugin == "better" and spec.replaces == "rk"


def test_same_name_replacement() -> None:
    reg = build_registry(
        autoload=False,
        builtins=False,
        plugins=[
            plugin("base", flowkit_register_integrators=integrators(("rk", _Euler, {}))),
            plugin(
                "better",
                flowkit_register_integrators=integrators(("rk", _Other, {"replaces": "rk"})),
            ),
        ],
    )
    assert reg.get("integrator", "rk").factory is _Other


def test_two_replacements_of_one_name_conflict() -> None:
    with pytest.raises(PluginConflictError, match="Two plugins replace"):
        build_registry(
            autoload=False,
            builtins=False,
            plugins=[
                plugin("base", flowkit_register_integrators=integrators(("rk", _Euler, {}))),
                plugin(
                    "x", flowkit_register_integrators=integrators(("a", _Other, {"replaces": "rk"}))
                ),
                plugin(
                    "y", flowkit_register_integrators=integrators(("b", _Other, {"replaces": "rk"}))
                ),
            ],
        )


def test_replacing_nothing_marks_the_plugin_broken() -> None:
    reg = build_registry(
        autoload=False,
        builtins=False,
        plugins=[
            plugin(
                "lonely",
                flowkit_register_integrators=integrators(("a", _Other, {"replaces": "ghost"})),
            )
        ],
    )
    assert [b.plugin for b in reg.broken] == ["lonely"]
    assert "replaces='ghost'" in reg.broken[0].error


def test_plugin_failing_to_import_is_reported_and_rest_works(fake_entry_points) -> None:
    fake_entry_points.append(
        FakeEntryPoint("broken_import", ModuleNotFoundError("No module named 'cupy'"), "bad-dist")
    )
    fake_entry_points.append(
        FakeEntryPoint(
            "good", plugin("good", flowkit_register_integrators=integrators(("e", _Euler, {}))), "g"
        )
    )
    reg = build_registry(builtins=False)
    assert reg.names("integrator") == ["e"]
    (broken,) = reg.broken
    assert broken.plugin == "broken_import" and broken.distribution == "bad-dist"
    assert "cupy" in broken.error
    assert reg.get("integrator", "e").distribution == "g"


def test_plugin_raising_in_its_hook_is_reported_and_rolled_back() -> None:
    def bad_hook(register):
        register("half_done", _Euler)
        raise RuntimeError("boom")

    reg = build_registry(
        autoload=False,
        builtins=False,
        plugins=[
            plugin("bad", flowkit_register_integrators=bad_hook),
            plugin("good", flowkit_register_integrators=integrators(("e", _Euler, {}))),
        ],
    )
    assert reg.names("integrator") == ["e"]  # nothing of the failing hook survives
    (broken,) = reg.broken
    assert broken.plugin == "bad" and "RuntimeError: boom" in broken.error
    with pytest.raises(UnknownComponentError, match=r"Some plugins failed to load.*bad"):
        reg.get("integrator", "half_done")


def test_invalid_name_marks_plugin_broken() -> None:
    reg = build_registry(
        autoload=False,
        builtins=False,
        plugins=[plugin("p", flowkit_register_integrators=integrators(("Bad Name", _Euler, {})))],
    )
    assert reg.names("integrator") == []
    assert "lower_snake" in reg.broken[0].error


def test_misspelled_hook_fails_loudly() -> None:
    with pytest.raises(PluginLoadError) as info:
        build_registry(
            autoload=False,
            builtins=False,
            plugins=[("typo", plugin("typo", flowkit_register_integrator=lambda register: None))],
        )
    message = str(info.value)
    assert "'typo'" in message and "flowkit_register_integrator'" in message
    assert "Did you mean 'flowkit_register_integrators'" in message


def test_autoload_switched_off_by_environment(fake_entry_points, monkeypatch) -> None:
    fake_entry_points.append(
        FakeEntryPoint(
            "third",
            plugin("third", flowkit_register_integrators=integrators(("t", _Euler, {}))),
            "d",
        )
    )
    monkeypatch.setenv(registry_module.AUTOLOAD_ENV, "1")
    assert build_registry(builtins=False).names("integrator") == []
    monkeypatch.setenv(registry_module.AUTOLOAD_ENV, "0")
    assert build_registry(builtins=False).names("integrator") == ["t"]


def test_blocking_by_environment(fake_entry_points, monkeypatch) -> None:
    for name in ("one", "two"):
        fake_entry_points.append(
            FakeEntryPoint(
                name,
                plugin(name, flowkit_register_integrators=integrators(("same", _Euler, {}))),
                f"{name}-dist",
            )
        )
    with pytest.raises(PluginConflictError):
        build_registry(builtins=False)
    monkeypatch.setenv(registry_module.BLOCK_ENV, "two")
    reg = build_registry(builtins=False)
    assert reg.get("integrator", "same").plugin == "one"


def test_builtins_are_blocked_like_any_plugin() -> None:
    reg = build_registry(autoload=False, blocked=["gradients"])
    assert "backprop" not in reg.names("gradient_strategy")
    reg = build_registry(autoload=False)
    assert reg.get("gradient_strategy", "backprop").distribution == "flowkit"


def test_builtins_register_through_the_public_hooks() -> None:
    """Every built-in module is a plugin of plain hook implementations."""
    import importlib

    hooks = {info.hook for info in flowkit.kinds.KINDS.values()}
    for _, module_name in registry_module.BUILTIN_PLUGINS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            pytest.fail(f"built-in plugin {module_name} does not import: {exc}")
        implemented = {name for name in dir(module) if name in hooks}
        assert implemented, f"{module_name} implements no flowkit hook"


def test_combinations_use_the_compatibility_function() -> None:
    class _Field(VectorField):
        def forward(self, t, x):
            return x

    class _Trace(TraceEstimator):
        def estimate(self, field, t, x, probes=None):
            return x, x.sum(-1)

    class _Plain(GradientStrategy):
        def solve(self, integrator, func, y0, t, *, params=None):  # pragma: no cover
            raise AssertionError

    class _Reversible(Integrator):
        reversible = True

        def integrate(self, func, y0, t):  # pragma: no cover
            raise AssertionError

    reg = build_registry(
        autoload=False,
        builtins=False,
        plugins=[
            plugin(
                "p",
                flowkit_register_vector_fields=lambda register: register("f", _Field),
                flowkit_register_integrators=lambda register: (
                    register("plain", _Euler),
                    register("rev", _Reversible),
                ),
                flowkit_register_trace_estimators=lambda register: register("tr", _Trace),
                flowkit_register_gradient_strategies=lambda register: (
                    register("bp", _Plain),
                    register("revgrad", _ReversibleGradient),
                ),
            )
        ],
    )
    valid = {c.id for c in reg.combinations()}
    assert valid == {"f-plain-tr-bp", "f-rev-tr-bp", "f-rev-tr-revgrad"}
    (invalid,) = list(reg.combinations(valid=False))
    assert invalid.id == "f-plain-tr-revgrad"
    assert "reversible=True" in invalid.compatibility.reasons[0]
    assert len(list(reg.combinations(valid=None))) == 4
    with pytest.raises(UnknownComponentError):
        list(reg.combinations(integrators=["nope"]))


def test_compatibility_of_instances_and_plain_modules() -> None:
    field = torch.nn.Linear(2, 2)  # any module counts as a field without divergence

    class _Analytic(TraceEstimator):
        requires_divergence = True

        def estimate(self, field, t, x, probes=None):  # pragma: no cover
            raise AssertionError

    verdict = flowkit.check_compatibility(field=field, trace=_Analytic())
    assert not verdict
    assert "closed-form divergence" in verdict.reasons[0]
    with pytest.raises(flowkit.IncompatibleComponentsError, match="has_divergence=True"):
        flowkit.ensure_compatible(field=field, trace=_Analytic)
    assert (
        flowkit.check_compatibility(integrator=_Euler(), gradient=_ReversibleGradient()).ok is False
    )
