"""Is flowkit's native Runge-Kutta solver as fast as torchdiffeq on a neural field?

Question: for the same method and tolerance on a neural vector field (MLP 2-64-64-64-2,
tanh, time as an extra input), does the native integrator (``flowkit.odeint``) use the
same number of function evaluations as ``torchdiffeq.odeint`` (within 5%), with a time
per evaluation no worse (ratio <= 1.0), and how close is a plain solve to its floor of
``nfe x one field evaluation`` (goal <= 1.15; torchdiffeq's ratio is printed beside
flowkit's)?

The field is a "trained toy field": before timing, the MLP is fitted for a few hundred
Adam steps to a smooth 2-D target field (a rotation plus a contraction towards a ring,
modulated in time), so the solver sees a non-trivial, non-flat field. Solves run under
``torch.no_grad`` (a plain forward solve), float32, one thread, from t=0 to t=1.

Configurations (method x batch x implementation) are interleaved in each repetition;
we report medians and ratios and write JSON to ``bench-out/integrators.json``.

Run: ``python benchmarks/integrators.py [--quick] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
import torchdiffeq
from torch import Tensor, nn

import flowkit
from flowkit.bench.timing import stopwatch

__all__ = ["ToyField", "main"]


class ToyField(nn.Module):
    """MLP 2-64-64-64-2 with tanh; time enters as a third input."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(3, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(),
            nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 2),
        )  # fmt: skip

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        return self.net(torch.cat([x, t.expand(x.shape[0], 1)], dim=1))


def _target(t: Tensor, x: Tensor) -> Tensor:
    r = x.norm(dim=1, keepdim=True)
    rot = torch.stack([-x[:, 1], x[:, 0]], dim=1)
    return (1.5 + torch.sin(3 * t)) * rot + (1.0 - r) * x


def train_toy_field(steps: int, seed: int = 0) -> ToyField:
    """Fit the MLP to :func:`_target` on random points and times."""
    torch.manual_seed(seed)
    field = ToyField()
    opt = torch.optim.Adam(field.parameters(), lr=3e-3)
    for _ in range(steps):
        x = torch.randn(256, 2) * 1.5
        t = torch.rand(256, 1)
        pred = field.net(torch.cat([x, t], dim=1))
        loss = (pred - _target(t, x)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return field


def _time_field(field: ToyField, x: Tensor, reps: int) -> float:
    t = torch.tensor(0.5)
    with torch.no_grad():
        for _ in range(5):
            field(t, x)
        samples = []
        for _ in range(reps):
            with stopwatch(x, field) as clock:
                field(t, x)
            samples.append(clock.seconds)
    return statistics.median(samples)


def _solve(impl: str, method: str, field: ToyField, x: Tensor) -> tuple[float, int]:
    t = torch.tensor([0.0, 1.0])
    counter = [0]

    def func(tt: Tensor, y: Tensor) -> Tensor:
        counter[0] += 1
        return field(tt, y)

    kwargs: dict = (
        {"rtol": 1e-5, "atol": 1e-5} if method == "dopri5" else {"options": {"step_size": 0.05}}
    )
    with torch.no_grad(), stopwatch(x, field) as clock:
        if impl == "flowkit":
            flowkit.odeint(func, x, t, method=method, **kwargs)
        else:
            torchdiffeq.odeint(func, x, t, method=method, **kwargs)
    return clock.seconds, counter[0]


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; returns (and writes) the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--out", default="bench-out", help="output directory")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    reps = 5 if args.quick else 15
    field = train_toy_field(150 if args.quick else 400)
    flowkit.get_registry()  # build the registry outside the timed region
    methods = ["dopri5", "rk4"]
    batches = [512, 4096]
    impls = ["flowkit", "torchdiffeq"]
    data = {b: torch.randn(b, 2, generator=torch.Generator().manual_seed(b)) for b in batches}
    raw: dict = {
        (m, b, i): {"wall": [], "nfe": []} for m in methods for b in batches for i in impls
    }
    eval_time: dict = {b: [] for b in batches}
    for rep in range(reps):
        for b in batches:
            eval_time[b].append(_time_field(field, data[b], 20))
            for m in methods:
                order = impls if rep % 2 == 0 else impls[::-1]
                for impl in order:
                    wall, nfe = _solve(impl, m, field, data[b])
                    raw[(m, b, impl)]["wall"].append(wall)
                    raw[(m, b, impl)]["nfe"].append(nfe)
    results = []
    for m in methods:
        for b in batches:
            t_eval = statistics.median(eval_time[b])
            row: dict = {"method": m, "batch": b, "field_eval_s": t_eval}
            for impl in impls:
                wall = statistics.median(raw[(m, b, impl)]["wall"])
                nfe = int(statistics.median(raw[(m, b, impl)]["nfe"]))
                row[impl] = {
                    "wall_s": wall,
                    "nfe": nfe,
                    "time_per_eval_s": wall / nfe,
                    "ratio_vs_nfe_x_eval": wall / (nfe * t_eval),
                }
            row["time_per_eval_ratio_flowkit_over_torchdiffeq"] = (
                row["flowkit"]["time_per_eval_s"] / row["torchdiffeq"]["time_per_eval_s"]
            )
            row["nfe_ratio_flowkit_over_torchdiffeq"] = (
                row["flowkit"]["nfe"] / row["torchdiffeq"]["nfe"]
            )
            results.append(row)
    out = {
        "question": __doc__.splitlines()[0],
        "quick": args.quick,
        "repetitions": reps,
        "threads": 1,
        "torch": torch.__version__,
        "results": results,
    }
    path = Path(args.out)
    path.mkdir(parents=True, exist_ok=True)
    (path / "integrators.json").write_text(json.dumps(out, indent=2))
    header = f"{'method':7} {'batch':>5} {'nfe fk/td':>10} {'t/eval fk/td':>12} "
    print(header + f"{'fk solve/(nfe*eval)':>20} {'td solve/(nfe*eval)':>20}")
    for r in results:
        print(
            f"{r['method']:7} {r['batch']:>5} "
            f"{r['flowkit']['nfe']:>4}/{r['torchdiffeq']['nfe']:<5} "
            f"{r['time_per_eval_ratio_flowkit_over_torchdiffeq']:>12.3f} "
            f"{r['flowkit']['ratio_vs_nfe_x_eval']:>20.3f} "
            f"{r['torchdiffeq']['ratio_vs_nfe_x_eval']:>20.3f}"
        )
    print(f"wrote {path / 'integrators.json'}")
    return out


if __name__ == "__main__":
    main()
