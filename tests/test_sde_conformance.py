"""The SDE conformance kit on every registered SDE, the faults it catches, bad options, listing."""

from __future__ import annotations

import json
import math

import pytest
import torch
from flowkit.plugins.sdes import VESDE, VPSDE, SubVPSDE
from registry_helpers import suite_registry
from typer.testing import CliRunner

from flowkit.cli.app import app, attach_subcommands
from flowkit.testing.conformance import ConformanceError
from flowkit.testing.sde_checks import check_sde, simulate_moments

REGISTRY = suite_registry()
ALL_PROPERTIES = ["contract", "shapes", "moment equations", "kernel moments", "prior"]


@pytest.mark.parametrize("name", REGISTRY.names("sde"))
def test_every_registered_sde_conforms(name: str) -> None:
    assert check_sde(name, registry=REGISTRY) == ALL_PROPERTIES


@pytest.mark.parametrize(
    ("cls", "options"),
    [
        (VPSDE, {"beta_min": 1.0, "beta_max": 5.0, "end_time": 2.0}),
        (SubVPSDE, {"beta_min": 0.5, "beta_max": 0.5}),
        (VESDE, {"sigma_min": 0.5, "sigma_max": 2.0, "end_time": 0.5}),
    ],
)
def test_non_default_options_conform(cls: type, options: dict) -> None:
    assert check_sde(cls, options=options) == ALL_PROPERTIES


