"""Benchmark: how many adaptive steps are wasted, and does another step control waste fewer?

Question: on the shipped trained toy field (d = 2) and on a CNF field trained
briefly on scikit-learn's digits (d = 64), how many of dopri5's steps are
rejected, how is the first step chosen, and what error does each
step-size controller reach for its function evaluations, against torchdiffeq
and torchode at the same tolerances?

Compared (dopri5 throughout, ``rtol = atol = tol``, float64, one batch solved
as one problem with one step size):

* ``flowkit integral``: flowkit with ``controller_beta=0``, the integral
  controller as torchdiffeq applies it (no shrink after an accepted step, growth
  allowed right after a rejection);
* ``flowkit PI 0.04`` / ``flowkit PI 0.08``: Hairer's PI controller
  (``controller_beta`` 0.04, his DOPRI5 value, and 0.08, Söderlind's ``pcoeff
  0.4, icoeff 0.3`` as diffrax recommends) with Hairer's safeguards;
* ``torchdiffeq``: ``torchdiffeq.odeint(method="dopri5")``;
* ``torchode integral`` / ``torchode PI``: torchode's ``Dopri5`` with its
  ``IntegralController`` and its ``PIDController(pcoeff=0.2, icoeff=0.65)``
  (Hairer's PI in torchode's parametrisation), the batch flattened into one
  problem so that all libraries take one step size (skipped when torchode is
  not installed: ``pip install torchode``, not part of the ``bench`` extra).

The same for tsit5, bosh3, dopri8 and adaptive_heun with ``--methods``
(flowkit's integral controller against its PI default only; see ``--help`` for
the settings used).

Problems: the plain field solve ``dx/dt = f(t, x)`` from data (t = 1) to base
(t = 0) and from base samples to data, and (flowkit and torchdiffeq) the CNF's
augmented solve with the exact trace. The error is the largest absolute
difference of the final state from a flowkit dopri5 solve at tolerance 1e-11.
Per problem and controller the script reports, per tolerance, NFE, accepted and
rejected steps, the first step size and the error, and in the summary the total
NFE over all tolerances and the geometric mean of the error ratio to
``flowkit integral`` (below 1: more accurate at those tolerances).

Usage:
    python benchmarks/step_control.py              # writes bench-out/step_control.json
    python benchmarks/step_control.py --quick      # a smoke run
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import math
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from flowkit.bench.assets import load_toy_field, toy_data
from flowkit.bench.peers.plain_dynamics import PlainAugmentedDynamics
from flowkit.registry import get_registry
from flowkit.solve import solve

__all__ = ["main", "run", "train_digits_field"]

DTYPE = torch.float64
FLOWKIT_BETAS = {"flowkit integral": 0.0, "flowkit PI 0.04": 0.04, "flowkit PI 0.08": 0.08}


def train_digits_field(iterations: int, seed: int) -> nn.Module:
    """An ``mlp`` field (64-64-64, tanh) trained briefly as a CNF on digits (rk4, 8 steps)."""
    from flowkit.cnf import CNF
    from flowkit.data.datasets import load_dataset

    torch.manual_seed(seed)
    data = load_dataset("digits", seed=seed).train
    registry = get_registry()
    field = registry.create("vector_field", "mlp", dim=64, hidden=(64, 64, 64), activation="tanh")
    model = CNF(field, "rk4", "analytic", "backprop", dim=64, integrator_options={"n_steps": 8})
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(iterations):
        batch = data[torch.randint(0, data.shape[0], (128,), generator=gen)]
        loss = -model.log_prob(batch).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return field.to(DTYPE)


class _Counted:
    """A right-hand side that counts its evaluations and records the first step's time."""

    def __init__(self, func: Callable[[Tensor, Any], Any]) -> None:
        self.func = func
        self.calls = 0
        self.times: list[float] = []

    def __call__(self, t: Tensor, y: Any) -> Any:
        self.calls += 1
        if len(self.times) < 3:
            self.times.append(float(t.reshape(-1)[0]))
        return self.func(t, y)


def _flowkit(func: Any, y0: Any, t: Tensor, tol: float, beta: float, method: str) -> dict[str, Any]:
    options = {"rtol": tol, "atol": tol, "controller_beta": beta}
    sol = solve(func, y0, t, integrator=method, integrator_options=options)
    ys = sol.ys if isinstance(sol.ys, tuple) else (sol.ys,)
    s = sol.stats
    return {
        "y": tuple(y[-1] for y in ys),
        "nfe": s.nfe,
        "accepted": s.n_accepted,
        "rejected": s.n_rejected,
    }


