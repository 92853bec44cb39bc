"""Conditional training (``--context``): labelled data in training, sampling and evaluation."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from flowkit.plugins.objectives import RectifiedFlow
from typer.testing import CliRunner

import flowkit
from flowkit.cli.app import app, attach_subcommands
from flowkit.data import TOY_CLASSES, one_hot, sample_toy
from flowkit.interfaces import Objective, ObjectiveResult
from flowkit.matching import rectified_flow_loss, reflow_pairs
from flowkit.registry import build_registry, reset_registry
from flowkit.train import ConfigError, TrainConfig, Trainer, train
from flowkit.train.checkpoint import load_checkpoint
from flowkit.train.config import dump_toml, load_toml
from flowkit.train.context import MarginalModel
from flowkit.train.saved import evaluate_run, load_run, sample_run

TINY: dict[str, Any] = {
    "data": "8gaussians",
    "context": True,
    "n_train": 256,
    "n_val": 64,
    "n_test": 64,
    "batch_size": 32,
    "iterations": 30,
    "val_every": 10,
    "checkpoint_every": 10,
    "eval_batch_size": 64,
    "field_options": {"hidden": [8, 8]},
    "integrator": "rk4",
    "integrator_options": {"n_steps": 4},
    "eval_integrator": "dopri5",
    "eval_integrator_options": {"rtol": 1e-8, "atol": 1e-8},
    "progress": False,
    "plots": False,
    "dtype": "float64",
    "device": "cpu",
}

attach_subcommands()
runner = CliRunner()


class _KilledError(Exception):
    pass


def _one_line_error(result: Any, *needles: str) -> str:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: ") and "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _test_context(trainer: Trainer) -> torch.Tensor:
    assert trainer.data.test_labels is not None
    return one_hot(trainer.data.test_labels, 8, dtype=torch.float64)


@pytest.fixture(scope="module", params=["maximum_likelihood", "flow_matching"])
def conditional_run(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Trainer, Path, Any]:
    run_dir = tmp_path_factory.mktemp("run") / "run"
    trainer = Trainer(TrainConfig(**{**TINY, "objective": request.param}), run_dir=run_dir)
    return trainer, run_dir, trainer.fit()


# -- training -------------------------------------------------------------------------------
def test_a_conditional_run_writes_conditional_results(
    conditional_run: tuple[Trainer, Path, Any],
) -> None:
    trainer, run_dir, result = conditional_run
    assert trainer.model.field.context_dim == TOY_CLASSES["8gaussians"] == 8
    saved = json.loads((run_dir / "results.json").read_text())
    assert saved["conditional"] is True and result.conditional is True
    assert saved["iterations"] == 30 and np.isfinite(saved["test_nll"])
    assert load_toml(run_dir / "config.toml").context is True
    # the test NLL is the conditional one, each point under its own label ...
    x, context = trainer.data.test, _test_context(trainer)
    model = trainer.evaluation_model(trainer.final_model())
    with torch.no_grad():
        expected = float(-model.log_prob(x, context).mean())
        shuffled = float(-model.log_prob(x, context.roll(1, dims=0)).mean())
    assert result.test_nll == pytest.approx(expected, rel=1e-12)
    assert abs(shuffled - expected) > 1e-6  # ... and the labels matter


def test_load_rebuilds_the_conditional_model(conditional_run: tuple[Trainer, Path, Any]) -> None:
    trainer, run_dir, _ = conditional_run
    model = flowkit.load(run_dir)
    assert model.field.context_dim == 8
    x, context = trainer.data.test[:16], _test_context(trainer)[:16]
    expected = trainer.final_model().log_prob(x, context)
    torch.testing.assert_close(model.log_prob(x, context), expected, rtol=0, atol=0)


def test_evaluate_reproduces_the_conditional_test_nll(
    conditional_run: tuple[Trainer, Path, Any],
) -> None:
    _, run_dir, result = conditional_run
    out = runner.invoke(app, ["evaluate", str(run_dir), "--json"])
    assert out.exit_code == 0, out.output
    values = json.loads(out.output)
    assert values["nll"] == pytest.approx(result.test_nll, rel=0, abs=1e-12)
    assert values["conditional"] is True
    text = runner.invoke(app, ["evaluate", str(run_dir)])
    assert "test NLL given the labels" in text.output
    val = evaluate_run(load_run(run_dir), split="val")
    assert val.nll == pytest.approx(result.best_val_nll, rel=0, abs=1e-12)


def test_a_rectified_flow_stage_trains_a_conditional_run(tmp_path: Path) -> None:
    schedule = [
        {"objective": "flow_matching", "iterations": 6},
        {"objective": "rectified_flow", "iterations": 6},
    ]
    config = TrainConfig(**{**TINY, "schedule": schedule, "iterations": 12})
    result = Trainer(config, run_dir=tmp_path / "run").fit()
    assert result.iterations == 12 and result.conditional and np.isfinite(result.test_nll)


def test_toml_context_key(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[data]\ndata = "moons"\ncontext = true\n')
    assert load_toml(path).context is True
    assert "context = true" in dump_toml(TrainConfig(context=True))
    assert TrainConfig().context is False


def test_resume_of_a_conditional_run_reproduces_it(tmp_path: Path) -> None:
    config = TrainConfig(**{**TINY, "iterations": 20, "checkpoint_every": 5})
    full = train(config, run_dir=tmp_path / "full")

    def kill(trainer: Trainer, row: dict[str, Any]) -> None:
        if trainer.iteration == 10:  # after the checkpoint at 5, before the one at 10
            raise _KilledError

    with pytest.raises(_KilledError):
        Trainer(config, run_dir=tmp_path / "killed").fit(kill)
    assert load_checkpoint(tmp_path / "killed" / "checkpoint.pt")["iteration"] == 5
    resumed = runner.invoke(app, ["train", "--resume", str(tmp_path / "killed")])
    assert resumed.exit_code == 0, resumed.output
    assert "test NLL given the labels" in resumed.output
    again = json.loads((tmp_path / "killed" / "results.json").read_text())
    assert again["test_nll"] == full.test_nll and again["conditional"] is True


def test_plots_of_a_conditional_run(tmp_path: Path) -> None:
    config = TrainConfig(
        **{
            **TINY,
            "iterations": 2,
            "plots": True,
            "eval_integrator": "rk4",
            "eval_integrator_options": {"n_steps": 4},
        }
    )
    run_dir = tmp_path / "run"
    train(config, run_dir=run_dir)
    for name in ("density.png", "samples.png", "trajectories.png"):
        assert (run_dir / name).stat().st_size > 0


def test_marginal_model_is_the_mixture_of_the_conditionals() -> None:
    torch.manual_seed(0)
    model = flowkit.CNF(
        "mlp",
        "rk4",
        "exact",
        "backprop",
        dim=2,
        field_options={"hidden": (8,), "context_dim": 2},
        integrator_options={"n_steps": 4},
    ).double()
    x = sample_toy("moons", 16, seed=0, dtype=torch.float64)
    conditional = [
        model.log_prob(x, one_hot(torch.full((16,), k), 2, dtype=x.dtype)) for k in (0, 1)
    ]
    only_first = MarginalModel(model, torch.tensor([1.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(only_first.log_prob(x), conditional[0])
    halves = MarginalModel(model, torch.tensor([0.5, 0.5], dtype=torch.float64))
    expected = torch.log(0.5 * conditional[0].exp() + 0.5 * conditional[1].exp())
    torch.testing.assert_close(halves.log_prob(x), expected)


# -- rectified flow with a conditional CNF teacher -------------------------------------------
def test_rectified_flow_draws_pairs_per_context_from_a_conditional_cnf_teacher() -> None:
    torch.manual_seed(0)
    model = flowkit.CNF(
        "mlp",
        "rk4",
        None,
        "backprop",
        dim=2,
        field_options={"hidden": (16,), "context_dim": 3},
        integrator_options={"n_steps": 4},
    ).double()
    x = sample_toy("8gaussians", 32, seed=1, dtype=torch.float64)
    context = one_hot(torch.arange(32) % 3, 3, dtype=torch.float64)
    objective = RectifiedFlow(teacher=model)
    result = objective.loss(model, x, context=context, generator=torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(4)
    z = torch.randn(x.shape, generator=g, dtype=x.dtype)
    pairs = reflow_pairs(objective.teacher.transform, z, context=context)
    with torch.no_grad():
        torch.testing.assert_close(pairs.x, model.transform(z, context))
        assert not torch.allclose(pairs.x, model.transform(z, context.roll(1, dims=0)))
    assert torch.equal(result.loss, rectified_flow_loss(model.field, pairs, generator=g))
    assert result.loss.requires_grad


# -- sampling ---------------------------------------------------------------------------------
def test_sample_with_a_label(tmp_path: Path, conditional_run: tuple[Trainer, Path, Any]) -> None:
    _, run_dir, _ = conditional_run
    out = tmp_path / "three.npy"
    result = runner.invoke(
        app, ["sample", str(run_dir), "-n", "50", "--label", "3", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "of class 3" in result.output
    samples = np.load(out)
    assert samples.shape == (50, 2) and np.isfinite(samples).all()
    run = load_run(run_dir)
    again = sample_run(run, 50, label=3).numpy()
    np.testing.assert_array_equal(samples, again)  # deterministic for a seed
    other = sample_run(run, 50, label=5).numpy()
    assert not np.allclose(samples, other)  # the label is the context


def test_sample_of_a_briefly_trained_model_lies_near_its_component(tmp_path: Path) -> None:
    config = TrainConfig(
        **{
            **TINY,
            "objective": "flow_matching",
            "n_train": 4096,
            "batch_size": 256,
            "iterations": 300,
            "lr": 1e-2,
            "val_every": 300,
            "checkpoint_every": 300,
            "field_options": {"hidden": [32, 32]},
            "integrator_options": {"n_steps": 8},
            "eval_integrator": "rk4",
            "eval_integrator_options": {"n_steps": 16},
        }
    )
    run_dir = tmp_path / "run"
    Trainer(config, run_dir=run_dir).fit()
    run = load_run(run_dir)
    data = sample_toy("8gaussians", 4000, seed=5, dtype=torch.float64, labels=True)
    points, labels = data
    for label in (0, 3, 6):
        centre = points[labels == label].mean(dim=0)
        samples = sample_run(run, 400, label=label)
        distance = (samples.mean(dim=0) - centre).norm()
        nearest_other = min(
            float((points[labels == k].mean(dim=0) - centre).norm()) for k in range(8) if k != label
        )
        assert float(distance) < nearest_other / 2, (label, float(distance), nearest_other)


# -- one-line errors ------------------------------------------------------------------------
def test_context_on_data_without_labels_is_a_one_line_error(tmp_path: Path) -> None:
    base = ["train", "--context", "--iterations", "1", "--no-progress", "--no-plots"]
    for data in ("swissroll", str(tmp_path / "mine.csv")):
        if data.endswith(".csv"):
            np.savetxt(data, np.random.default_rng(0).normal(size=(64, 2)), delimiter=",")
        out = tmp_path / f"out-{Path(data).stem}"
        result = runner.invoke(app, [*base, "--data", data, "--out-dir", str(out)])
        _one_line_error(result, "--context needs class labels", "8gaussians", "digits")
        assert not out.exists()


def test_context_dim_mismatch_is_a_one_line_error(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "train",
            "--context",
            "--field-options",
            "context_dim=3",
            "--out-dir",
            str(tmp_path / "out"),
        ],
    )
    _one_line_error(result, "context_dim=3", "8 classes", "drop context_dim")
    with pytest.raises(ConfigError, match="context_dim=3"):
        Trainer(TrainConfig(**{**TINY, "field_options": {"context_dim": 3}}), write=False)
    same = Trainer(TrainConfig(**{**TINY, "field_options": {"context_dim": 8}}), write=False)
    assert same.model.field.context_dim == 8


class _Unconditional(Objective):
    """An objective plugin that declares no context (``accepts_context`` False)."""

    def loss(self, model, batch, *, context=None, generator=None):  # type: ignore[no-untyped-def]
        loss = model.field(torch.zeros((), dtype=batch.dtype), batch).pow(2).mean()
        return ObjectiveResult(loss, {})


def test_an_objective_without_context_is_refused_for_a_conditional_run(tmp_path: Path) -> None:
    module = types.ModuleType("plain_objective")
    module.flowkit_register_objectives = flowkit.hookimpl(  # type: ignore[attr-defined]
        lambda register: register("plain_loss", _Unconditional)
    )
    reset_registry(build_registry(autoload=False, plugins=[("plain_objective", module)]))
    config = TrainConfig(**{**TINY, "objective": "plain_loss"})
    with pytest.raises(ConfigError, match="'plain_loss' takes no context"):
        Trainer(config, write=False)
    assert Trainer(config.replace(context=False), write=False).objective is not None


def test_context_with_several_processes_is_refused() -> None:
    with pytest.raises(ConfigError, match="--nproc 1"):
        TrainConfig(context=True, nproc=2)


def test_data_without_labels_given_to_a_conditional_trainer_is_refused() -> None:
    unlabelled = Trainer(TrainConfig(**{**TINY, "context": False}), write=False).data
    with pytest.raises(ConfigError, match="labels=True"):
        Trainer(TrainConfig(**TINY), data=unlabelled, write=False)


def test_sample_label_errors_are_one_line(
    tmp_path: Path, conditional_run: tuple[Trainer, Path, Any]
) -> None:
    _, run_dir, _ = conditional_run
    out = str(tmp_path / "s.npy")
    missing = runner.invoke(app, ["sample", str(run_dir), "--out", out])
    _one_line_error(missing, "conditional", "--label K", "0..7")
    for bad in ("8", "-1"):
        wrong = runner.invoke(app, ["sample", str(run_dir), "--label", bad, "--out", out])
        _one_line_error(wrong, f"--label {bad} is out of range", "0..7")
    assert not Path(out).exists()


def test_a_label_for_an_unconditional_run_is_a_one_line_error(tmp_path: Path) -> None:
    run_dir = tmp_path / "plain"
    train(TrainConfig(**{**TINY, "context": False, "iterations": 2}), run_dir=run_dir)
    result = runner.invoke(
        app, ["sample", str(run_dir), "--label", "0", "--out", str(tmp_path / "s.npy")]
    )
    _one_line_error(result, "trained without --context", "drop --label")
    assert json.loads((run_dir / "results.json").read_text())["conditional"] is False


def test_digits_with_their_labels(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    config = TrainConfig(
        **{
            **TINY,
            "data": "digits",
            "objective": "flow_matching",
            "iterations": 2,
            "val_every": 2,
            "trace": "hutchinson",
            "eval_integrator": "rk4",
            "eval_integrator_options": {"n_steps": 2},
            "eval_batch_size": 200,
        }
    )
    run_dir = tmp_path / "run"
    result = Trainer(config, run_dir=run_dir).fit()
    assert result.conditional and flowkit.load(run_dir).field.context_dim == 10
    values = json.loads(runner.invoke(app, ["evaluate", str(run_dir), "--json"]).output)
    assert values["nll"] == pytest.approx(result.test_nll, rel=1e-12)
    samples = tmp_path / "seven.npy"
    args = ["sample", str(run_dir), "-n", "4", "--label", "7", "--out", str(samples)]
    assert runner.invoke(app, args).exit_code == 0
    assert np.load(samples).shape == (4, 64)
    other = tmp_path / "ten.npy"
    wrong = runner.invoke(app, ["sample", str(run_dir), "--label", "10", "--out", str(other)])
    _one_line_error(wrong, "--label 10 is out of range", "0..9")
    assert not other.exists()
