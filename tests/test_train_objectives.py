"""Training by any objective, and schedules of objectives, from the API, TOML and the CLI."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import torch
from registry_helpers import registry_with_opaque_field
from typer.testing import CliRunner

from flowkit.cli.app import app, attach_subcommands
from flowkit.errors import IncompatibleComponentsError, UnknownComponentError
from flowkit.registry import reset_registry
from flowkit.train import ConfigError, TrainConfig, Trainer, dump_toml, load_checkpoint, train
from flowkit.train.config import load_toml, parse_schedule
from flowkit.train.model import EXACT_TRACE_MAX_DIM, check_components, eval_trace, model_trace

TINY: dict[str, Any] = {
    "n_train": 256,
    "n_val": 64,
    "n_test": 64,
    "batch_size": 32,
    "val_every": 4,
    "checkpoint_every": 4,
    "eval_batch_size": 64,
    "field_options": {"hidden": [8, 8]},
    "integrator": "rk4",
    "integrator_options": {"n_steps": 4},
    "eval_integrator": "rk4",
    "eval_integrator_options": {"n_steps": 8},
    "progress": False,
    "plots": False,
    "dtype": "float64",
    "device": "cpu",
}
SCHEDULE = [
    {"objective": "flow_matching", "iterations": 4, "objective_options": {"coupling": "ot"}},
    {"objective": "rectified_flow", "iterations": 4},
    {"objective": "maximum_likelihood", "iterations": 4},
]

attach_subcommands()
runner = CliRunner()


class _KilledError(Exception):
    pass


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open() as handle:
        return [
            {k: v for k, v in row.items() if k != "train_seconds"} for row in csv.DictReader(handle)
        ]


def _one_line_error(result: Any, *needles: str) -> str:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: ") and "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# -- configuration ------------------------------------------------------------------------
def test_default_objective_is_maximum_likelihood_with_one_stage() -> None:
    config = TrainConfig(**TINY)
    assert config.objective == "maximum_likelihood" and config.schedule == []
    assert config.stages() == [("maximum_likelihood", {}, 1000)]


def test_schedule_sets_the_iterations_and_round_trips_through_toml(tmp_path: Path) -> None:
    config = TrainConfig(**TINY, schedule=SCHEDULE)
    assert config.iterations == 12
    assert [s[0] for s in config.stages()] == [s["objective"] for s in SCHEDULE]
    path = tmp_path / "c.toml"
    path.write_text(dump_toml(config))
    assert load_toml(path) == config


def test_schedule_as_toml_array_of_tables(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        "[optim]\nlr = 0.005\n\n"
        '[[schedule]]\nobjective = "flow_matching"\niterations = 8\n'
        'objective_options = {coupling = "ot", sigma = 0.1}\n\n'
        '[[schedule]]\nobjective = "maximum_likelihood"\niterations = 2\n'
    )
    config = load_toml(path)
    assert config.stages() == [
        ("flow_matching", {"coupling": "ot", "sigma": 0.1}, 8),
        ("maximum_likelihood", {}, 2),
    ]
    assert config.iterations == 10 and config.lr == 0.005


def test_parse_schedule_of_the_command_line() -> None:
    assert parse_schedule("flow_matching:800, maximum_likelihood:200") == [
        {"objective": "flow_matching", "iterations": 800},
        {"objective": "maximum_likelihood", "iterations": 200},
    ]
    for bad in ("flow_matching", "flow_matching:0", "fm:x", ":3", "fm:3,"):
        with pytest.raises(ConfigError, match="NAME:ITERATIONS"):
            parse_schedule(bad)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"schedule": [{"objective": "fm"}]}, "lacks 'iterations'"),
        ({"schedule": [{"objective": "fm", "iterations": 0}]}, "must be positive"),
        ({"schedule": [{"objective": "fm", "iteration": 2}]}, "did you mean 'iterations'"),
        ({"schedule": ["fm:2"]}, "must be a table"),
        ({"schedule": [{"objective": "fm", "iterations": 2}], "objective": "fm"}, "not both"),
        ({"objective_options": {"steer": 0.1}}, "--steer"),
        ({"objective_options": {"regularizers": {}}}, "--regularizer"),
        ({"objective": "reflow", "objective_options": {"teacher": 1}}, "frozen copy"),
        ({"objective": "flow_matching", "nproc": 2}, "--nproc 1"),
    ],
)
def test_bad_objective_configurations_raise(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**{**TINY, **changes})


def test_objective_names_and_options_are_checked_through_the_registry() -> None:
    with pytest.raises(UnknownComponentError, match="flow_matching"):
        check_components(TrainConfig(**TINY, objective="flow_matchin"))
    with pytest.raises(ConfigError, match=r"did you mean .coupling..*--objective-options"):
        check_components(TrainConfig(**TINY, objective="fm", objective_options={"couplin": "ot"}))
    stages = [{"objective": "fm", "iterations": 2, "objective_options": {"sigmaa": 0.1}}]
    with pytest.raises(ConfigError, match=r"did you mean .sigma..*stage 1"):
        check_components(TrainConfig(**TINY, schedule=stages))


def test_a_bad_option_value_is_a_config_error_before_training(tmp_path: Path) -> None:
    config = TrainConfig(**TINY, objective="fm", objective_options={"coupling": "best"})
    with pytest.raises(ConfigError, match="Unknown coupling 'best'"):
        Trainer(config, run_dir=tmp_path, write=False)


# -- training -----------------------------------------------------------------------------
def test_flow_matching_run_from_the_cli_writes_its_outputs(tmp_path: Path) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(dump_toml(TrainConfig(**TINY)))
    out = tmp_path / "run"
    args = ["train", "--config", str(config), "--out-dir", str(out), "--iterations", "30"]
    args += ["--objective", "flow_matching", "--objective-options", "coupling=ot"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "test NLL" in result.output
    for name in ("checkpoint.pt", "config.toml", "metrics.csv", "results.json"):
        assert (out / name).is_file(), name
    rows = _rows(out)
    assert len(rows) == 30
    assert {r["objective"] for r in rows} == {"flow_matching"} and rows[-1]["stage"] == "1"
    assert all(float(r["fm_loss"]) == float(r["loss"]) for r in rows)
    assert all(r["nll"] == "" for r in rows)  # flow matching never solves the ODE to train
    assert rows[27]["val_nll"] != ""  # validation solves it (iteration 28)
    saved = load_toml(out / "config.toml")
    assert saved.objective == "flow_matching" and saved.objective_options == {"coupling": "ot"}
    assert float(rows[-1]["fm_loss"]) < float(rows[0]["fm_loss"])


def test_maximum_likelihood_keeps_its_columns_and_numbers(tmp_path: Path) -> None:
    config = TrainConfig(**TINY, iterations=4)
    explicit = config.replace(objective="mle")
    a = train(config, run_dir=tmp_path / "a")
    b = train(explicit, run_dir=tmp_path / "b")
    assert a.test_nll == b.test_nll
    rows = _rows(tmp_path / "a")
    assert list(rows[0])[:11] == [
        "iteration",
        "loss",
        "nll",
        "reg_kinetic_energy",
        "nfe",
        "backward_nfe",
        "lr",
        "t1",
        "grad_norm",
        "val_nll",
        "objective",
    ]
    assert rows[0]["objective"] == "maximum_likelihood" and rows[0]["nfe"] != ""


def test_schedule_runs_every_stage_in_order(tmp_path: Path) -> None:
    config = TrainConfig(**TINY, schedule=SCHEDULE)
    result = train(config, run_dir=tmp_path)
    assert result.iterations == 12
    rows = _rows(tmp_path)
    assert [r["stage"] for r in rows] == ["1"] * 4 + ["2"] * 4 + ["3"] * 4
    assert [r["objective"] for r in rows[::4]] == [s["objective"] for s in SCHEDULE]
    assert all(r["fm_loss"] != "" for r in rows[:4])
    assert all(r["rf_loss"] != "" for r in rows[4:8])
    assert all(r["nll"] != "" and r["fm_loss"] == r["rf_loss"] == "" for r in rows[8:])


def test_rectified_flow_stage_learns_from_the_model_that_ended_the_previous_stage(
    tmp_path: Path,
) -> None:
    config = TrainConfig(**TINY, schedule=SCHEDULE[:2])
    trainer = Trainer(config, run_dir=tmp_path, write=False)
    for _ in range(4):
        trainer.step()
    assert trainer.objective.__class__.__name__ == "FlowMatching"
    after_fm = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.step()  # enters the reflow stage: the teacher is frozen now
    teacher = trainer.objective.teacher
    for key, value in teacher.state_dict().items():
        torch.testing.assert_close(value, after_fm[key], rtol=0, atol=0)
    trainer.step()  # the student moves, the teacher stays as it was
    assert any(not torch.equal(v, after_fm[k]) for k, v in trainer.model.state_dict().items())
    for key, value in teacher.state_dict().items():
        torch.testing.assert_close(value, after_fm[key], rtol=0, atol=0)
    assert all(not p.requires_grad for p in teacher.parameters())


def test_resume_mid_schedule_reproduces_the_uninterrupted_run(tmp_path: Path) -> None:
    config = TrainConfig(**{**TINY, "checkpoint_every": 2}, schedule=SCHEDULE)
    full = train(config, run_dir=tmp_path / "full")

    def kill(trainer: Trainer, row: dict[str, Any]) -> None:
        if trainer.iteration == 8:  # in the reflow stage; last checkpoint at 6
            raise _KilledError

    with pytest.raises(_KilledError):
        Trainer(config, run_dir=tmp_path / "killed").fit(kill)
    state = load_checkpoint(tmp_path / "killed" / "checkpoint.pt")
    assert state["iteration"] == 6 and state["stage"] == 2 and state["teacher"] is not None
    resumed = train(config, run_dir=tmp_path / "killed", resume=True)
    assert resumed.test_nll == full.test_nll
    assert _rows(tmp_path / "killed") == _rows(tmp_path / "full")


# -- command-line errors ------------------------------------------------------------------
def test_cli_schedule_and_its_errors(tmp_path: Path) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(dump_toml(TrainConfig(**TINY)))
    base = ["train", "--config", str(config)]
    out = tmp_path / "run"
    result = runner.invoke(app, [*base, "--out-dir", str(out), "--schedule", "fm:3,mle:2"])
    assert result.exit_code == 0, result.output
    assert "stopped after 5 iterations" in result.output
    assert [r["objective"] for r in _rows(out)] == ["fm"] * 3 + ["mle"] * 2
    _one_line_error(runner.invoke(app, [*base, "--schedule", "fm"]), "NAME:ITERATIONS")
    _one_line_error(
        runner.invoke(app, [*base, "--schedule", "fm:3", "--iterations", "4"]), "--iterations"
    )
    _one_line_error(
        runner.invoke(app, [*base, "--schedule", "fm:3", "--objective", "fm"]), "not both"
    )
    _one_line_error(runner.invoke(app, [*base, "--objective", "flow_matchng"]), "flow_matching")
    _one_line_error(
        runner.invoke(app, [*base, "--objective", "fm", "--objective-options", "coupling=none"]),
        "coupling",
    )
    _one_line_error(
        runner.invoke(app, [*base, "--objective", "fm", "--objective-options", "sigm=0.1"]),
        "did you mean 'sigma'",
    )


# -- the evaluation trace -----------------------------------------------------------------
def test_eval_trace_auto_is_the_training_trace_for_maximum_likelihood() -> None:
    config = TrainConfig(**TINY, trace="hutchinson")
    assert eval_trace(config, 2) == "hutchinson" and eval_trace(config, 100) == "hutchinson"
    assert eval_trace(config.replace(eval_trace="exact"), 2) == "exact"


def test_eval_trace_auto_for_a_flow_matching_field_without_a_divergence() -> None:
    reset_registry(registry_with_opaque_field())  # conftest restores the suite's registry
    config = TrainConfig(**{**TINY, "field_options": {}}, objective="fm", field="opaque")
    assert model_trace(config, 2) == "exact" and eval_trace(config, 2) == "exact"
    assert eval_trace(config, EXACT_TRACE_MAX_DIM) == "exact"
    assert eval_trace(config, EXACT_TRACE_MAX_DIM + 1) == "hutchinson"
    # the field takes the configured trace: it is kept
    assert eval_trace(config.replace(field="mlp", field_options={}), 40) == "analytic"


def test_flow_matching_trains_a_field_without_a_divergence_without_choosing_a_trace(
    tmp_path: Path,
) -> None:
    reset_registry(registry_with_opaque_field())  # conftest restores the suite's registry
    config = TrainConfig(
        **{**TINY, "field_options": {"hidden": [8]}, "iterations": 4},
        objective="fm",
        field="opaque",
    )
    with pytest.raises(IncompatibleComponentsError, match="closed-form divergence"):
        Trainer(config.replace(objective="maximum_likelihood"), run_dir=tmp_path, write=False)
    result = train(config, run_dir=tmp_path / "run")
    assert torch.isfinite(torch.tensor(result.test_nll))
    exact = train(config.replace(eval_trace="exact"), run_dir=tmp_path / "exact")
    assert exact.test_nll == result.test_nll  # auto chose exact
    hutch = train(config.replace(eval_trace="hutchinson"), run_dir=tmp_path / "hutch")
    assert hutch.test_nll != result.test_nll  # the option reaches validation and test


def test_unknown_eval_trace_is_refused_before_training() -> None:
    with pytest.raises(UnknownComponentError, match="exact"):
        check_components(TrainConfig(**TINY, eval_trace="exakt"))
