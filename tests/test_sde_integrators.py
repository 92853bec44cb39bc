"""SDE integrators with real noise: the conformance kit over every registered one, and
the torchsde backend's noise handling (seeds, Brownian kinds, a given path, reverse time,
the Stratonovich reading), with the kit's own failure paths.

The list of integrators comes from the registry, so a new plugin is checked without
editing this file.
"""

from __future__ import annotations

import pytest
import torch
import torchsde
from flowkit.plugins.sde_integrators import EulerMaruyama
from flowkit.plugins.torchsde_sde import diffusion_depends_on_state
from registry_helpers import suite_registry
from torch import Tensor

from flowkit.errors import NonFiniteStateError
from flowkit.interfaces import SDEIntegrator
from flowkit.registry import Registry
from flowkit.solution import Solution
from flowkit.testing.conformance import ConformanceError
from flowkit.testing.sde_integrator_checks import check_sde_integrator
from flowkit.testing.sde_order import GridBrownian

SDE_INTEGRATORS = suite_registry().names("sde_integrator")
TORCHSDE = [name for name in SDE_INTEGRATORS if name.startswith("torchsde.")]


def _drift(t: Tensor, y: Tensor) -> Tensor:
    return -y + torch.sin(3.0 * t)


def _additive(t: Tensor, y: Tensor) -> Tensor:
    return (0.5 * (1.0 + t)).expand(1, 1)  # depends on t only: broadcasts


def _multiplicative(t: Tensor, y: Tensor) -> Tensor:
    return 0.4 * y


def _run(name: str, t: list[float], *, seed: int = 0, **kwargs: object) -> Solution:
    y0 = torch.linspace(-1.0, 1.0, 12).reshape(4, 3)
    generator = torch.Generator().manual_seed(seed)
    integrator = suite_registry().create("sde_integrator", name, **kwargs)
    return integrator.integrate(_drift, _additive, y0, torch.tensor(t), generator=generator)  # type: ignore[no-any-return]


def test_the_torchsde_methods_are_registered_beside_the_native_one() -> None:
    assert set(SDE_INTEGRATORS) >= {
        "euler_maruyama",
        "torchsde.euler",
        "torchsde.milstein",
        "torchsde.srk",
        "torchsde.reversible_heun",
    }
    for name in TORCHSDE:
        assert suite_registry().get("sde_integrator", name).plugin == "torchsde"


@pytest.mark.parametrize("name", SDE_INTEGRATORS)
def test_every_sde_integrator_passes_the_conformance_kit(name: str, registry: Registry) -> None:
    verified = check_sde_integrator(name, options={"n_steps": 20}, orders=False, registry=registry)
    assert verified[-1] == "differentiable" and "given brownian honoured" in verified


def test_the_kit_measures_orders_when_asked(registry: Registry) -> None:
    verified = check_sde_integrator("euler_maruyama", registry=registry)
    assert verified[-4:] == [
        "strong order (multiplicative noise)",
        "strong order (additive noise)",
        "strong order (additive noise, reverse time)",
        "weak order",
    ]


@pytest.mark.parametrize("direction", [[0.0, 0.3, 1.0], [1.0, 0.3, 0.0]], ids=["fwd", "bwd"])
@pytest.mark.parametrize("diffusion", [_additive, _multiplicative], ids=["add", "mult"])
def test_torchsde_euler_takes_the_native_steps_on_the_same_path(
    direction: list[float], diffusion: object
) -> None:
    """Same grid, same Brownian queries (reverse time included): the same numbers."""
    y0 = torch.randn(5, 2, generator=torch.Generator().manual_seed(1))
    bm = torchsde.BrownianInterval(0.0, 1.0, size=(5, 2), entropy=7)
    t = torch.tensor(direction)
    native = EulerMaruyama(n_steps=30).integrate(_drift, diffusion, y0, t, brownian=bm)  # type: ignore[arg-type]
    ours = suite_registry().create("sde_integrator", "torchsde.euler", n_steps=30)
    sol = ours.integrate(_drift, diffusion, y0, t, brownian=bm)
    torch.testing.assert_close(sol.ys, native.ys, rtol=0.0, atol=1e-13)
    assert sol.stats.nfe == native.stats.nfe == 30


@pytest.mark.parametrize("kind", ["interval", "tree", "path"])
def test_each_brownian_kind_is_seeded_by_the_generator(kind: str) -> None:
    first = _run("torchsde.euler", [0.0, 1.0], seed=5, brownian=kind).ys
    assert torch.equal(first, _run("torchsde.euler", [0.0, 1.0], seed=5, brownian=kind).ys)
    assert not torch.equal(first, _run("torchsde.euler", [0.0, 1.0], seed=6, brownian=kind).ys)