class SongVE(VESDE):
    """VE with the kernel std of Song et al.'s code, ``sigma_s`` itself: off by ``sigma_min``."""

    def kernel(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.ones_like(s), self.noise_scale(s)


class LoudVP(VPSDE):
    """VP with 10 % too much noise: the kernel no longer matches the SDE."""

    def diffusion(self, s: torch.Tensor) -> torch.Tensor:
        return 1.1 * super().diffusion(s)


class SlowVP(VPSDE):
    """VP whose drift forgot the factor 1/2."""

    def drift(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return 2.0 * super().drift(x, s)


class NonlinearVP(VPSDE):
    """A drift that is not ``a(s) x``: no Gaussian kernel."""

    def drift(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return super().drift(x, s) + 0.1 * torch.tanh(x)


class FlatDiffusionVP(VPSDE):
    """A diffusion that ignores per-sample times (returns one value)."""

    def diffusion(self, s: torch.Tensor) -> torch.Tensor:
        return super().diffusion(s.reshape(-1)[0])


class BadPriorVP(VPSDE):
    """A prior whose samples have the wrong shape."""

    def prior(self, dim: int):  # type: ignore[no-untyped-def]
        class Prior:
            def sample(self, shape):  # type: ignore[no-untyped-def]
                return torch.randn(*shape)

            def log_prob(self, z):  # type: ignore[no-untyped-def]
                return -0.5 * z.pow(2).sum(-1)

        return Prior()


@pytest.mark.parametrize(
    ("broken", "prop"),
    [
        (SongVE, "moment equations"),
        (LoudVP, "moment equations"),
        (SlowVP, "moment equations"),
        (NonlinearVP, "contract"),
        (FlatDiffusionVP, "shapes"),
        (BadPriorVP, "prior"),
    ],
)
def test_the_checker_catches_a_broken_sde(broken: type, prop: str) -> None:
    with pytest.raises(ConformanceError) as info:
        check_sde(broken)
    assert info.value.property == prop, str(info.value)
    assert broken.__name__ in str(info.value)


def _z_scores(sde, s: float, n_paths: int = 4000) -> tuple[float, float]:
    """How many standard errors the simulated variance at ``s`` is from ``sde``'s kernel."""
    x0 = torch.tensor([0.5, -1.0], dtype=torch.float64)
    gen = torch.Generator().manual_seed(3)
    ((_, variance),) = simulate_moments(sde, x0, [s], n_paths=n_paths, generator=gen)
    want = sde.kernel(torch.tensor(s, dtype=torch.float64))[1] ** 2
    std_error = float(want) * math.sqrt(2.0 / (n_paths - 1))
    return tuple(float(v) for v in (variance - want).abs() / std_error)  # type: ignore[return-value]


def test_simulation_tells_the_exact_ve_kernel_from_songs_approximation() -> None:
    """The simulated law matches the exact variance and rejects ``sigma_s^2`` (Song's)."""
    exact, song = VESDE(), SongVE()
    s = 0.1  # sigma_s^2 = 5.5e-4 vs the exact 4.5e-4: 20 % apart, 9 standard errors
    assert max(_z_scores(exact, s)) <= 4.0
    assert min(_z_scores(song, s)) > 4.0


def test_simulation_rejects_a_wrong_diffusion() -> None:
    assert max(_z_scores(VPSDE(), 0.4)) <= 4.0
    assert min(_z_scores(LoudVP(), 0.4)) > 4.0


def test_options_with_an_instance_are_refused() -> None:
    with pytest.raises(TypeError, match="options cannot be given with an instance"):
        check_sde(VPSDE(), options={"beta_max": 5.0})


@pytest.mark.parametrize(
    ("name", "options", "error", "message"),
    [
        ("vp", {"beta_min": 0.0}, ValueError, "beta_min must be positive and finite"),
        ("vp", {"beta_min": -1.0}, ValueError, "beta_min must be positive and finite"),
        ("vp", {"beta_max": float("nan")}, ValueError, "beta_max must be positive and finite"),
        ("vp", {"beta_max": float("inf")}, ValueError, "beta_max must be positive and finite"),
        ("vp", {"beta_min": 5.0, "beta_max": 1.0}, ValueError, "must be >= beta_min"),
        ("vp", {"beta_min": "0.1"}, TypeError, "beta_min must be a number, got str"),
        ("vp", {"beta_max": True}, TypeError, "beta_max must be a number, got bool"),
        ("subvp", {"beta_min": 0.0}, ValueError, "beta_min must be positive and finite"),
        ("subvp", {"beta_min": 2.0, "beta_max": 1.0}, ValueError, "must be >= beta_min"),
        ("ve", {"sigma_min": 0.0}, ValueError, "sigma_min must be positive and finite"),
        ("ve", {"sigma_max": -3.0}, ValueError, "sigma_max must be positive and finite"),
        ("ve", {"sigma_min": 1.0, "sigma_max": 1.0}, ValueError, "must be > sigma_min"),
        ("ve", {"sigma_min": 2.0, "sigma_max": 1.0}, ValueError, "must be > sigma_min"),
        ("ve", {"sigma_max": None}, TypeError, "sigma_max must be a number, got NoneType"),
        ("vp", {"end_time": 0.0}, ValueError, "end_time must be positive and finite"),
        ("ve", {"end_time": float("inf")}, ValueError, "end_time must be positive and finite"),
        ("subvp", {"start_time": 1.0}, ValueError, r"start_time must be in \[0, end_time"),
        ("vp", {"start_time": -1e-3}, ValueError, r"start_time must be in \[0, end_time"),
    ],
)
def test_bad_options_raise_a_clear_error(name: str, options: dict, error: type, message: str):
    with pytest.raises(error, match=message):
        REGISTRY.create("sde", name, **options)


@pytest.mark.parametrize("name", REGISTRY.names("sde"))
def test_unknown_options_raise(name: str) -> None:
    with pytest.raises(TypeError, match=rf"Unknown option\(s\) 'beta_mx' for SDE '{name}'"):
        REGISTRY.create("sde", name, beta_mx=3.0)


attach_subcommands()
runner = CliRunner()


def test_flowkit_list_shows_the_sde_kinds() -> None:
    result = runner.invoke(app, ["list"], env={"COLUMNS": "400"})  # no truncated names
    assert result.exit_code == 0, result.output
    assert "SDEs" in result.output and "SDE integrators" in result.output
    for name in (*REGISTRY.names("sde"), *REGISTRY.names("sde_integrator")):
        assert name in result.output


def test_flowkit_list_json_shows_the_sde_kinds() -> None:
    result = runner.invoke(app, ["list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["components"]
    listed = {(r["kind"], r["name"]): r for r in rows}
    for name in REGISTRY.names("sde"):
        assert listed[("sde", name)]["distribution"] == "flowkit"
    for name in REGISTRY.names("sde_integrator"):
        caps = listed[("sde_integrator", name)]["capabilities"]
        assert set(caps) == {"strong_order", "additive_strong_order", "weak_order", "sde_type"}
    assert listed[("sde_integrator", "euler_maruyama")]["aliases"] == ["em"]
