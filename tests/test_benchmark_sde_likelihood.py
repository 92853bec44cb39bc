"""benchmarks/sde_likelihood.py: the measurement on a tiny field, and it never overwrites."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import torch

from flowkit import CNF

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "sde_likelihood.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("flowkit_benchmark_sde_likelihood", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_refuses_to_overwrite_without_the_flag(bench, tmp_path: Path, capsys) -> None:
    out = tmp_path / "result.json"
    out.write_text("mine")
    assert bench.main(["--out", str(out)]) == 2
    assert out.read_text() == "mine"
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pass --overwrite" in err


def test_unknown_integrator_is_one_line(bench, tmp_path: Path, capsys) -> None:
    assert bench.main(["--integrator", "dopri6", "--out", str(tmp_path / "r.json")]) == 2
    assert "unknown --integrator 'dopri6'" in capsys.readouterr().err


def test_measure_compares_hutchinson_with_the_exact_trace(bench, registry) -> None:
    torch.manual_seed(0)
    model = CNF(
        "probability_flow",
        dim=3,
        field_options={"score_field_options": {"hidden": [8]}, "parametrisation": "score"},
        registry=registry,
    )
    points = torch.randn(6, 3)
    result = bench.measure(
        model.field,
        points,
        integrator="rk4",
        integrator_options={"n_steps": 1},
        reps=3,
        seed=0,
        registry=registry,
    )
    assert len(result["times_s"]["exact"]) == len(result["times_s"]["hutchinson"]) == 3
    # the exact trace is deterministic: every repetition gives the same NLL
    assert result["exact_nll_spread"] < 1e-9
    # Hutchinson draws fresh probes each repetition: the estimates differ
    assert len(set(result["nll_per_rep"]["hutchinson"])) == 3
    assert result["hutchinson_std_error"] > 0
    ratio = result["median_s"]["hutchinson"] / result["median_s"]["exact"]
    assert result["time_ratio_hutchinson_over_exact"] == pytest.approx(ratio)