def test_the_tree_gives_one_path_per_seed_at_every_step_size() -> None:
    """``dy = c dW`` passes ``y0 + c W(0.3)``: with "tree" the same at 10 and 40 steps.

    (``W(1)`` is drawn first by every kind; an interior time shows the difference: the
    default "interval" splits the path where it is queried, so another grid gives another
    path from the same seed.)
    """

    def at_interior_time(kind: str, steps: int) -> Tensor:
        integrator = suite_registry().create(
            "sde_integrator", "torchsde.euler", n_steps=steps, brownian=kind
        )
        generator = torch.Generator().manual_seed(3)
        t = torch.tensor([0.0, 0.3, 1.0])
        return integrator.integrate(  # type: ignore[no-any-return]
            lambda t, y: torch.zeros_like(y),
            lambda t, y: torch.full_like(y, 0.5),
            torch.zeros(64, 1),
            t,
            generator=generator,
        ).ys[1]

    tree = at_interior_time("tree", 10)
    torch.testing.assert_close(tree, at_interior_time("tree", 40), rtol=0.0, atol=1e-12)
    assert not torch.allclose(at_interior_time("interval", 10), at_interior_time("interval", 40))
    spread = float((tree / 0.5).std() / 0.3**0.5)  # W(0.3) ~ N(0, 0.3) across the batch
    assert 0.7 < spread < 1.3


def test_a_generator_draw_seeds_the_path_and_moves_the_generator_on() -> None:
    generator = torch.Generator().manual_seed(11)
    integrator = suite_registry().create("sde_integrator", "torchsde.srk", n_steps=5)
    y0, t = torch.zeros(3, 2), torch.tensor([0.0, 1.0])
    first = integrator.integrate(_drift, _additive, y0, t, generator=generator).ys
    second = integrator.integrate(_drift, _additive, y0, t, generator=generator).ys
    assert not torch.equal(first, second)


@pytest.mark.parametrize("name", TORCHSDE)
def test_statistics_count_drift_evaluations(name: str) -> None:
    calls = 0

    def counted(t: Tensor, y: Tensor) -> Tensor:
        nonlocal calls
        calls += 1
        return _drift(t, y)

    integrator = suite_registry().create("sde_integrator", name, n_steps=7)
    t = torch.tensor([1.0, 0.5, 0.0])
    sol = integrator.integrate(counted, _additive, torch.zeros(2, 2), t, generator=None)
    assert sol.stats.nfe == calls >= 8
    assert sol.stats.n_accepted == 8  # 4 + 4 equal steps: each interval is split on its own


def test_srk_refuses_a_brownian_without_levy_area() -> None:
    srk = suite_registry().create("sde_integrator", "torchsde.srk", n_steps=4)
    plain = torchsde.BrownianInterval(0.0, 1.0, size=(2, 2), entropy=0)
    with pytest.raises(ValueError, match="space-time Lévy area"):
        srk.integrate(
            _drift, _additive, torch.zeros(2, 2), torch.tensor([0.0, 1.0]), brownian=plain
        )
    grid = GridBrownian(0.0, 1.0, (2, 2), 4)  # provides it
    srk.integrate(_drift, _additive, torch.zeros(2, 2), torch.tensor([0.0, 1.0]), brownian=grid)


@pytest.mark.parametrize("name", TORCHSDE)
def test_an_unknown_brownian_kind_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match=r"Unknown brownian 'sobol'.*interval, tree, path"):
        suite_registry().create("sde_integrator", name, brownian="sobol")


@pytest.mark.parametrize("name", TORCHSDE)
def test_nan_in_the_state_raises_naming_the_interval(name: str) -> None:
    integrator = suite_registry().create("sde_integrator", name, n_steps=4)
    with pytest.raises(NonFiniteStateError, match=f"{name}.*between t=0 and t=0.5") as info:
        integrator.integrate(
            lambda t, y: y / 0.0 * 0.0, _additive, torch.ones(2, 2), torch.tensor([0.0, 0.5, 1.0])
        )
    assert info.value.t == 0.0


def test_stratonovich_reading_warns_for_state_dependent_noise_only() -> None:
    heun = suite_registry().create("sde_integrator", "torchsde.reversible_heun", n_steps=4)
    y0, t = torch.ones(2, 2), torch.tensor([0.0, 1.0])
    with pytest.warns(UserWarning, match="Stratonovich.*not the Itô solution"):
        heun.integrate(_drift, _multiplicative, y0, t)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        heun.integrate(_drift, _additive, y0, t)  # additive noise: both readings agree
        suite_registry().create("sde_integrator", "torchsde.milstein", n_steps=4).integrate(
            _drift, _multiplicative, y0, t
        )


