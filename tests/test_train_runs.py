"""Runs are never lost: refused run directories, --overwrite, the run lock, stale files.

Each test reproduces a case of the hardening issue that lost a run without a word.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flowkit.cli.app import app, attach_subcommands
from flowkit.train import RunDirError, RunLockedError, TrainConfig, dump_toml, train
from flowkit.train.rundir import LOCK_NAME, RunLock

TINY: dict[str, Any] = {
    "n_train": 128,
    "n_val": 32,
    "n_test": 32,
    "batch_size": 32,
    "iterations": 2,
    "val_every": 2,
    "checkpoint_every": 1,
    "eval_batch_size": 64,
    "field_options": {"hidden": [8]},
    "integrator": "rk4",
    "integrator_options": {"n_steps": 2},
    "eval_integrator": "rk4",
    "eval_integrator_options": {"n_steps": 2},
    "progress": False,
    "plots": False,
    "dtype": "float64",
    "device": "cpu",
}

attach_subcommands()
runner = CliRunner()


def _config_file(tmp_path: Path, **changes: Any) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(dump_toml(TrainConfig(**{**TINY, **changes})))
    return path


def _one_line_error(result: Any, *needles: str) -> str:
    """The single line a user error prints (exit status 2, no traceback)."""
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: ") and "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _snapshot(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run_dir.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    train(TrainConfig(**TINY), run_dir=run_dir)
    return run_dir


def _copy_run(source: Path, target: Path) -> Path:
    target.mkdir(parents=True)
    for path in source.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


# -- a new run never replaces an old one ------------------------------------------------------
def test_new_run_refuses_a_directory_holding_a_run(tmp_path: Path, finished_run: Path) -> None:
    run_dir = _copy_run(finished_run, tmp_path / "run")
    before = _snapshot(run_dir)
    config = _config_file(tmp_path, iterations=1)
    result = runner.invoke(app, ["train", "--config", str(config), "--out-dir", str(run_dir)])
    _one_line_error(result, "already holds a run", "--resume", "--overwrite")
    assert _snapshot(run_dir) == before  # nothing touched
    with pytest.raises(RunDirError, match="already holds a run"):
        train(TrainConfig(**TINY), run_dir=run_dir)
    assert _snapshot(run_dir) == before


def test_overwrite_replaces_the_run_and_keeps_other_files(
    tmp_path: Path, finished_run: Path
) -> None:
    run_dir = _copy_run(finished_run, tmp_path / "run")
    (run_dir / "notes.txt").write_text("mine")
    (run_dir / "density.png").write_bytes(b"old plot")
    config = _config_file(tmp_path, iterations=1, checkpoint_every=5)
    args = ["train", "--config", str(config), "--out-dir", str(run_dir), "--overwrite"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (run_dir / "notes.txt").read_text() == "mine"
    assert not (run_dir / "density.png").exists()  # the old run's plot went with it
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    assert len(rows) == 2  # header and the new run's single iteration
    result = runner.invoke(
        app, ["train", "--resume", str(run_dir), "--overwrite", "--iterations", "3"]
    )
    _one_line_error(result, "--resume", "--overwrite")


def test_a_directory_with_foreign_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "thesis.tex").write_text("precious")
    config = _config_file(tmp_path)
    result = runner.invoke(
        app, ["train", "--config", str(config), "--out-dir", str(tmp_path / "out")]
    )
    _one_line_error(result, "is not empty", "thesis.tex")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["thesis.tex"]


def test_a_saved_config_never_targets_its_old_run(
    tmp_path: Path, finished_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = _copy_run(finished_run, tmp_path / "run")
    before = _snapshot(run_dir)
    saved = (run_dir / "config.toml").read_text()
    assert "out_dir" not in saved
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["train", "--config", str(run_dir / "config.toml")])
    assert result.exit_code == 0, result.output
    (new_run,) = (tmp_path / "runs").iterdir()  # a new runs/<timestamp>
    assert (new_run / "checkpoint.pt").exists()
    assert _snapshot(run_dir) == before
    # a configuration written by an older flowkit still names its run: refused, not overwritten
    legacy = tmp_path / "legacy.toml"
    legacy.write_text(saved.replace("[output]", f"[output]\nout_dir = {str(run_dir)!r}"))
    result = runner.invoke(app, ["train", "--config", str(legacy)])
    _one_line_error(result, "already holds a run")
    assert _snapshot(run_dir) == before


# -- one writer per run directory -------------------------------------------------------------
def test_lock_refuses_a_second_writer(tmp_path: Path, finished_run: Path) -> None:
    run_dir = _copy_run(finished_run, tmp_path / "run")
    with RunLock(run_dir):
        assert (run_dir / LOCK_NAME).read_text().split()[0] == str(os.getpid())
        result = runner.invoke(app, ["train", "--resume", str(run_dir), "--iterations", "3"])
        _one_line_error(result, "in use by another flowkit run", f"PID {os.getpid()}")
        with pytest.raises(RunLockedError):
            RunLock(run_dir).acquire()
    assert not (run_dir / LOCK_NAME).exists()  # released
    result = runner.invoke(app, ["train", "--resume", str(run_dir), "--iterations", "3"])
    assert result.exit_code == 0, result.output
    assert not (run_dir / LOCK_NAME).exists()


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_stale_lock_is_taken_over_saying_so(tmp_path: Path, finished_run: Path) -> None:
    import socket

    run_dir = _copy_run(finished_run, tmp_path / "run")
    pid = _dead_pid()
    (run_dir / LOCK_NAME).write_text(f"{pid}\n{socket.gethostname()}\n")
    notices: list[str] = []
    config = TrainConfig(**{**TINY, "iterations": 3})
    result = train(config, run_dir=run_dir, resume=True, notify=notices.append)
    assert result.iterations == 3
    assert len(notices) == 1 and f"process {pid}, which is no longer running" in notices[0]
    assert not (run_dir / LOCK_NAME).exists()
    # a lock held on another host cannot be checked: refused, naming the file to delete
    (run_dir / LOCK_NAME).write_text(f"{pid}\nsome-other-host\n")
    with pytest.raises(RunLockedError, match=r"some-other-host.*delete"):
        train(config, run_dir=run_dir, resume=True)


def test_two_processes_on_one_out_dir_keep_one_intact_run(tmp_path: Path) -> None:
    """The issue's case: both exited 0 and interleaved metrics.csv; now the second is refused."""
    config = _config_file(tmp_path, iterations=100_000, time_budget=1.0, checkpoint_every=10_000)
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "flowkit", "train", "--config", str(config)]
    command += ["--out-dir", str(run_dir)]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        second = subprocess.run(command, capture_output=True, text=True, timeout=300)
    finally:
        out, err = first.communicate(timeout=300)
    results = [(first.returncode, err), (second.returncode, second.stderr)]
    assert sorted(code for code, _ in results) == [0, 2], (out, err, second.stderr)
    (loser,) = [stderr for code, stderr in results if code == 2]
    assert "Traceback" not in loser and len(loser.strip().splitlines()) == 1, loser
    assert "in use by another flowkit run" in loser or "already holds a run" in loser
    lines = (run_dir / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    iterations = [int(line.split(",")[0]) for line in lines[1:]]
    assert header[0] == "iteration" and iterations == list(range(1, len(iterations) + 1))
    assert not (run_dir / LOCK_NAME).exists()


# -- stale temporaries and unwritable places --------------------------------------------------
def test_resume_removes_orphan_checkpoint_temporaries(tmp_path: Path, finished_run: Path) -> None:
    run_dir = _copy_run(finished_run, tmp_path / "run")
    orphan = run_dir / ".checkpoint.pt.k1ll3d.tmp"  # left by a kill inside save_checkpoint
    orphan.write_bytes(b"half a checkpoint")
    (run_dir / "keep.tmp").write_text("not ours")
    train(TrainConfig(**{**TINY, "iterations": 3}), run_dir=run_dir, resume=True)
    assert not orphan.exists()
    assert (run_dir / "keep.tmp").exists()


def test_unusable_out_dirs_are_one_line_errors(tmp_path: Path) -> None:
    config = _config_file(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for out in (blocker, blocker / "run"):
        result = runner.invoke(app, ["train", "--config", str(config), "--out-dir", str(out)])
        _one_line_error(result, "is a file")
    assert blocker.read_text() == "x"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write anywhere")
def test_read_only_out_dir_is_a_one_line_error(tmp_path: Path) -> None:
    config = _config_file(tmp_path)
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        result = runner.invoke(
            app, ["train", "--config", str(config), "--out-dir", str(locked / "run")]
        )
    finally:
        locked.chmod(0o700)
    _one_line_error(result, "permission denied")


def test_a_failed_start_leaves_no_directory(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "run"
    with pytest.raises(RuntimeError, match="boom"):
        with RunLock(out):
            raise RuntimeError("boom")
    assert not (tmp_path / "deep").exists()


def test_a_default_run_dir_taken_meanwhile_is_not_shared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs started in the same second get the same runs/<timestamp>: the second moves on."""
    import flowkit.train.run as run_module

    monkeypatch.chdir(tmp_path)
    taken = Path("runs") / "20260101-000000"
    names = iter([taken, Path("runs") / "20260101-000000-1"])
    monkeypatch.setattr(run_module, "default_run_dir", lambda: next(names))
    with RunLock(taken):  # the other run has just claimed it
        result = train(TrainConfig(**{**TINY, "iterations": 1}))
        assert [p.name for p in taken.iterdir()] == [LOCK_NAME]
    assert Path(result.run_dir) == Path("runs") / "20260101-000000-1"
    with pytest.raises(ValueError, match="run directory"):
        train(TrainConfig(**TINY), resume=True)
