"""``flowkit sample RUN_DIR --sampler reverse_sde|pc|ode`` on a trained score model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from flowkit.cli.app import app, attach_subcommands
from flowkit.train import TrainConfig, Trainer

TINY: dict[str, Any] = {
    "n_train": 256,
    "n_val": 64,
    "n_test": 64,
    "batch_size": 64,
    "iterations": 4,
    "progress": False,
    "plots": False,
    "dtype": "float64",
    "device": "cpu",
}
SOLVERS = {"integrator": "rk4", "eval_integrator": "rk4"}
"""Four rk4 steps for training and evaluation (fast on this tiny model)."""
STEPS = {"integrator_options": {"n_steps": 4}, "eval_integrator_options": {"n_steps": 4}}

attach_subcommands()
runner = CliRunner()


def _train(root: Path, **config: Any) -> Path:
    run_dir = root / "run"
    Trainer(TrainConfig(**{**TINY, **SOLVERS, **STEPS, **config}), run_dir=run_dir).fit()
    return run_dir


@pytest.fixture(scope="module")
def score_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(
        tmp_path_factory.mktemp("score"),
        field="probability_flow",
        field_options={"score_field_options": {"hidden": [8, 8]}},
        objective="score_matching",
        t1=1.0,
    )


def _sample(run_dir: Path, out: Path, *args: str) -> Any:
    return runner.invoke(app, ["sample", str(run_dir), "-n", "50", "--out", str(out), *args])


def _one_line_error(result: Any, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ("--sampler", "reverse_sde", "--steps", "20"),
        ("--sampler", "reverse_sde", "--steps", "20", "--sde-integrator", "em", "--no-denoise"),
        ("--sampler", "pc", "--steps", "10", "--corrector-steps", "2", "--snr", "0.1"),
        (
            "--sampler",
            "pc",
            "--steps",
            "10",
            "--predictor",
            "euler_maruyama",
            "--corrector",
            "none",
        ),
        (
            "--sampler",
            "ode",
        ),
        (),
    ],
    ids=["reverse_sde", "reverse_sde-em-noisy", "pc", "pc-em-none", "ode", "default"],
)
def test_each_sampler_writes_samples(
    score_run: Path, tmp_path: Path, args: tuple[str, ...]
) -> None:
    out = tmp_path / "x.npy"
    result = _sample(score_run, out, *args)
    assert result.exit_code == 0, result.output
    x = np.load(out)
    assert x.shape == (50, 2) and np.isfinite(x).all()


def test_the_seed_fixes_the_stochastic_samples(score_run: Path, tmp_path: Path) -> None:
    args = ("--sampler", "pc", "--steps", "10")
    samples = []
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        assert _sample(score_run, tmp_path / f"{name}.npy", *args, "--seed", seed).exit_code == 0
        samples.append(np.load(tmp_path / f"{name}.npy"))
    np.testing.assert_array_equal(samples[0], samples[1])
    assert not np.array_equal(samples[0], samples[2])


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (("--sampler", "sde"), ("--sampler must be one of", "ode, reverse_sde, pc")),
        (("--snr", "0.2"), ("--snr", "not of the ODE sampler")),
        (("--steps", "5", "--no-denoise"), ("--steps, --no-denoise",)),
        (("--sampler", "pc", "--snr", "-1"), ("snr must be a positive",)),
        (("--sampler", "reverse_sde", "--snr", "0.2"), ("option of the pc sampler",)),
        (("--sampler", "pc", "--corrector", "langevn"), ("Did you mean 'langevin'",)),
        (("--sampler", "pc", "--integrator", "rk4"), ("are for --sampler ode",)),
        (("--sampler", "reverse_sde", "--sde-integrator", "nope"), ("nope",)),
    ],
)
def test_bad_sampler_options_are_one_line_errors(
    score_run: Path, tmp_path: Path, args: tuple[str, ...], needles: tuple[str, ...]
) -> None:
    out = tmp_path / "x.npy"
    _one_line_error(_sample(score_run, out, *args), *needles)
    assert not out.exists()


def test_an_sde_sampler_on_a_run_that_is_no_score_model_is_one_line(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    run_dir = _train(tmp_path_factory.mktemp("mlp"), field_options={"hidden": [8]}, iterations=2)
    for sampler in ("reverse_sde", "pc"):
        result = _sample(run_dir, tmp_path / "x.npy", "--sampler", sampler)
        _one_line_error(result, f"--sampler {sampler} needs a score model", "--sampler ode")
    assert _sample(run_dir, tmp_path / "x.npy", "--sampler", "ode").exit_code == 0


def test_a_conditional_score_run_samples_the_class_asked_for(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    run_dir = _train(
        tmp_path_factory.mktemp("conditional"),
        field="probability_flow",
        field_options={"score_field_options": {"hidden": [8]}},
        objective="score_matching",
        t1=1.0,
        context=True,
        data="8gaussians",
    )
    args = ("--sampler", "pc", "--steps", "10", "--seed", "1")
    for label in ("2", "5"):
        assert _sample(run_dir, tmp_path / f"{label}.npy", *args, "--label", label).exit_code == 0
    assert not np.array_equal(np.load(tmp_path / "2.npy"), np.load(tmp_path / "5.npy"))
    _one_line_error(_sample(run_dir, tmp_path / "x.npy", *args), "pass --label K")
