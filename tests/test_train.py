"""`flowkit train`: configuration, command line, a tiny run end to end, resume, checkpoints."""

from __future__ import annotations

import csv
import json
import typing
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from flowkit.cli.app import app, attach_subcommands
from flowkit.cli.train_cmd import option_name
from flowkit.train import (
    CheckpointError,
    ConfigError,
    TrainConfig,
    Trainer,
    dump_toml,
    load_checkpoint,
    load_toml,
    save_checkpoint,
    train,
)
from flowkit.train.config import config_fields
from flowkit.train.resume import RESUMABLE_OPTIONS

attach_subcommands()

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
    "progress": False,
    "plots": False,
    "dtype": "float64",
}


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open() as handle:
        return [
            {k: v for k, v in row.items() if k != "train_seconds"} for row in csv.DictReader(handle)
        ]


# -- configuration ------------------------------------------------------------------------
def test_toml_round_trip_and_sections(tmp_path: Path) -> None:
    config = TrainConfig(regularizers={"kinetic_energy": 0.01}, steer=0.1, time_budget=5.0)
    path = tmp_path / "c.toml"
    path.write_text(dump_toml(config))
    assert load_toml(path) == config
    path.write_text('lr = 0.01\n[model]\ntrace = "hutchinson"\n')
    loaded = load_toml(path)
    assert (loaded.lr, loaded.trace) == (0.01, "hutchinson")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"lrr": 0.1}, "did you mean 'lr'"),
        ({"optim": {"seed": 1}}, r"belongs in \[run\]"),
        ({"lr": "fast"}, "must be a number"),
        ({"batch_size": 0}, "must be positive"),
        ({"steer": 0.5}, "smaller than t1"),
        ({"log_format": "xml"}, "one of 'csv', 'jsonl'"),
        ({"nproc": 3, "batch_size": 100}, "divisible by nproc"),
        ({"regularizer_options": {"jacobian_frobenius_exact": {}}}, "not among the regularizers"),
        ({"regularizers": {"kinetic_energy": -1.0}}, "must be >= 0"),
    ],
)
def test_config_errors(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict(values)


def test_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_toml(tmp_path / "none.toml")
    (tmp_path / "bad.toml").write_text("lr = = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_toml(tmp_path / "bad.toml")


def test_every_config_field_is_a_documented_cli_option() -> None:
    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    for name in config_fields():
        assert option_name(name) in result.output, name
    assert "--resume" in result.output and "--config" in result.output


def test_cli_options_override_the_config_file(tmp_path: Path) -> None:
    from flowkit.cli.train_cmd import build_config

    path = tmp_path / "c.toml"
    path.write_text("lr = 0.01\nseed = 4\n[model]\nfield_options = {hidden = [4]}\n")
    config = build_config(
        {
            "lr": 0.002,
            "field_options": ["hidden=[16, 16]", "activation=softplus"],
            "regularizer_options": None,
            "regularizers": ["jacobian_frobenius=0.1"],
        },
        config_file=path,
    )
    assert config.lr == 0.002 and config.seed == 4
    assert config.field_options == {"hidden": [16, 16], "activation": "softplus"}
    assert config.regularizers == {"jacobian_frobenius": 0.1}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        build_config({"field_options": ["hidden"]})
    with pytest.raises(ConfigError, match=r"NAME\.KEY=VALUE"):
        build_config(
            {
                "regularizers": ["jacobian_frobenius=1"],
                "regularizer_options": ["distribution=gaussian"],
            }
        )
    hints = typing.get_type_hints(TrainConfig)
    assert hints["regularizers"] == dict[str, float]


# -- a tiny run end to end ------------------------------------------------------------------
def test_tiny_run_end_to_end_through_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = [
        "train",
        "--out-dir",
        str(out),
        "--plots",
        "--no-progress",
        "--dtype",
        "float64",
        "--n-train",
        "256",
        "--n-val",
        "64",
        "--n-test",
        "64",
        "--batch-size",
        "32",
        "--iterations",
        "6",
        "--val-every",
        "3",
        "--eval-batch-size",
        "500",
        "--field-options",
        "hidden=[8]",
        "--integrator",
        "rk4",
        "--integrator-options",
        "n_steps=3",
        "--trace",
        "hutchinson",
        "--regularizers",
        "kinetic_energy=0.01",
        "--regularizers",
        "jacobian_frobenius=0.01",
        "--steer",
        "0.2",
        "--log-format",
        "jsonl",
        "--lr-schedule",
        "cosine",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "test NLL" in result.output
    for name in (
        "density.png",
        "samples.png",
        "trajectories.png",
        "checkpoint.pt",
        "config.toml",
        "results.json",
        "metrics.jsonl",
    ):
        assert (out / name).stat().st_size > 0, name
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == list(range(1, 7))
    assert {"reg_kinetic_energy", "reg_jacobian_frobenius", "nfe", "val_nll"} <= set(rows[2])
    assert all(0.3 <= r["t1"] <= 0.7 for r in rows)  # STEER around t1 = 0.5
    assert len({r["t1"] for r in rows}) == 6
    results = json.loads((out / "results.json").read_text())
    assert np.isfinite(results["test_nll"]) and results["iterations"] == 6


def test_digits_run_reports_bits_per_dim(tmp_path: Path) -> None:
    config = TrainConfig(
        **{
            **TINY,
            "data": "digits",
            "iterations": 2,
            "trace": "hutchinson",
            "val_every": 2,
            "eval_batch_size": 200,
            "plots": True,
        }
    )
    result = train(config, run_dir=tmp_path)
    assert result.test_bits_per_dim is not None
    assert result.test_bits_per_dim == pytest.approx(
        (result.test_nll + 64 * np.log(17 / 4)) / (64 * np.log(2))
    )
    assert (tmp_path / "samples.png").exists() and (tmp_path / "data.png").exists()


def test_loss_decreases_on_8gaussians(tmp_path: Path) -> None:
    config = TrainConfig(
        **{
            **TINY,
            "iterations": 40,
            "val_every": 40,
            "lr": 1e-2,
            "batch_size": 128,
            "field_options": {"hidden": [32, 32]},
        }
    )
    trainer = Trainer(config, run_dir=tmp_path, write=False)
    before = trainer.evaluate(trainer.data.test)
    result = trainer.fit()
    assert result.test_nll < before - 0.2


def test_evaluation_uses_the_tight_evaluation_integrator(tmp_path: Path) -> None:
    """Reported NLLs come from eval_integrator (dopri5 at 1e-5), not the training solver."""
    from flowkit.cnf import CNF

    config = TrainConfig(
        **{**TINY, "integrator": "euler", "integrator_options": {"n_steps": 1}, "lr": 5e-2}
    )
    trainer = Trainer(config, run_dir=tmp_path, write=False)
    for _ in range(8):  # move away from the near-identity initial field
        trainer.step()
    test = trainer.data.test
    reference = CNF(
        trainer.model.field,
        "dopri5",
        "exact",
        "backprop",
        dim=2,
        t1=config.t1,
        integrator_options={"rtol": 1e-10, "atol": 1e-10},
    )
    with torch.no_grad():
        exact_nll = float(-reference.log_prob(test).mean())
        one_step_nll = float(-trainer.model.log_prob(test).mean())
    reported = trainer.evaluate(test)
    assert reported == pytest.approx(exact_nll, abs=1e-5)
    assert abs(one_step_nll - exact_nll) > 1e-3  # one Euler step: the training solver differs
    loose = Trainer(
        config.replace(eval_integrator="euler", eval_integrator_options={"n_steps": 1}),
        run_dir=tmp_path,
        write=False,
    )
    loose.model.load_state_dict(trainer.model.state_dict())
    assert loose.evaluate(test) == pytest.approx(one_step_nll, rel=1e-12)
    with pytest.raises(ConfigError, match="'rtoll' \\(did you mean 'rtol'\\?\\)"):
        Trainer(config.replace(eval_integrator_options={"rtoll": 1e-5}), write=False)


# -- resume and checkpoints -------------------------------------------------------------------
class _KilledError(Exception):
    pass


def test_resume_reproduces_the_uninterrupted_run(tmp_path: Path) -> None:
    values = {
        **TINY,
        "iterations": 12,
        "trace": "hutchinson",
        "steer": 0.2,
        "regularizers": {"kinetic_energy": 0.05, "jacobian_frobenius": 0.05},
        "lr_schedule": "cosine",
        "warmup": 2,
        "patience": 5,
    }
    config = TrainConfig(**values)
    full = train(config, run_dir=tmp_path / "full")

    def kill(trainer: Trainer, row: dict[str, Any]) -> None:
        if trainer.iteration == 8:  # after the checkpoint at 4 and one at 8 is due
            raise _KilledError

    with pytest.raises(_KilledError):
        Trainer(config, run_dir=tmp_path / "killed").fit(kill)
    assert load_checkpoint(tmp_path / "killed" / "checkpoint.pt")["iteration"] == 4
    resumed = train(config, run_dir=tmp_path / "killed", resume=True)
    assert resumed.test_nll == full.test_nll
    assert resumed.best_val_nll == full.best_val_nll
    assert _rows(tmp_path / "killed") == _rows(tmp_path / "full")


def test_resume_refuses_a_changed_configuration(tmp_path: Path) -> None:
    config = TrainConfig(**{**TINY, "iterations": 4})
    train(config, run_dir=tmp_path)
    with pytest.raises(ConfigError, match="lr"):
        Trainer(config.replace(lr=0.5), run_dir=tmp_path, resume=True)
    more = train(config.replace(iterations=6), run_dir=tmp_path, resume=True)
    assert more.iterations == 6


def test_resume_via_cli_and_its_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--resume", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "does not exist" in result.output
    config = TrainConfig(**{**TINY, "iterations": 4})
    train(config, run_dir=tmp_path)
    result = runner.invoke(app, ["train", "--resume", str(tmp_path), "--lr", "0.1"])
    assert result.exit_code == 2 and "--lr" in result.output
    result = runner.invoke(app, ["train", "--resume", str(tmp_path), "--iterations", "5"])
    assert result.exit_code == 0, result.output
    assert "stopped after 5 iterations" in result.output


def test_resume_options_are_one_list_for_cli_and_trainer(tmp_path: Path) -> None:
    """The command line and the trainer accept the same resumable options, from one list."""
    config = TrainConfig(**{**TINY, "iterations": 4})
    train(config, run_dir=tmp_path / "run")
    moved = tmp_path / "moved"
    (tmp_path / "run").rename(moved)
    changes = {"iterations": 5, "progress": False, "plots": False, "checkpoint_every": 2}
    changes |= {"threads": 1, "device": "cpu", "out_dir": str(moved), "time_budget": 60.0}
    assert set(changes) | {"tensorboard"} == set(RESUMABLE_OPTIONS)
    assert train(config.replace(**changes), run_dir=moved, resume=True).iterations == 5
    runner = CliRunner()
    args = ["--iterations", "6", "--threads", "1", "--checkpoint-every", "3", "--no-plots"]
    result = runner.invoke(app, ["train", "--resume", str(moved), *args])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["train", "--resume", str(moved), "--out-dir", str(tmp_path)])
    assert result.exit_code == 2 and "drop --out-dir" in result.output


def test_checkpoint_is_atomic_and_weights_only(tmp_path: Path) -> None:
    path = save_checkpoint(
        {"config": "{}", "iteration": 1, "model": {"w": torch.ones(2)}, "optimizer": {}, "rng": {}},
        tmp_path / "c.pt",
    )
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary left behind
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(2))


class _Foreign:
    pass


def test_corrupt_and_foreign_checkpoints_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="No checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    good = save_checkpoint(
        {"config": "{}", "iteration": 1, "model": {}, "optimizer": {}, "rng": {}},
        tmp_path / "good.pt",
    )
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(tmp_path / "cut.pt")
    torch.save({"obj": _Foreign()}, tmp_path / "pickle.pt")
    with pytest.raises(CheckpointError, match="unsafe unpickling"):
        load_checkpoint(tmp_path / "pickle.pt")
    torch.save({"w": torch.ones(1)}, tmp_path / "state_dict.pt")
    with pytest.raises(CheckpointError, match="no 'flowkit-train-checkpoint' marker"):
        load_checkpoint(tmp_path / "state_dict.pt")
    torch.save({"format": "flowkit-train-checkpoint", "version": 99}, tmp_path / "v.pt")
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(tmp_path / "v.pt")


def test_bad_data_fails_before_training(tmp_path: Path) -> None:
    data = np.random.default_rng(0).normal(size=(50, 2))
    data[7, 1] = np.nan
    np.save(tmp_path / "nan.npy", data)
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["train", "--data", str(tmp_path / "nan.npy"), "--out-dir", str(out)]
    )
    assert result.exit_code == 2
    assert "NaN or Inf" in result.output and "rows 7" in result.output
    assert not out.exists()  # nothing was written: the error came before training
    result = CliRunner().invoke(app, ["train", "--field", "mlpp", "--out-dir", str(out)])
    assert result.exit_code == 2 and "Did you mean 'mlp'" in result.output
