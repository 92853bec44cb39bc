"""benchmarks/objectives.py: --quick runs end to end (unconditional and --conditional), fast,
and never overwrites; the true conditional 8gaussians density it compares against is right."""

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
import torch

from flowkit.data import load_dataset, sample_toy

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPT = BENCHMARKS / "objectives.py"


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


def _load_conditional() -> ModuleType:
    """benchmarks/objectives_conditional.py (its sibling modules on the path while loading)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(
            "flowkit_benchmark_objectives_conditional", BENCHMARKS / "objectives_conditional.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
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
    names = {
        "maximum_likelihood",
        "flow_matching",
        "flow_matching_ot",
        "fm_then_ml",
        "reflow",
        "score_matching",
    }
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
    score = report["sample_quality"]["score_matching"]  # also reverse SDE and PC samples
    assert score["reverse_sde"]["nfe"] == 100 and score["pc"]["nfe"] == 20  # --quick: 100 steps
    assert set(report["score_matching_goal"]) >= {"nll_gap_nats", "samples_goal_met"}
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
        (["--conditional", "--contestants", "reflow"], "unknown contestant(s) with --conditional"),
        (["--conditional", "--dataset", "moons"], "--conditional measures class-conditional"),
    ],
)
def test_bad_options_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert _load_script().main([*args, "--out", str(tmp_path / "o.json")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.json").exists()


SIGMA = 0.5 / math.sqrt(2.0)


def _true_centres() -> torch.Tensor:
    angles = torch.arange(8, dtype=torch.float64) * (math.pi / 4)
    return (4.0 / math.sqrt(2.0)) * torch.stack([angles.cos(), angles.sin()], dim=1)


def test_true_conditional_density_is_the_components_gaussian() -> None:
    cond = _load_conditional()
    x = 3.0 * torch.randn(64, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    labels = torch.arange(64) % 8
    got = cond.true_conditional_8gaussians_log_prob(x, labels)
    normal = torch.distributions.MultivariateNormal(
        _true_centres()[labels], SIGMA**2 * torch.eye(2, dtype=torch.float64)
    )
    torch.testing.assert_close(got, normal.log_prob(x))


def test_true_conditional_mixes_into_the_unconditional_density() -> None:
    # p(x) = sum_k p(x | k) / 8: the unconditional helper of training_setups, exactly.
    cond = _load_conditional()
    x = sample_toy("8gaussians", 500, seed=3, dtype=torch.float64)
    per_class = torch.stack(
        [cond.true_conditional_8gaussians_log_prob(x, torch.full((500,), k)) for k in range(8)]
    )
    mixture_nll = float(-(torch.logsumexp(per_class, 0) - math.log(8)).mean())
    training_setups = sys.modules["training_setups"]
    assert mixture_nll == pytest.approx(training_setups.true_8gaussians_nll(x), abs=1e-10)


def test_true_conditional_nll_is_the_gaussian_entropy_in_expectation() -> None:
    # Monte Carlo on the data generator itself (points with their own labels): the mean
    # NLL is the entropy 1 + log(2 pi sigma^2) of a 2-D Gaussian (standard error ~0.003).
    cond = _load_conditional()
    x, labels = sample_toy("8gaussians", 100_000, seed=4, dtype=torch.float64, labels=True)
    nll = float(-cond.true_conditional_8gaussians_log_prob(x, labels).mean())
    assert nll == pytest.approx(1.0 + math.log(2 * math.pi * SIGMA**2), abs=0.015)


def test_true_conditional_density_accounts_for_standardisation() -> None:
    # model = (data - mean) / std: a Gaussian with shifted centre and scaled deviation,
    # so log p_model = log p_data + sum(log std).
    cond = _load_conditional()
    mean = torch.tensor([0.3, -1.0], dtype=torch.float64)
    std = torch.tensor([2.0, 0.5], dtype=torch.float64)
    z = torch.randn(40, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    labels = torch.arange(40) % 8
    got = cond.true_conditional_8gaussians_log_prob(z, labels, mean=mean, std=std)
    normal = torch.distributions.Normal((_true_centres()[labels] - mean) / std, SIGMA / std)
    torch.testing.assert_close(got, normal.log_prob(z).sum(-1))


def test_true_conditional_density_refuses_bad_labels() -> None:
    cond = _load_conditional()
    with pytest.raises(ValueError, match=r"labels lie in \[0, 8\)"):
        cond.true_conditional_8gaussians_log_prob(torch.zeros(2, 2), torch.tensor([0, 8]))
    with pytest.raises(ValueError, match="expected points"):
        cond.true_conditional_8gaussians_log_prob(torch.zeros(2, 2), torch.tensor([0]))


def test_conditional_evaluator_uses_the_test_labels_as_context() -> None:
    cond = _load_conditional()
    from flowkit.registry import get_registry

    torch.manual_seed(0)
    field = get_registry().create("vector_field", "mlp", dim=2, hidden=[8], context_dim=8)
    dtype = next(field.parameters()).dtype
    x, labels = sample_toy("8gaussians", 50, seed=6, labels=True, dtype=dtype)
    right = cond.ConditionalEvaluator(x, labels, 8, 0.5)(field)
    shifted = cond.ConditionalEvaluator(x, (labels + 4) % 8, 8, 0.5)(field)
    assert math.isfinite(right) and abs(right - shifted) > 1e-4


@pytest.mark.slow
def test_quick_conditional_run_compares_with_the_true_conditional(tmp_path: Path) -> None:
    out = tmp_path / "conditional.json"
    start = time.perf_counter()
    done = _run("--quick", "--conditional", "--out", str(out), cwd=tmp_path)
    seconds = time.perf_counter() - start
    assert done.returncode == 0, done.stderr
    assert seconds < 30, f"--quick --conditional took {seconds:.1f} s"
    report = json.loads(out.read_text())
    assert report["conditional"] is True
    assert set(report["curves"]) == {"maximum_likelihood", "flow_matching"}
    data = load_dataset("8gaussians", n_test=report["n_test"], labels=True, dtype=torch.float32)
    assert data.test_labels is not None
    cond = _load_conditional()
    true_nll = cond.true_conditional_8gaussians_nll(data.test, data.test_labels, data)
    assert report["true_conditional_nll_on_test"] == pytest.approx(true_nll, abs=1e-12)
    for name, curve in report["curves"].items():
        assert curve[0][0] == 0.0 and curve[-1][0] >= report["budget_s"]
        assert all(math.isfinite(nll) for _, nll in curve)
        gap = report["gap_to_true_nats"][name]
        assert gap == pytest.approx(curve[-1][1] - true_nll)
        assert report["goal_met"][name] == (abs(gap) <= 0.05)
    assert report["median_train_nfe_per_iteration"]["flow_matching"] == 1
    assert "true conditional density NLL" in done.stdout