def test_state_dependence_of_the_diffusion_is_detected() -> None:
    t, y = torch.tensor(0.5), torch.randn(3, 2)
    assert diffusion_depends_on_state(_multiplicative, t, y)
    assert not diffusion_depends_on_state(_additive, t, y)
    assert not diffusion_depends_on_state(lambda t, y: torch.ones_like(y), t, y)


# -- the kit's failure paths: each broken integrator is caught by the property it breaks --


class _IgnoresGenerator(EulerMaruyama):
    def integrate(self, drift, diffusion, y0, t, *, brownian=None, generator=None):  # type: ignore[no-untyped-def]
        return super().integrate(drift, diffusion, y0, t, brownian=brownian, generator=None)


class _IgnoresBrownian(EulerMaruyama):
    def integrate(self, drift, diffusion, y0, t, *, brownian=None, generator=None):  # type: ignore[no-untyped-def]
        return super().integrate(drift, diffusion, y0, t, generator=generator)


class _FlipsReverseNoise(EulerMaruyama):
    def integrate(self, drift, diffusion, y0, t, *, brownian=None, generator=None):  # type: ignore[no-untyped-def]
        if brownian is not None and float(t[-1]) < float(t[0]):
            inner = brownian
            brownian = lambda a, b: -inner(a, b)  # noqa: E731
        return super().integrate(drift, diffusion, y0, t, brownian=brownian, generator=generator)


class _DriftsOff(EulerMaruyama):
    """Inconsistent: steps ``1.1 mu dt`` (error O(1) on an ODE, exact when mu = 0)."""

    def integrate(self, drift, diffusion, y0, t, *, brownian=None, generator=None):  # type: ignore[no-untyped-def]
        def biased(tt: Tensor, y: Tensor) -> Tensor:
            return 1.1 * drift(tt, y)

        return super().integrate(biased, diffusion, y0, t, brownian=brownian, generator=generator)


class _NeverRaises(EulerMaruyama):
    def integrate(self, drift, diffusion, y0, t, *, brownian=None, generator=None):  # type: ignore[no-untyped-def]
        try:
            return super().integrate(
                drift, diffusion, y0, t, brownian=brownian, generator=generator
            )
        except NonFiniteStateError:
            return Solution(ts=t, ys=torch.zeros(len(t), *y0.shape), stats=None)  # type: ignore[arg-type]


class _Float64Only(EulerMaruyama):
    def integrate(self, drift, diffusion, y0, t, *, brownian=None, generator=None):  # type: ignore[no-untyped-def]
        sol = super().integrate(drift, diffusion, y0, t, brownian=brownian, generator=generator)
        return Solution(ts=sol.ts, ys=sol.ys.double(), stats=sol.stats)


class _ClaimsMilstein(EulerMaruyama):
    strong_order = 1.0


class _ClaimsWeakTwo(EulerMaruyama):
    weak_order = 2.0


@pytest.mark.parametrize(
    ("broken", "prop"),
    [
        (_IgnoresGenerator, "seeded reproducibility"),
        (_IgnoresBrownian, "given brownian honoured"),
        (_FlipsReverseNoise, "given brownian honoured"),
        (_DriftsOff, "zero diffusion is an ODE solver of order >= 1"),
        (_NeverRaises, "NaN raises"),
        (_Float64Only, "dtype"),
    ],
)
def test_the_kit_catches_a_broken_contract(broken: type[SDEIntegrator], prop: str) -> None:
    with pytest.raises(ConformanceError) as info:
        check_sde_integrator(broken, options={"n_steps": 20}, orders=False)
    assert info.value.property == prop


@pytest.mark.parametrize(
    ("claims", "prop"),
    [(_ClaimsMilstein, "strong order (multiplicative noise)"), (_ClaimsWeakTwo, "weak order")],
)
def test_the_kit_rejects_an_order_the_method_does_not_have(
    claims: type[SDEIntegrator], prop: str
) -> None:
    with pytest.raises(ConformanceError) as info:
        check_sde_integrator(claims)
    assert info.value.property == prop


def test_the_kit_refuses_what_is_no_sde_integrator() -> None:
    with pytest.raises(TypeError, match="is not an SDEIntegrator"):
        check_sde_integrator(object())
