"""Smoke test of benchmarks/objectives.py: --quick runs end to end, fast, and never overwrites."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "objectives.py"


def _load_script() -> ModuleType:
    """benchmarks/objectives.py as a module (its sibling modules on the path while loading)."""
    spec = importlib.util.spec_from_file_location("flowkit_benchmark_objectives", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
def test_quick_run_reports_every_contestant_and_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "objectives.json"
    start = time.perf_counter()
    done = _run("--quick", "--out", str(out), cwd=tmp_path)
    seconds = time.perf_counter() - start
    assert done.returncode == 0, done.stderr
    assert seconds < 30, f"--quick took {seconds:.1f} s"
    report = json.loads(out.read_text())
    names = {"maximum_likelihood", "flow_matching", "flow_matching_ot", "fm_then_ml", "reflow"}
    assert set(report["curves"]) == names
    for name in names:
        curve = report["curves"][name]
        assert curve[0][0] == 0.0 and curve[-1][0] >= report["budget_s"]
        assert all(math.isfinite(nll) for _, nll in curve)
        quality = report["sample_quality"][name]
        assert quality["euler_4"]["nfe"] == 4 and quality["midpoint_4"]["nfe"] == 8
        assert quality["dopri5_1e-5"]["nfe"] >= quality["dopri5_1e-3"]["nfe"] > 0
        assert quality["dopri5_1e-5"]["sliced_w2"] > 0
    assert report["phases_reached"]["reflow"] == report["phases_reached"]["fm_then_ml"] == 2
    assert report["median_train_nfe_per_iteration"]["flow_matching"] == 1
    assert report["median_train_nfe_per_iteration"]["maximum_likelihood"] > 1
    assert "true_density_nll_on_test" in report and "seconds_to_target" in report
    assert "contestant" in done.stdout and "held-out floor" in done.stdout

    before = out.read_text()
    again = _run("--quick", "--out", str(out), cwd=tmp_path)
    assert again.returncode == 2
    assert "exists; pass --overwrite" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    assert out.read_text() == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--contestants", "maximum_likelihood,gradient_descent"], "unknown contestant"),
        (["--switch", "1.5"], "--switch must be between 0 and 1"),
        (["--budget", "0"], "must be positive"),
    ],
)
def test_bad_options_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert _load_script().main([*args, "--out", str(tmp_path / "o.json")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.json").exists()
