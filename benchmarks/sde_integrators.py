"""What orders does each SDE integrator reach, and what does it cost per step?

Questions:

1. The strong and weak orders of every registered ``sde_integrator`` on
   Ornstein-Uhlenbeck (additive noise, forward and in reverse time) and
   geometric Brownian motion (multiplicative noise), against their declared
   capabilities: the measurement of :mod:`flowkit.testing.sde_order` (1000
   paths, 8 to 64 steps, exact solutions on the same Brownian path, slopes
   with standard errors), the same as the test suite's.
2. The time of one reverse-time sampling run per integrator, as a ratio to the
   native ``euler_maruyama`` in the same run: the reverse VP SDE with the exact
   score of 2-d Gaussian data (:class:`flowkit.sde.GaussianScore`), 1000
   samples, 100 steps, each integrator drawing its own noise from a seeded
   generator; rounds interleaved (the order rotates), medians reported.

Run: ``python benchmarks/sde_integrators.py`` (``--quick`` for fewer rounds);
results go to ``bench-out/sde_integrators.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from flowkit.bench.timing import stopwatch
from flowkit.kinds import capabilities_of
from flowkit.registry import Registry, build_registry
from flowkit.sde import GaussianScore
from flowkit.testing.sde_order import (
    geometric_brownian_motion,
    measure_sde_order,
    ornstein_uhlenbeck,
)

__all__ = ["main", "measure_orders", "time_reverse_sampling"]

CONFIGURATIONS = {
    "gbm": (geometric_brownian_motion(), 0.0, 1.0),
    "ou": (ornstein_uhlenbeck(), 0.0, 1.0),
    "ou reverse time": (ornstein_uhlenbeck(), 1.0, 0.0),
}


def measure_orders(registry: Registry) -> list[dict[str, Any]]:
    """One row per integrator, configuration and error kind."""
    rows = []
    for name in registry.names("sde_integrator"):
        caps = capabilities_of(registry.get("sde_integrator", name).factory, "sde_integrator")
        for configuration, (problem, t0, t1) in CONFIGURATIONS.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # GBM, Stratonovich reading
                measured = measure_sde_order(
                    lambda n, name=name: registry.create("sde_integrator", name, n_steps=n),
                    problem,
                    t0=t0,
                    t1=t1,
                    reading=caps["sde_type"],
                )
            for kind, m in measured.items():
                rows.append(
                    {
                        "integrator": name,
                        "configuration": configuration,
                        "error": kind,
                        "slope": m.slope,
                        "slope_standard_error": m.slope_standard_error,
                        "resolved": m.resolved,
                        "steps": list(m.steps),
                        "errors": list(m.errors),
                        "declared": {k: caps[k] for k in caps if k != "sde_type"},
                        "sde_type": caps["sde_type"],
                    }
                )
    return rows


def _reverse_run(registry: Registry, name: str, start: Tensor, score: GaussianScore) -> None:
    sde = score.sde

    def drift(s: Tensor, x: Tensor) -> Tensor:
        return sde.reverse_drift(x, s, score.score(x, s))

    def diffusion(s: Tensor, x: Tensor) -> Tensor:
        return sde.diffusion(s)

    integrator = registry.create("sde_integrator", name, n_steps=100)
    times = torch.tensor([sde.end_time, 0.0], dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    integrator.integrate(drift, diffusion, start, times, generator=generator)


def time_reverse_sampling(registry: Registry, rounds: int) -> list[dict[str, Any]]:
    """Median seconds per reverse-time run and the ratio to ``euler_maruyama``."""
    sde = registry.create("sde", "vp", start_time=0.0)
    mean = torch.tensor([0.5, -1.0], dtype=torch.float64)
    covariance = torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=torch.float64)
    score = GaussianScore(mean, covariance, sde)
    start = torch.randn(1000, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    names = registry.names("sde_integrator")
    for name in names:  # warm-up
        _reverse_run(registry, name, start, score)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            with stopwatch(start) as clock:
                _reverse_run(registry, name, start, score)
            times[name].append(clock.seconds)
    medians = {name: statistics.median(v) for name, v in times.items()}
    return [
        {
            "integrator": name,
            "median_s": medians[name],
            "ratio_to_euler_maruyama": medians[name] / medians["euler_maruyama"],
            "times_s": times[name],
        }
        for name in names
    ]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run both questions, print tables and write the JSON record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 timing rounds instead of 9")
    parser.add_argument("--out", default="bench-out/sde_integrators.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    registry = build_registry(autoload=False, blocked=())
    record = {
        "benchmark": "sde_integrators",
        "question": __doc__.splitlines()[0],
        "config": {
            "threads": 1,
            "torch": torch.__version__,
            "machine": platform.machine(),
            "rounds": 3 if args.quick else 9,
        },
        "orders": measure_orders(registry),
        "timing": time_reverse_sampling(registry, 3 if args.quick else 9),
    }
    print(f"{'integrator':<26}{'configuration':<17}{'error':<20}{'slope':>14}  declared")
    for row in record["orders"]:
        slope = f"{row['slope']:.2f}+-{row['slope_standard_error']:.2f}"
        mark = "" if row["resolved"] else " (unresolved)"
        print(
            f"{row['integrator']:<26}{row['configuration']:<17}{row['error']:<20}{slope:>14}"
            f"  {row['declared']}{mark}"
        )
    print(f"\n{'integrator':<26}{'median s':>10}{'ratio to EM':>13}")
    for row in record["timing"]:
        print(
            f"{row['integrator']:<26}{row['median_s']:>10.3f}{row['ratio_to_euler_maruyama']:>13.2f}"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2))
    print(f"\nwrote {out}")
    return record


if __name__ == "__main__":
    main()
