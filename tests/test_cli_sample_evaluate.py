"""A trained run is reusable: ``flowkit.load``, ``flowkit sample`` and ``flowkit evaluate``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import flowkit
from flowkit.cli.app import app, attach_subcommands
from flowkit.train import CheckpointError, RunDirError, TrainConfig, Trainer
from flowkit.train.saved import evaluate_run, load_run

TINY: dict[str, Any] = {
    "n_train": 256,
    "n_val": 64,
    "n_test": 64,
    "batch_size": 32,
    "iterations": 8,
    "val_every": 4,
    "checkpoint_every": 4,
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

EVALUATE_TOLERANCE = 1e-5
"""|NLL(rk4, 200 steps, exact trace) - NLL(dopri5 at 1e-8, analytic trace)| in nats.

rk4's global error is O(h^4) = O(1e-9) on this smooth, small field; the
analytic and the exact trace of an MLP agree to rounding."""

attach_subcommands()
runner = CliRunner()


def _one_line_error(result: Any, *needles: str) -> str:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: ") and "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Trainer, Path, Any]:
    run_dir = tmp_path_factory.mktemp("run") / "run"
    trainer = Trainer(TrainConfig(**TINY), run_dir=run_dir)
    result = trainer.fit()
    return trainer, run_dir, result


def test_load_returns_the_trainers_final_model(trained: tuple[Trainer, Path, Any]) -> None:
    trainer, run_dir, _ = trained
    model = flowkit.load(run_dir)
    assert isinstance(model, flowkit.CNF) and not model.training
    x = trainer.data.test[:16].cpu()
    expected = trainer.final_model().log_prob(x)
    torch.testing.assert_close(model.log_prob(x), expected, rtol=0, atol=0)


def test_load_best_and_last_weights(trained: tuple[Trainer, Path, Any]) -> None:
    trainer, run_dir, _ = trained
    last = flowkit.load(run_dir, weights="last")
    for key, value in last.state_dict().items():
        torch.testing.assert_close(value, trainer.model.state_dict()[key], rtol=0, atol=0)
    assert trainer.best_state is not None
    best = flowkit.load(run_dir)
    for key, value in best.state_dict().items():
        torch.testing.assert_close(value, trainer.best_state[key], rtol=0, atol=0)


def test_load_errors(tmp_path: Path, trained: tuple[Trainer, Path, Any]) -> None:
    _, run_dir, _ = trained
    with pytest.raises(RunDirError, match="does not exist"):
        flowkit.load(tmp_path / "nothing")
    with pytest.raises(RunDirError, match=r"no config\.toml"):
        flowkit.load(tmp_path)
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "config.toml").write_text((run_dir / "config.toml").read_text())
    with pytest.raises(CheckpointError, match="No checkpoint"):
        flowkit.load(copy)
    (copy / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        flowkit.load(copy)
    (copy / "checkpoint.pt").write_bytes((run_dir / "checkpoint.pt").read_bytes())
    text = (run_dir / "config.toml").read_text().replace("hidden = [8, 8]", "hidden = [9]")
    (copy / "config.toml").write_text(text)
    with pytest.raises(CheckpointError, match="does not fit"):
        flowkit.load(copy)


# -- evaluate -----------------------------------------------------------------------------
def test_evaluate_defaults_reproduce_the_runs_test_nll(trained: tuple[Trainer, Path, Any]) -> None:
    _, run_dir, result = trained
    out = runner.invoke(app, ["evaluate", str(run_dir), "--json"])
    assert out.exit_code == 0, out.output
    values = json.loads(out.output)
    assert values["nll"] == pytest.approx(result.test_nll, rel=0, abs=1e-12)
    assert values["split"] == "test" and values["samples"] == TINY["n_test"]


def test_evaluate_with_other_components_agrees_within_tolerance(
    trained: tuple[Trainer, Path, Any],
) -> None:
    _, run_dir, result = trained
    args = ["evaluate", str(run_dir), "--integrator", "rk4", "--integrator-options"]
    args += ["n_steps=200", "--trace", "exact", "--json"]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    values = json.loads(out.output)
    assert values["integrator"] == "rk4" and values["trace"] == "exact"
    assert values["integrator_options"] == {"n_steps": 200}
    assert values["nll"] != result.test_nll  # computed anew, not read back
    assert abs(values["nll"] - result.test_nll) < EVALUATE_TOLERANCE
    coarse = evaluate_run(load_run(run_dir), integrator="euler", integrator_options={"n_steps": 1})
    assert abs(coarse.nll - result.test_nll) > EVALUATE_TOLERANCE  # the choice takes effect


def test_evaluate_options_update_the_runs_own_integrator(
    trained: tuple[Trainer, Path, Any],
) -> None:
    _, run_dir, _ = trained
    out = runner.invoke(
        app, ["evaluate", str(run_dir), "--integrator-options", "rtol=1e-4", "--split", "val"]
    )
    assert out.exit_code == 0, out.output
    assert "val NLL" in out.output and "'rtol': 0.0001, 'atol': 1e-08" in out.output


def test_evaluate_errors_are_one_line(tmp_path: Path, trained: tuple[Trainer, Path, Any]) -> None:
    _, run_dir, _ = trained
    run = str(run_dir)
    _one_line_error(runner.invoke(app, ["evaluate", str(tmp_path / "x")]), "does not exist")
    _one_line_error(runner.invoke(app, ["evaluate", str(tmp_path)]), "no config.toml")
    _one_line_error(runner.invoke(app, ["evaluate", run, "--split", "train"]), "--split")
    _one_line_error(runner.invoke(app, ["evaluate", run, "--integrator", "dopri"]), "dopri5")
    _one_line_error(runner.invoke(app, ["evaluate", run, "--trace", "exakt"]), "exact")
    _one_line_error(
        runner.invoke(app, ["evaluate", run, "--integrator-options", "rtoll=1e-3"]), "rtol"
    )
    _one_line_error(runner.invoke(app, ["evaluate", run, "--integrator-options", "rtol"]), "KEY")
    _one_line_error(runner.invoke(app, ["evaluate", run, "--batch-size", "0"]), "--batch-size")
    _one_line_error(runner.invoke(app, ["evaluate", run, "--weights", "worst"]), "--weights")


# -- sample -------------------------------------------------------------------------------
def test_sample_writes_npy_of_the_right_shape(
    tmp_path: Path, trained: tuple[Trainer, Path, Any]
) -> None:
    _, run_dir, _ = trained
    out = tmp_path / "s.npy"
    result = runner.invoke(app, ["sample", str(run_dir), "-n", "13", "--out", str(out)])
    assert result.exit_code == 0, result.output
    samples = np.load(out)
    assert samples.shape == (13, 2) and np.isfinite(samples).all()
    again = tmp_path / "t.npy"
    runner.invoke(app, ["sample", str(run_dir), "-n", "13", "--out", str(again)])
    np.testing.assert_array_equal(np.load(again), samples)  # --seed 0 both times


def test_sample_never_overwrites_without_being_asked(
    tmp_path: Path, trained: tuple[Trainer, Path, Any]
) -> None:
    _, run_dir, _ = trained
    out = tmp_path / "mine.npy"
    np.save(out, np.zeros(3))
    result = runner.invoke(app, ["sample", str(run_dir), "-n", "4", "--out", str(out)])
    _one_line_error(result, "--overwrite")
    np.testing.assert_array_equal(np.load(out), np.zeros(3))
    args = ["sample", str(run_dir), "-n", "4", "--out", str(out), "--overwrite"]
    assert runner.invoke(app, args).exit_code == 0
    assert np.load(out).shape == (4, 2)


def test_sample_errors_are_one_line(tmp_path: Path, trained: tuple[Trainer, Path, Any]) -> None:
    _, run_dir, _ = trained
    run = str(run_dir)
    _one_line_error(runner.invoke(app, ["sample", str(tmp_path / "x"), "--out", "a.npy"]), "exist")
    out = str(tmp_path / "a.npy")
    _one_line_error(runner.invoke(app, ["sample", run, "-n", "0", "--out", out]), "-n")
    _one_line_error(runner.invoke(app, ["sample", run, "--out", str(tmp_path / "a.csv")]), ".npy")
    _one_line_error(
        runner.invoke(app, ["sample", run, "--out", str(tmp_path / "no" / "a.npy")]), "folder"
    )
    _one_line_error(runner.invoke(app, ["sample", run, "--out", out, "--integrator", "rk5"]), "rk4")


def test_sample_is_in_the_datas_units(tmp_path: Path) -> None:
    """A standardised file: samples come back on the file's scale, not the model's."""
    rng = np.random.default_rng(0)
    values = rng.normal(size=(400, 2)) * np.array([10.0, 0.5]) + np.array([100.0, -3.0])
    data = tmp_path / "points.npy"
    np.save(data, values)
    run_dir = tmp_path / "run"
    config = TrainConfig(**{**TINY, "data": str(data), "iterations": 4})
    Trainer(config, run_dir=run_dir).fit()
    out = tmp_path / "s.npy"
    result = runner.invoke(app, ["sample", str(run_dir), "-n", "400", "--out", str(out)])
    assert result.exit_code == 0, result.output
    samples = np.load(out)
    # model space is about N(0, 1); the data's units put the features near 100 and -3
    assert abs(samples[:, 0].mean() - 100.0) < 10.0 and abs(samples[:, 1].mean() + 3.0) < 1.0
    assert 2.0 < samples[:, 0].std() < 50.0 and 0.1 < samples[:, 1].std() < 2.5


def test_digits_evaluate_reports_bits_per_dim_and_sample_pixels(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    config = TrainConfig(
        **{
            **TINY,
            "data": "digits",
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
    out = runner.invoke(app, ["evaluate", str(run_dir), "--json"])
    assert out.exit_code == 0, out.output
    values = json.loads(out.output)
    assert values["trace"] == "hutchinson"
    # the same probes as the run's own test (its evaluation seed): the same numbers
    assert values["nll"] == pytest.approx(result.test_nll, rel=1e-12)
    assert values["bits_per_dim"] == pytest.approx(result.test_bits_per_dim, rel=1e-12)
    text = runner.invoke(app, ["evaluate", str(run_dir)]).output
    assert "test bits/dim" in text
    samples_file = tmp_path / "s.npy"
    args = ["sample", str(run_dir), "-n", "5", "--out", str(samples_file)]
    assert runner.invoke(app, args).exit_code == 0
    pixels = np.load(samples_file)  # dequantised pixel values: 17 levels, in [0, 17]
    assert pixels.shape == (5, 64) and pixels.min() >= 0 and pixels.max() <= 17


def test_load_a_checkpoint_without_its_dimension(tmp_path: Path) -> None:
    """Checkpoints written before the dimension was saved: read it from the data."""
    from flowkit.train import load_checkpoint, save_checkpoint

    run_dir = tmp_path / "run"
    trainer = Trainer(TrainConfig(**{**TINY, "iterations": 2, "val_every": 2}), run_dir=run_dir)
    trainer.fit()
    state = load_checkpoint(run_dir / "checkpoint.pt")
    del state["dim"]
    save_checkpoint(state, run_dir / "checkpoint.pt")
    x = trainer.data.test[:8]
    torch.testing.assert_close(
        flowkit.load(run_dir).log_prob(x), trainer.final_model().log_prob(x), rtol=0, atol=0
    )
