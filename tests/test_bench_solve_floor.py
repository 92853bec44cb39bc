"""benchmarks/solve_floor.py: its bare dopri5 loop is the same method, controller and
initial step as flowkit's dopri5 (same evaluations, same solution), so the floor it
measures is the floor of the same work."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from flowkit.solve import solve

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "solve_floor.py"
_spec = importlib.util.spec_from_file_location("flowkit_benchmark_solve_floor", SCRIPT)
assert _spec is not None and _spec.loader is not None
solve_floor = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(solve_floor)


@pytest.mark.parametrize("tol", [1e-3, 1e-5, 1e-7])
def test_bare_loop_takes_flowkits_steps(tol: float) -> None:
    torch.manual_seed(0)
    matrix = torch.tensor([[-0.5, 2.0], [-2.0, -0.5]], dtype=torch.float64)

    def field(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return y @ matrix.T + torch.sin(3 * t)

    y0 = torch.randn(16, 2, dtype=torch.float64)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    with torch.no_grad():
        y1, nfe = solve_floor.bare_dopri5(field, y0, tol)
        solution = solve(
            field, y0, t, integrator="dopri5", integrator_options={"rtol": tol, "atol": tol}
        )
    assert nfe == solution.stats.nfe
    torch.testing.assert_close(y1, solution.ys[-1], rtol=1e-12, atol=1e-12)
