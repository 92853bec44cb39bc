"""``flowkit.sde.compare_samplers`` and the ``benchmarks/sde_sampling.py`` front end."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from flowkit.metrics import energy_distance
from flowkit.registry import get_registry
from flowkit.sde import GaussianScore, SamplerSetting, compare_samplers, sample

MU = torch.tensor([1.0, -1.0], dtype=torch.float64)
COV = torch.tensor([[0.5, 0.1], [0.1, 0.3]], dtype=torch.float64)


def _score() -> GaussianScore:
    return GaussianScore(MU, COV, get_registry().create("sde", "vp", start_time=0.0))


def test_each_setting_is_scored_with_its_own_samples_and_evaluations() -> None:
    score = _score()
    held_out = torch.distributions.MultivariateNormal(MU, COV).sample((300,))
    settings = [
        SamplerSetting("pc 20+20", {"sampler": "pc", "n_steps": 20}),
        SamplerSetting("em 30", {"sampler": "reverse_sde", "n_steps": 30}),
    ]
    rows = compare_samplers(score, held_out, settings=settings, repeats=2, seed=5)
    assert [row.label for row in rows] == ["pc 20+20", "em 30"]
    assert [row.nfe for row in rows] == [40.0, 30.0]
    assert all(len(row.energy_distances) == 2 and row.seconds > 0 for row in rows)
    # Round r uses the seed seed + r: the same samples as sample() with that seed.
    x, _ = sample(score, 300, sampler="pc", n_steps=20, generator=torch.Generator().manual_seed(6))
    expected = float(energy_distance(x, held_out, unbiased=True))
    assert rows[0].energy_distances[1] == pytest.approx(expected, rel=1e-12)
    # A sampler of the wrong distribution scores worse than the right one.
    far = compare_samplers(score, held_out + 1.0, settings=settings[1:2], repeats=1)
    assert far[0].energy_distance > 10 * abs(rows[1].energy_distance) + 0.1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"settings": []}, "settings is empty"),
        ({"repeats": 0}, "repeats must be a positive integer"),
        ({"n_samples": 0}, "n_samples must be a positive integer"),
    ],
)
def test_bad_arguments_raise(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        compare_samplers(_score(), torch.zeros(4, 2, dtype=torch.float64), **kwargs)


def test_the_benchmark_refuses_to_overwrite_its_results(tmp_path: Path) -> None:
    path = Path(__file__).parents[1] / "benchmarks" / "sde_sampling.py"
    spec = importlib.util.spec_from_file_location("sde_sampling_bench", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "results.json"
    out.write_text("{}")
    with pytest.raises(SystemExit):
        bench.main(["--quick", "--out", str(out)])
    assert out.read_text() == "{}"
