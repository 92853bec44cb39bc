"""benchmarks/odeint_vs_torchdiffeq.py: runs the same calls under both, never overwrites."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "odeint_vs_torchdiffeq.py"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("flowkit_benchmark_odeint_vs_tdq", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


@pytest.fixture
def float32_default() -> None:
    torch.set_default_dtype(torch.float32)  # the suite's fixture restores its default


@pytest.mark.usefixtures("float32_default")
def test_cases_run_under_both_with_the_same_work() -> None:
    records = _load_script().run_cases(repeats=1, sizes={"small": 1})
    by_case = {r["case"]: r for r in records}
    assert len(records) == len(by_case) == 7
    rk4 = by_case["rk4 fixed grid h=0.05"]
    assert rk4["torchdiffeq_nfe"] == rk4["flowkit_nfe"] == 80  # 20 steps of 4 stages
    for record in records:
        assert record["torchdiffeq_s"] > 0 and record["flowkit_s"] > 0
        assert record["ratio_of_medians"] == pytest.approx(
            record["flowkit_s"] / record["torchdiffeq_s"]
        )
        # Same problem, same tolerance: the final states agree to the tolerance (float32).
        assert record["max_abs_state_difference"] < 1e-4, record["case"]


def test_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "result.json"
    out.write_text(json.dumps({"mine": 1}))
    assert _load_script().main(["--quick", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pass --overwrite" in err
    assert json.loads(out.read_text()) == {"mine": 1}


def test_repeats_must_be_positive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "result.json"
    assert _load_script().main(["--repeats", "0", "--out", str(out)]) == 2
    assert "--repeats must be at least 1" in capsys.readouterr().err
    assert not out.exists()
