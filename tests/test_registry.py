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
from flowkit.registry import building as registry_building


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
        if isinstance(self._target, BaseException):
            raise self._target
        return self._target


@pytest.fixture
def fake_entry_points(monkeypatch: pytest.MonkeyPatch):
    """Install a list of fake entry points in place of the real ones."""
    installed: list[FakeEntryPoint] = []

    def entry_points(*, group: str):
        assert group == "flowkit"
        return list(installed)

    monkeypatch.setattr(registry_building, "entry_points", entry_points)
    monkeypatch.delenv(registry_module.AUTOLOAD_ENV, raising=False)
    monkeypatch.delenv(registry_module.BLOCK_ENV, raising=False)
    return installed


def test_import_builds_nothing() -> None:
    import importlib
    import subprocess
    import sys

    code = (
        "import flowkit, flowkit.registry.global_registry as r, sys; "
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


def test_clash_is_raised_where_the_name_is_used_naming_both_and_the_way_out(
    fake_entry_points,
) -> None:
    fake_entry_points.append(
        FakeEntryPoint(
            "first",
            plugin(
                "first",
                flowkit_register_integrators=integrators(
                    ("fast", _Euler, {"aliases": ("quick",)}), ("first_only", _Euler, {})
                ),
            ),
            "first-dist",
        )
    )
    fake_entry_points.append(
        FakeEntryPoint(
            "second",
            plugin(
                "second",
                flowkit_register_integrators=integrators(
                    ("fast", _Other, {}), ("second_only", _Other, {})
                ),
            ),
            "second-dist",
        )
    )
    reg = build_registry(builtins=False)  # building never fails because of a plugin
    for name in ("fast", "Fast", "quick"):  # the alias of a withheld component raises too
        with pytest.raises(PluginConflictError) as info:
            reg.create("integrator", name)
        message = str(info.value)
        for needle in ("'fast'", "'first'", "first-dist", "'second'", "second-dist"):
            assert needle in message
        assert "FLOWKIT_BLOCK_PLUGINS=second" in message and "replaces='fast'" in message
    assert ("integrator", "fast") not in reg
    # every other name of both plugins keeps working
    assert reg.names("integrator") == ["first_only", "second_only"]
    assert isinstance(reg.create("integrator", "first_only"), _Euler)
    assert type(reg.create("integrator", "second_only")) is _Other
    # the newer plugin is reported as broken, with the same message
    (broken,) = reg.broken
    assert (broken.plugin, broken.distribution) == ("second", "second-dist")
    assert "'first'" in broken.error and "replaces=" in broken.error
    (conflict,) = reg.conflicts
    assert (conflict.kind, conflict.name) == ("integrator", "fast")
    assert [s.plugin for s in conflict.claimants] == ["first", "second"]


def test_alias_clashing_with_a_name_withholds_only_that_name() -> None:
    reg = build_registry(
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
    with pytest.raises(PluginConflictError, match=r"'rk'.*plugin 'a'.*plugin 'b'"):
        reg.get("integrator", "rk")
    spec = reg.get("integrator", "rk5")
    assert spec.factory is _Other and spec.aliases == ()  # the clashing alias is not listed
    assert reg.names("integrator") == ["rk5"]
    assert [b.plugin for b in reg.broken] == ["b"]


def test_three_claimants_are_all_named() -> None:
    reg = build_registry(
        autoload=False,
        builtins=False,
        plugins=[
            plugin(n, flowkit_register_integrators=integrators(("same", _Euler, {})))
            for n in ("p1", "p2", "p3")
        ],
    )
    with pytest.raises(PluginConflictError) as info:
        reg.get("integrator", "same")
    message = str(info.value)
    assert "registered 3 times" in message and "FLOWKIT_BLOCK_PLUGINS=p2,p3" in message
    assert all(f"'{n}'" in message for n in ("p1", "p2", "p3"))
    assert [b.plugin for b in reg.broken] == ["p2", "p3"]


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
    reg = build_registry(
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
    with pytest.raises(
        PluginConflictError, match=r"replaced by plugin 'x'.*and plugin 'y'"
    ) as info:
        reg.get("integrator", "rk")
    assert "FLOWKIT_BLOCK_PLUGINS=y" in str(info.value)
    assert reg.names("integrator") == ["a", "b"]  # the replacements keep their own names
    assert [b.plugin for b in reg.broken] == ["x", "y"]


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


def test_misspelled_hook_marks_the_plugin_broken_and_runs_none_of_its_hooks() -> None:
    typo = plugin(
        "typo",
        flowkit_register_integrator=lambda register: register("lost", _Euler),
        flowkit_register_gradient_strategies=lambda register: register("g", _ReversibleGradient),
    )
    reg = build_registry(
        autoload=False,
        builtins=False,
        plugins=[
            ("typo", typo),
            plugin("good", flowkit_register_integrators=integrators(("e", _Euler, {}))),
        ],
    )
    (broken,) = reg.broken
    assert broken.plugin == "typo"
    assert "flowkit_register_integrator'" in broken.error
    assert "Did you mean 'flowkit_register_integrators'" in broken.error
    assert "FLOWKIT_BLOCK_PLUGINS=typo" in broken.error
    assert reg.names("integrator") == ["e"]
    assert reg.names("gradient_strategy") == []  # the correctly spelled hook did not run either
    with pytest.raises(UnknownComponentError, match=r"Some plugins failed to load.*typo"):
        reg.get("integrator", "lost")


def test_hook_implementation_with_an_unknown_name_marks_the_plugin_broken() -> None:
    reg = build_registry(
        autoload=False,
        builtins=False,
        plugins=[
            ("odd", plugin("odd", register_integrators=lambda register: None)),
            plugin("good", flowkit_register_integrators=integrators(("e", _Euler, {}))),
        ],
    )
    (broken,) = reg.broken
    assert broken.plugin == "odd" and "register_integrators" in broken.error
    assert "flowkit_register_integrators" in broken.error  # the known hooks are listed
    assert reg.names("integrator") == ["e"]


def test_hook_with_a_wrong_signature_marks_the_plugin_broken() -> None:
    def flowkit_register_integrators(reg):  # pluggy passes `register` by name
        reg("x", _Euler)

    reg = build_registry(
        autoload=False,
        builtins=False,
        plugins=[
            ("wrong", plugin("wrong", flowkit_register_integrators=flowkit_register_integrators)),
            plugin("good", flowkit_register_integrators=integrators(("e", _Euler, {}))),
        ],
    )
    (broken,) = reg.broken
    assert broken.plugin == "wrong" and "could not be registered" in broken.error
    assert reg.names("integrator") == ["e"]


def test_plugin_exiting_at_import_is_reported(fake_entry_points) -> None:
    fake_entry_points.append(FakeEntryPoint("quitter", SystemExit(3), "quit-dist"))
    fake_entry_points.append(
        FakeEntryPoint(
            "good", plugin("good", flowkit_register_integrators=integrators(("e", _Euler, {}))), "g"
        )
    )
    reg = build_registry(builtins=False)
    (broken,) = reg.broken
    assert broken.plugin == "quitter" and "SystemExit" in broken.error
    assert reg.names("integrator") == ["e"]


def test_two_distributions_with_one_plugin_name(fake_entry_points) -> None:
    for dist, factory in (("dist-a", _Euler), ("dist-b", _Other)):
        fake_entry_points.append(
            FakeEntryPoint(
                "same_name",
                plugin("same_name", flowkit_register_integrators=integrators(("e", factory, {}))),
                dist,
            )
        )
    reg = build_registry(builtins=False)
    assert reg.get("integrator", "e").distribution == "dist-a"
    (broken,) = reg.broken
    assert (broken.plugin, broken.distribution) == ("same_name", "dist-b")
    assert "already taken" in broken.error and "dist-a" in broken.error


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
    with pytest.raises(PluginConflictError, match="FLOWKIT_BLOCK_PLUGINS=two"):
        build_registry(builtins=False).get("integrator", "same")
    monkeypatch.setenv(registry_module.BLOCK_ENV, "two")  # the way out the message names
    reg = build_registry(builtins=False)
    assert reg.get("integrator", "same").plugin == "one"
    assert reg.broken == () and reg.conflicts == ()


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


# -- one bad plugin never takes flowkit down -----------------------------------
_ROTATION = torch.tensor([[0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)


def _odeint_rk4_matches_the_exponential() -> None:
    y0 = torch.tensor([1.0, 0.5], dtype=torch.float64)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    ys = flowkit.odeint(lambda t, y: _ROTATION @ y, y0, t, method="rk4", options={"n_steps": 100})
    expected = torch.linalg.matrix_exp(_ROTATION) @ y0
    assert (ys[-1] - expected).abs().max().item() < 1e-8  # RK4 error ~ 100**-4


def _cnf_log_prob(registry: flowkit.Registry | None) -> torch.Tensor:
    torch.manual_seed(0)
    model = flowkit.CNF(
        "linear",
        "rk4",
        "exact",
        "backprop",
        dim=2,
        integrator_options={"n_steps": 20},
        registry=registry,
    ).double()
    x = torch.tensor([[0.3, -1.0], [1.5, 0.2]], dtype=torch.float64)
    return model.log_prob(x)


@pytest.fixture
def global_registry():
    """Install a registry as the process-wide one for the test, then forget it."""

    def install(reg: flowkit.Registry) -> flowkit.Registry:
        registry_module.reset_registry(reg)
        return reg

    yield install
    registry_module.reset_registry()


def test_plugin_clashing_with_a_builtin_leaves_the_rest_working(
    fake_entry_points, global_registry
) -> None:
    fake_entry_points.append(
        FakeEntryPoint(
            "fast_solvers",
            plugin(
                "fast_solvers", flowkit_register_integrators=integrators(("dopri5", _Other, {}))
            ),
            "flowkit-fast-solvers",
        )
    )
    clean = build_registry(autoload=False)
    reg = global_registry(build_registry())
    _odeint_rk4_matches_the_exponential()
    torch.testing.assert_close(_cnf_log_prob(None), _cnf_log_prob(clean), rtol=0, atol=0)
    with pytest.raises(PluginConflictError) as info:
        flowkit.odeint(lambda t, y: -y, torch.ones(1), torch.tensor([0.0, 1.0]), method="dopri5")
    message = str(info.value)
    for needle in (
        "'dopri5'",
        "'native_integrators' (distribution flowkit)",
        "'fast_solvers' (distribution flowkit-fast-solvers)",
        "FLOWKIT_BLOCK_PLUGINS=fast_solvers",
        "replaces='dopri5'",
    ):
        assert needle in message
    with pytest.raises(PluginConflictError):  # the alias of the withheld built-in too
        reg.get("integrator", "dormand_prince")
    with pytest.raises(PluginConflictError):  # CNF's default integrator is the clashing name
        flowkit.CNF("linear", dim=2)
    assert [(b.plugin, b.distribution) for b in reg.broken] == [
        ("fast_solvers", "flowkit-fast-solvers")
    ]


def test_misspelled_hook_plugin_leaves_the_rest_working(fake_entry_points, global_registry) -> None:
    fake_entry_points.append(
        FakeEntryPoint(
            "typo",
            plugin("typo", flowkit_register_integrator=lambda register: None),
            "typo-dist",
        )
    )
    clean = build_registry(autoload=False)
    reg = global_registry(build_registry())
    _odeint_rk4_matches_the_exponential()
    torch.testing.assert_close(_cnf_log_prob(None), _cnf_log_prob(clean), rtol=0, atol=0)
    assert reg.names("integrator") == clean.names("integrator")
    (broken,) = reg.broken
    assert (broken.plugin, broken.distribution) == ("typo", "typo-dist")
    assert "Did you mean 'flowkit_register_integrators'" in broken.error


# -- what a factory must be ------------------------------------------------------
class _NotAnIntegrator:
    order = 4

    def __init__(self, **options: Any) -> None:
        pass


class _Abstract(Integrator):  # forgets integrate()
    order = 2


class _PlainModuleField(torch.nn.Module):
    def __init__(self, *, dim: int = 2) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(dim))

    def forward(self, t, x):
        return self.scale * x


class _NoForward(torch.nn.Module):
    pass


class _ForwardWithoutTime(torch.nn.Module):
    def forward(self, x):
        return x


class _Exact(TraceEstimator):
    def estimate(self, field, t, x, probes=None):  # pragma: no cover
        raise AssertionError


def _register_one(kind: str, name: str, factory: Any) -> flowkit.Registry:
    hook = flowkit.kinds.KINDS[kind].hook
    return build_registry(
        autoload=False,
        builtins=False,
        plugins=[
            ("p", plugin("p", **{hook: lambda register: register(name, factory)})),
            plugin("good", flowkit_register_integrators=integrators(("e", _Euler, {}))),
        ],
    )


@pytest.mark.parametrize(
    ("kind", "factory", "reason"),
    [
        ("integrator", _NotAnIntegrator, "does not subclass flowkit.interfaces.Integrator"),
        ("integrator", _Exact, "does not subclass flowkit.interfaces.Integrator"),
        ("trace_estimator", _Euler, "does not subclass flowkit.interfaces.TraceEstimator"),
        ("gradient_strategy", _Euler, "does not subclass flowkit.interfaces.GradientStrategy"),
        ("regularizer", _Euler, "does not subclass flowkit.interfaces.Regularizer"),
        ("integrator", _Abstract, "abstract method(s) unimplemented: integrate"),
        ("integrator", _Euler(), "is an instance"),
        ("integrator", 42, "not callable"),
        ("vector_field", _Euler, "is not an nn.Module"),
        ("vector_field", _NoForward, "does not define forward(t, x)"),
        ("vector_field", _ForwardWithoutTime, "cannot be called as forward(t, x)"),
        ("vector_field", _PlainModuleField(), "is an instance"),
    ],
)
def test_non_conforming_factory_is_refused_with_the_reason(
    kind: str, factory: Any, reason: str
) -> None:
    reg = _register_one(kind, "bad", factory)
    assert ("bad" not in reg.names(kind)) and reg.names("integrator") == ["e"]
    (broken,) = reg.broken
    assert broken.plugin == "p" and "refused" in broken.error and reason in broken.error


def test_a_refusal_the_plugin_swallows_still_registers_nothing_of_its_hook() -> None:
    def sneaky(register):
        register("fine", _Euler)
        try:
            register("bad", _NotAnIntegrator)
        except TypeError:
            pass

    reg = build_registry(
        autoload=False, builtins=False, plugins=[plugin("p", flowkit_register_integrators=sneaky)]
    )
    assert reg.names("integrator") == []
    (broken,) = reg.broken
    assert "does not subclass flowkit.interfaces.Integrator" in broken.error


def test_a_string_of_aliases_is_refused() -> None:
    reg = build_registry(
        autoload=False,
        builtins=False,
        plugins=[
            plugin("p", flowkit_register_integrators=integrators(("x", _Euler, {"aliases": "xy"})))
        ],
    )
    assert reg.names("integrator") == []
    assert "aliases=('xy',)" in reg.broken[0].error


def test_any_module_with_forward_t_x_registers_as_a_field() -> None:
    reg = _register_one("vector_field", "plain", _PlainModuleField)
    assert reg.broken == ()
    assert reg.get("vector_field", "plain").capabilities == {"has_divergence": False}
    field = reg.create("vector_field", "plain", dim=3)
    x = torch.randn(4, 3)
    torch.testing.assert_close(field(torch.tensor(0.0), x), x)


def test_function_factories_are_checked_when_they_build() -> None:
    def good(*, n_steps: int = 10) -> _Euler:
        return _Euler(n_steps=n_steps)

    def bad(**options: Any) -> object:
        return _NotAnIntegrator()

    reg = build_registry(
        autoload=False,
        builtins=False,
        plugins=[
            (
                "funcs",
                plugin(
                    "funcs",
                    flowkit_register_integrators=lambda register: (
                        register("good", good),
                        register("bad", bad),
                    ),
                ),
            )
        ],
    )
    assert reg.create("integrator", "good", n_steps=3).n_steps == 3
    with pytest.raises(PluginLoadError) as info:
        reg.create("integrator", "bad")
    message = str(info.value)
    assert "plugin 'funcs'" in message and "_NotAnIntegrator" in message
    assert "not a flowkit.interfaces.Integrator" in message
    assert "FLOWKIT_BLOCK_PLUGINS=funcs" in message


def test_contested_replacement_with_unhashable_factories_does_not_fail_the_build() -> None:
    class _Builds:  # a callable factory object that defines __eq__ (so it is unhashable)
        def __eq__(self, other: object) -> bool:
            return isinstance(other, _Builds)

        __hash__ = None  # type: ignore[assignment]

        def __call__(self) -> _Euler:
            return _Euler()

    reg = build_registry(
        autoload=False,
        builtins=False,
        plugins=[
            plugin("base", flowkit_register_integrators=integrators(("rk", _Euler, {}))),
            plugin(
                "x", flowkit_register_integrators=integrators(("rk", _Builds(), {"replaces": "rk"}))
            ),
            plugin(
                "y", flowkit_register_integrators=integrators(("rk", _Builds(), {"replaces": "rk"}))
            ),
        ],
    )
    with pytest.raises(PluginConflictError, match="replaced by"):
        reg.get("integrator", "rk")
    (conflict,) = reg.conflicts
    assert [s.plugin for s in conflict.claimants] == ["base", "x", "y"]


def test_two_plugin_objects_given_one_name_in_code() -> None:
    reg = build_registry(
        autoload=False,
        builtins=False,
        plugins=[
            ("mine", plugin("a", flowkit_register_integrators=integrators(("e", _Euler, {})))),
            ("mine", plugin("b", flowkit_register_integrators=integrators(("f", _Euler, {})))),
        ],
    )
    assert reg.names("integrator") == ["e"]
    (broken,) = reg.broken
    assert broken.plugin == "mine" and "already taken" in broken.error
