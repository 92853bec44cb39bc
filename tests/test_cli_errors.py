"""Every user error of ``flowkit list``, ``train`` and ``bench`` is one line with exit status 2.

Before the hardening issue, misspelt options, a bad device, unusable output
locations and diverging data ended in 40- to 56-line tracebacks (or, for
``bench --out FILE``, after every measurement had run). Internal errors keep
their traceback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from flowkit.cli.app import app, attach_subcommands
from flowkit.train import CheckpointError, TrainConfig, Trainer, dump_toml, load_checkpoint
from flowkit.train.trainer import TrainingDivergedError

attach_subcommands()
runner = CliRunner()

TINY: dict[str, Any] = {
    "n_train": 64,
    "n_val": 16,
    "n_test": 16,
    "batch_size": 16,
    "iterations": 2,
    "val_every": 2,
    "eval_batch_size": 64,
    "field_options": {"hidden": [8]},
    "integrator": "rk4",
    "integrator_options": {"n_steps": 2},
    "progress": False,
    "plots": False,
    "device": "cpu",
}


def _error_line(args: list[str], *needles: str) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _config(tmp_path: Path, extra: str = "", **changes: Any) -> Path:
    path = tmp_path / "c.toml"
    text = dump_toml(TrainConfig(**{**TINY, **changes}))
    path.write_text(text + extra)
    return path


# -- train ------------------------------------------------------------------------------------
def test_misspelt_component_options_name_the_key_and_the_fix(tmp_path: Path) -> None:
    out = str(tmp_path / "run")
    cfg = str(_config(tmp_path))
    _error_line(
        ["train", "--config", cfg, "--field-options", "hiden=[8,8]", "--out-dir", out],
        "'hiden' (did you mean 'hidden'?)",
        "--field-options",
    )
    _error_line(
        ["train", "--config", cfg, "--integrator", "dopri5", "--integrator-options", "rtoll=1e-3"],
        "'rtoll' (did you mean 'rtol'?)",
        "dopri5",
    )
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("section", "needles"),
    [
        ("[model]\nfield_options = {hiden = [8, 8]}\n", ("'hiden'", "did you mean 'hidden'")),
        (
            "[optim]\neval_integrator_options = {rtoll = 1e-5}\n",
            ("'rtoll'", "did you mean 'rtol'", "eval_integrator_options"),
        ),
        ("[optim]\nlrr = 0.1\n", ("'optim.lrr'", "did you mean")),
    ],
)
def test_misspelt_keys_in_a_toml_file(tmp_path: Path, section: str, needles: tuple) -> None:
    path = tmp_path / "user.toml"
    path.write_text(section)
    _error_line(["train", "--config", str(path), "--out-dir", str(tmp_path / "r")], *needles)


def test_bad_device_and_bad_option_values(tmp_path: Path) -> None:
    cfg = str(_config(tmp_path))
    _error_line(["train", "--config", cfg, "--device", "tpu"], "'tpu' is not a torch device")
    _error_line(
        ["train", "--config", cfg, "--field-options", "activation='tanhh'"],
        "Unknown activation 'tanhh'",
    )
    _error_line(["train", "--config", cfg, "--val-fraction", "2"], "val_fraction")


def test_overflowing_data_suggest_standardisation(tmp_path: Path) -> None:
    data = np.random.default_rng(0).normal(size=(100, 2)) * 1e30
    np.save(tmp_path / "huge.npy", data)
    cfg = str(_config(tmp_path, dtype="float32"))
    args = ["train", "--config", cfg, "--data", str(tmp_path / "huge.npy"), "--no-standardize"]
    _error_line([*args, "--out-dir", str(tmp_path / "r1")], "standardise", "|x| = ")
    # beyond float32 altogether: refused while loading
    np.save(tmp_path / "huger.npy", data * 1e10)
    args[4] = str(tmp_path / "huger.npy")
    _error_line([*args, "--out-dir", str(tmp_path / "r2")], "do not fit float32")
    # standardised (the default), the same data train normally
    result = runner.invoke(app, [*args[:5], "--out-dir", str(tmp_path / "r3")])
    assert result.exit_code == 0, result.output


def test_diverging_training_is_a_floating_point_user_error(tmp_path: Path) -> None:
    np.save(tmp_path / "huge.npy", np.random.default_rng(0).normal(size=(100, 2)) * 1e30)
    config = TrainConfig(**{**TINY, "data": str(tmp_path / "huge.npy"), "standardize": False})
    trainer = Trainer(config, write=False)
    with pytest.raises(TrainingDivergedError, match=r"iteration 1 .*standardise") as info:
        trainer.step()
    assert isinstance(info.value, FloatingPointError)


def test_random_bytes_are_not_called_unsafe_pickles(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_text(dump_toml(TrainConfig(**TINY)))
    (run / "checkpoint.pt").write_bytes(os.urandom(4096))
    with pytest.raises(
        CheckpointError, match="not a flowkit training checkpoint, or it is corrupt"
    ):
        load_checkpoint(run / "checkpoint.pt")
    line = _error_line(["train", "--resume", str(run), "--iterations", "3"], "corrupt")
    assert "unsafe unpickling" not in line


def test_internal_errors_keep_their_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    import flowkit.train

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug, not a user error")

    monkeypatch.setattr(flowkit.train, "train", broken)
    result = runner.invoke(app, ["train", "--iterations", "1"])
    assert result.exit_code == 1
    assert isinstance(result.exception, RuntimeError)  # propagated: Python prints the traceback


# -- list, bench and the command line itself ----------------------------------------------------
def test_list_errors_are_one_line() -> None:
    _error_line(["list", "--kind", "integratr"], "Did you mean 'integrator'")


def test_usage_errors_are_one_line() -> None:
    _error_line(["train", "--bogus"], "No such option: --bogus", "flowkit train --help")
    _error_line(["trian"], "Did you mean 'train'?")


def test_bench_checks_its_output_before_any_measurement(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flowkit.cli.bench_cmd as bench_cmd

    monkeypatch.chdir(tmp_path)  # the default --out, bench-out/, must not hold a report

    def must_not_run(config: Any) -> None:
        raise AssertionError("measurements started before --out was checked")

    _error_line(["bench", "--suites", "accurcy"], "accurcy")  # fails in planning, before work
    monkeypatch.setattr(bench_cmd, "run_bench", must_not_run)
    existing = tmp_path / "report.md"
    existing.write_text("an earlier report")
    _error_line(["bench", "--quick", "--out", str(existing)], "is a file", "folder")
    _error_line(["bench", "--quick", "--out", str(existing / "sub")], "is a file")
    assert existing.read_text() == "an earlier report"
    _error_line(["bench", "--dtype", "float16"], "--dtype must be float32 or float64")


def test_an_earlier_report_is_never_replaced_without_overwrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flowkit.bench.api as bench_api
    import flowkit.cli.bench_cmd as bench_cmd
    from flowkit.bench.api import BenchConfig, run_bench
    from flowkit.bench.report.files import ReportOutputError

    out = tmp_path / "bench-out"
    out.mkdir()
    (out / "report.json").write_text('{"earlier": true}')

    def must_not_run(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("measurements started before --out was checked")

    monkeypatch.setattr(bench_api, "run_tasks", must_not_run)
    _error_line(["bench", "--quick", "--out", str(out)], "already holds a report", "--overwrite")
    with pytest.raises(ReportOutputError, match="already holds a report"):
        run_bench(BenchConfig(quick=True, out=out, progress=False, show=False))
    assert (out / "report.json").read_text() == '{"earlier": true}'

    ran: list[bool] = []
    monkeypatch.setattr(bench_cmd, "run_bench", lambda config: ran.append(config.overwrite))
    result = runner.invoke(app, ["bench", "--quick", "--out", str(out), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert ran == [True]


def test_write_report_refuses_a_file_clearly(tmp_path: Path) -> None:
    from flowkit.bench.report.files import ReportOutputError, write_report

    target = tmp_path / "out"
    target.write_text("x")
    with pytest.raises(ReportOutputError, match="is a file"):
        write_report({}, target)