def _torchdiffeq(func: Any, y0: Any, t: Tensor, tol: float) -> dict[str, Any]:
    import torchdiffeq

    counted = _Counted(func)
    ys = torchdiffeq.odeint(counted, y0, t, rtol=tol, atol=tol, method="dopri5")
    ys = ys if isinstance(ys, tuple) else (ys,)
    # torchdiffeq evaluates f(t0), the initial-step probe, then the first step's stages
    first = abs(counted.times[2] - float(t[0])) / 0.2 if len(counted.times) > 2 else None
    return {"y": tuple(y[-1] for y in ys), "nfe": counted.calls, "first_step": first}


def _torchode(func: Any, y0: Tensor, t: Tensor, tol: float, pid: bool) -> dict[str, Any]:
    import torchode as to

    shape = y0.shape
    counted = _Counted(lambda tt, y: func(tt[0], y.view(shape)).reshape(1, -1))
    term = to.ODETerm(counted)
    if pid:
        ctrl = to.PIDController(atol=tol, rtol=tol, pcoeff=0.2, icoeff=0.65, dcoeff=0.0, term=term)
    else:
        ctrl = to.IntegralController(atol=tol, rtol=tol, term=term)
    solver = to.AutoDiffAdjoint(to.Dopri5(term=term), ctrl)
    problem = to.InitialValueProblem(y0=y0.reshape(1, -1), t_start=t[:1], t_end=t[1:])
    sol = solver.solve(problem)
    accepted = int(sol.stats["n_accepted"][0])
    return {
        "y": (sol.ys[0, -1].view(shape),),
        "nfe": int(sol.stats["n_f_evals"][0]),
        "accepted": accepted,
        "rejected": int(sol.stats["n_steps"][0]) - accepted,
    }


def _first_step(func: Any, y0: Any, t: Tensor, tol: float, beta: float, method: str) -> float:
    """flowkit's first step size, read off the time of the first step's second stage."""
    counted = _Counted(func)
    _flowkit(counted, y0, t, tol, beta, method)
    c2 = get_registry().get("integrator", method).factory.tableau.c[1]
    return abs(counted.times[2] - float(t[0])) / c2


def _problems(field_2d: nn.Module, field_64: nn.Module | None, batch: int) -> list[dict]:
    x2 = toy_data(2, batch, seed=1, dtype=DTYPE)
    z2 = torch.randn(batch, 2, generator=torch.Generator().manual_seed(2), dtype=DTYPE)
    back, fwd = torch.tensor([1.0, 0.0], dtype=DTYPE), torch.tensor([0.0, 1.0], dtype=DTYPE)
    aug2 = PlainAugmentedDynamics(field_2d, "exact")
    zeros = torch.zeros(batch, dtype=DTYPE)
    out = [
        {"name": "toy d=2, data to base", "func": field_2d, "y0": x2, "t": back},
        {"name": "toy d=2, base to data", "func": field_2d, "y0": z2, "t": fwd},
        {"name": "toy d=2, CNF log_prob (exact trace)", "func": aug2, "y0": (x2, zeros), "t": back},
    ]
    if field_64 is not None:
        from flowkit.data.datasets import load_dataset

        x64 = load_dataset("digits", seed=0, dtype=DTYPE).test[:batch]
        z64 = torch.randn(x64.shape, generator=torch.Generator().manual_seed(3), dtype=DTYPE)
        out += [
            {"name": "digits d=64, data to base", "func": field_64, "y0": x64, "t": back},
            {"name": "digits d=64, base to data", "func": field_64, "y0": z64, "t": fwd},
        ]
    return out


def _error(y: tuple[Tensor, ...], ref: tuple[Tensor, ...]) -> float:
    return max(float((a - b).abs().max()) for a, b in zip(y, ref, strict=True))


def _controllers(method: str, func: Any, y0: Any, t: Tensor, tol: float) -> dict[str, dict]:
    """Every compared controller's result for one solve (peers for dopri5 only)."""
    betas = FLOWKIT_BETAS if method == "dopri5" else dict(list(FLOWKIT_BETAS.items())[:2])
    results: dict[str, dict[str, Any]] = {}
    for name, beta in betas.items():
        results[name] = _flowkit(func, y0, t, tol, beta, method)
        results[name]["first_step"] = _first_step(func, y0, t, tol, beta, method)
    if method == "dopri5":
        results["torchdiffeq"] = _torchdiffeq(func, y0, t, tol)
        if isinstance(y0, Tensor) and importlib.util.find_spec("torchode") is not None:
            results["torchode integral"] = _torchode(func, y0, t, tol, pid=False)
            results["torchode PI"] = _torchode(func, y0, t, tol, pid=True)
    return results


