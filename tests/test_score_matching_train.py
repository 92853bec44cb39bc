"""Training a score model with ``flowkit train``: probability-flow NLLs, save, load, resume."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

import flowkit
from flowkit.cli.app import app, attach_subcommands
from flowkit.errors import IncompatibleComponentsError
from flowkit.sde import ProbabilityFlow
from flowkit.train import TrainConfig, Trainer, dump_toml, load_checkpoint, save_checkpoint, train
from flowkit.train.config import load_toml
from flowkit.train.model import check_components, eval_trace, model_trace
from flowkit.train.saved import evaluate_run, load_run

SCORE: dict[str, Any] = {
    "n_train": 256,
    "n_val": 64,
    "n_test": 64,
    "batch_size": 32,
    "val_every": 4,
    "checkpoint_every": 4,
    "eval_batch_size": 64,
    "field": "probability_flow",
    "field_options": {"score_field_options": {"hidden": [8, 8]}},
    "objective": "score_matching",
    "integrator": "rk4",
    "integrator_options": {"n_steps": 4},
    "eval_integrator": "rk4",
    "eval_integrator_options": {"n_steps": 8},
    "lr": 3e-3,
    "progress": False,
    "plots": False,
    "dtype": "float64",
    "device": "cpu",
}

attach_subcommands()
runner = CliRunner()


class _KilledError(Exception):
    pass


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open() as handle:
        return [
            {k: v for k, v in row.items() if k != "train_seconds"} for row in csv.DictReader(handle)
        ]


def test_cli_trains_validates_tests_and_reloads_a_score_model(tmp_path: Path) -> None:
    config = tmp_path / "score.toml"
    config.write_text(dump_toml(TrainConfig(**SCORE)))
    out = tmp_path / "run"
    args = ["train", "--config", str(config), "--out-dir", str(out), "--iterations", "8"]
    args += [
        "--objective-options",
        "weighting=likelihood",
        "--objective-options",
        "importance_sampling=true",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "test NLL" in result.output
    rows = _rows(out)
    assert len(rows) == 8 and {r["objective"] for r in rows} == {"score_matching"}
    assert all(float(r["score_matching_loss"]) == float(r["loss"]) for r in rows)
    assert all(r["nll"] == "" for r in rows)  # no ODE solve while training
    assert rows[3]["val_nll"] != "" and rows[7]["val_nll"] != ""  # the probability flow's NLL
    saved = load_toml(out / "config.toml")
    assert saved.objective_options == {"weighting": "likelihood", "importance_sampling": True}

    run = load_run(out)
    model = flowkit.load(out)
    assert isinstance(model.field, ProbabilityFlow) and model.field.clock.t1 == saved.t1 == 0.5
    reported = json.loads((out / "results.json").read_text())["test_nll"]
    assert evaluate_run(run).nll == pytest.approx(reported, rel=1e-12)
    # ... and with other components: the probability flow is an ordinary field.
    evaluated = runner.invoke(
        app, ["evaluate", str(out), "--integrator", "dopri5", "--trace", "hutchinson", "--json"]
    )
    assert evaluated.exit_code == 0, evaluated.output
    other = json.loads(evaluated.output)
    assert other["trace"] == "hutchinson" and abs(other["nll"] - reported) < 1.0


def test_the_evaluation_trace_of_a_score_model_is_exact_in_2d_and_hutchinson_above() -> None:
    config = TrainConfig(**SCORE)
    assert model_trace(config, 2) == "exact" and eval_trace(config, 2) == "exact"
    assert eval_trace(config, 64) == "hutchinson"


def test_the_default_field_options_fit_the_probability_flow_field(tmp_path: Path) -> None:
    """Without --field-options the score network is the default MLP (64-64-64, tanh)."""
    values = {k: v for k, v in SCORE.items() if k != "field_options"}
    trainer = Trainer(TrainConfig(**values, iterations=1), run_dir=tmp_path, write=False)
    network = trainer.model.field.score_model.network
    assert [layer.out_features for layer in network.net if hasattr(layer, "out_features")] == [
        64,
        64,
        64,
        2,
    ]


def test_an_objective_that_cannot_train_the_field_is_refused_before_training(
    tmp_path: Path,
) -> None:
    with pytest.raises(IncompatibleComponentsError, match="--field probability_flow"):
        check_components(TrainConfig(**{**SCORE, "field": "mlp", "field_options": {}}))
    result = runner.invoke(
        app, ["train", "--objective", "score_matching", "--out-dir", str(tmp_path / "r")]
    )
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "--field probability_flow" in lines[0]
    assert not (tmp_path / "r").exists()


def test_resume_reproduces_the_uninterrupted_score_matching_run(tmp_path: Path) -> None:
    config = TrainConfig(**{**SCORE, "checkpoint_every": 2, "iterations": 10})
    full = train(config, run_dir=tmp_path / "full")

    def kill(trainer: Trainer, row: dict[str, Any]) -> None:
        if trainer.iteration == 8:
            raise _KilledError

    with pytest.raises(_KilledError):
        Trainer(config, run_dir=tmp_path / "killed").fit(kill)
    assert load_checkpoint(tmp_path / "killed" / "checkpoint.pt")["iteration"] == 6
    resumed = train(config, run_dir=tmp_path / "killed", resume=True)
    assert resumed.test_nll == full.test_nll
    assert _rows(tmp_path / "killed") == _rows(tmp_path / "full")


def test_a_schedule_fine_tunes_a_score_model_by_maximum_likelihood(tmp_path: Path) -> None:
    """score matching, then maximum likelihood through the probability flow ODE (TOML)."""
    toml = tmp_path / "schedule.toml"
    toml.write_text(
        dump_toml(TrainConfig(**{k: v for k, v in SCORE.items() if k != "objective"}))
        + '\n[[schedule]]\nobjective = "score_matching"\niterations = 4\n'
        'objective_options = {weighting = "likelihood"}\n\n'
        '[[schedule]]\nobjective = "maximum_likelihood"\niterations = 2\n'
    )
    config = load_toml(toml)
    result = train(config.replace(trace="exact"), run_dir=tmp_path / "run")
    rows = _rows(tmp_path / "run")
    assert [r["objective"] for r in rows] == ["score_matching"] * 4 + ["maximum_likelihood"] * 2
    assert all(r["score_matching_loss"] != "" and r["nll"] == "" for r in rows[:4])
    assert all(r["nll"] != "" for r in rows[4:])
    assert torch.isfinite(torch.tensor(result.test_nll))


def test_digits_report_bits_per_dim_through_the_probability_flow(tmp_path: Path) -> None:
    config = TrainConfig(
        **{**SCORE, "data": "digits", "iterations": 2, "val_every": 100, "eval_batch_size": 512}
    )
    result = train(config, run_dir=tmp_path / "digits")
    assert eval_trace(config, 64) == "hutchinson"
    assert result.test_bits_per_dim is not None and result.test_bits_per_dim > 0


def test_a_score_model_trained_elsewhere_is_evaluated_by_flowkit_evaluate(tmp_path: Path) -> None:
    """Trained in a plain loop with the objective (not by ``flowkit train``), saved as a
    run directory (config.toml + the trainer's checkpoint format), evaluated from the CLI."""
    config = TrainConfig(**{k: v for k, v in SCORE.items() if k != "objective"})
    trainer = Trainer(config.replace(objective="score_matching"), run_dir=tmp_path, write=False)
    model = trainer.model
    objective = flowkit.registry.get_registry().create("objective", "score_matching")
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        optimizer.zero_grad()
        objective.loss(model, trainer.next_batch(), generator=generator).loss.backward()
        optimizer.step()
    run_dir = tmp_path / "elsewhere"
    run_dir.mkdir()
    (run_dir / "config.toml").write_text(dump_toml(trainer.config))
    save_checkpoint(trainer.checkpoint_state(), run_dir / "checkpoint.pt")
    result = runner.invoke(app, ["evaluate", str(run_dir), "--json"])
    assert result.exit_code == 0, result.output
    with torch.no_grad():
        expected = float(-trainer.evaluation_model().log_prob(trainer.data.test).mean())
    assert json.loads(result.output)["nll"] == pytest.approx(expected, rel=1e-9)


def test_a_conditional_score_model_trains_with_context(tmp_path: Path) -> None:
    """--context: the score network gets context_dim = the number of classes, and the
    reported NLLs are the probability flow's conditional NLLs."""
    config = TrainConfig(**{**SCORE, "iterations": 4, "context": True})
    result = train(config, run_dir=tmp_path / "run")
    assert result.conditional and torch.isfinite(torch.tensor(result.test_nll))
    model = flowkit.load(tmp_path / "run")
    assert model.field.context_dim == 8 and model.field.score_model.network.context_dim == 8