def run(
    tols: list[float], batch: int, digits_iterations: int, seed: int, methods: list[str]
) -> dict[str, Any]:
    """Solve every problem with every controller at every tolerance; the JSON record."""
    field_2d = load_toy_field(2, dtype=DTYPE)
    field_64 = train_digits_field(digits_iterations, seed) if digits_iterations > 0 else None
    rows: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    for prob in _problems(field_2d, field_64, batch):
        func, y0, t = prob["func"], prob["y0"], prob["t"]
        with torch.no_grad():
            ref = _flowkit(func, y0, t, 1e-11, 0.0, "dopri5")["y"]
            for method, tol in itertools.product(methods, tols):
                for name, res in _controllers(method, func, y0, t, tol).items():
                    y = res.pop("y")
                    rows.append(
                        {"problem": prob["name"], "method": method, "controller": name}
                        | {"tol": tol, **res, "error": _error(y, ref)}
                    )
        for method in methods:
            summary += _summarise(
                [r for r in rows if (r["problem"], r["method"]) == (prob["name"], method)]
            )
    return {
        "benchmark": "step_control",
        "question": __doc__.splitlines()[0],
        "config": {
            "tolerances": tols,
            "batch": batch,
            "digits_iterations": digits_iterations,
            "seed": seed,
            "dtype": "float64",
            "torch": torch.__version__,
            "machine": platform.machine(),
        },
        "results": rows,
        "summary": summary,
    }


def _fit(rows: list[dict[str, Any]]) -> tuple[float, float]:
    """Least-squares ``log nfe = a + b log error`` over a controller's tolerances."""
    xs = [math.log(max(r["error"], 1e-300)) for r in rows]
    ys = [math.log(r["nfe"]) for r in rows]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
    return my - b * mx, b


def _summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per controller: total NFE and rejections, error ratio, NFE ratio at equal error.

    The last is the accuracy-vs-NFE comparison: each controller's NFE at the
    errors ``flowkit integral`` reached (from a log-log fit of NFE against
    error over the tolerances), over ``flowkit integral``'s NFE, geometric mean.
    """
    base = {r["tol"]: r for r in rows if r["controller"] == "flowkit integral"}
    a0, b0 = _fit(list(base.values()))
    levels = [math.log(max(r["error"], 1e-300)) for r in base.values()]
    out = []
    for name in dict.fromkeys(r["controller"] for r in rows):
        mine = [r for r in rows if r["controller"] == name]
        logs = [
            math.log(max(r["error"], 1e-300) / max(base[r["tol"]]["error"], 1e-300)) for r in mine
        ]
        a, b = _fit(mine)
        equal = [(a + b * lv) - (a0 + b0 * lv) for lv in levels]
        out.append(
            {
                "problem": mine[0]["problem"],
                "method": mine[0]["method"],
                "nfe_ratio_at_equal_error": math.exp(sum(equal) / len(equal)),
                "controller": name,
                "total_nfe": sum(r["nfe"] for r in mine),
                "total_rejected": sum(r.get("rejected", 0) or 0 for r in mine),
                "error_ratio_geomean": math.exp(sum(logs) / len(logs)),
            }
        )
    return out


def _print(record: dict[str, Any]) -> None:
    print(
        f"{'problem':<38} {'method':<13} {'controller':<18} {'tol':>7} {'nfe':>5} {'rej':>4} "
        f"{'h0':>8} error"
    )
    for r in record["results"]:
        h0 = r.get("first_step")
        print(
            f"{r['problem']:<38} {r['method']:<13} {r['controller']:<18} {r['tol']:>7.0e} "
            f"{r['nfe']:>5} "
            f"{r.get('rejected', '-')!s:>4} {'-' if h0 is None else f'{h0:.4f}':>8} "
            f"{r['error']:.3e}"
        )
    print(
        f"\n{'problem':<38} {'method':<13} {'controller':<18} {'NFE':>6} {'rej':>5} "
        f"{'err ratio':>9} NFE ratio at equal error"
    )
    for s in record["summary"]:
        print(
            f"{s['problem']:<38} {s['method']:<13} {s['controller']:<18} {s['total_nfe']:>6} "
            f"{s['total_rejected']:>5} {s['error_ratio_geomean']:>9.3f} "
            f"{s['nfe_ratio_at_equal_error']:.3f}"
        )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse arguments, run, print the tables and write the JSON."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--tols", type=float, nargs="+", default=[1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8]
    )
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--digits-iterations", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["dopri5"],
        help="flowkit methods; peers run with dopri5 only (the other methods: "
        "--methods tsit5 bosh3 dopri8 adaptive_heun --digits-iterations 0 --tols 1e-3 1e-4 "
        "1e-5 1e-6 1e-7)",
    )
    parser.add_argument("--quick", action="store_true", help="two tolerances, no digits model")
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.quick:
        args.tols, args.digits_iterations, args.batch = [1e-3, 1e-6], 0, 64
        args.methods = ["dopri5", "bosh3"]
    record = run(args.tols, args.batch, args.digits_iterations, args.seed, args.methods)
    _print(record)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "step_control.json"
    path.write_text(json.dumps(record, indent=1))
    print(f"wrote {path}")
    return record


if __name__ == "__main__":
    main()
