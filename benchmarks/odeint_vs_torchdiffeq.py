"""Is ``flowkit.odeint`` as fast as ``torchdiffeq.odeint`` on the same calls?

Question: a torchdiffeq user changes one import; for the calls they make
(dopri5 at tolerances 1e-6 and 1e-9, rk4 on a fixed grid, gradients by
backpropagation and by the adjoint method, a tuple state, an event), on a small state
and on a batch of 512, what is the ratio of flowkit's time to torchdiffeq's,
and do both use the same number of function evaluations?

Setup: a neural field (MLP 2-64-64-2, tanh, time as a third input, fixed
seed), float32, one thread, from t = 0 to t = 1. Each case runs both
implementations on identical inputs; every repetition runs all cases, both
implementations in alternating order (interleaved, so drifts of a noisy
machine hit both alike). Reported per case: median seconds of each, the ratio
of the medians (flowkit / torchdiffeq; below 1 means flowkit is faster), the
median of the per-repetition ratios, function evaluations of each, and the
largest difference between their final states. JSON goes to ``--out``; an
existing file is replaced only with ``--overwrite``.

Notes: flowkit's ``rk4`` is the classic method and torchdiffeq's is the 3/8
rule (same cost, four evaluations a step); the event case (``odeint_event``
until some row of the state has moved by 0.1, then a backward pass through
the event time) compares flowkit's windowed search with torchdiffeq's search
inside its steps; the adjoint case uses
``flowkit.odeint_adjoint`` when it exists and ``flowkit.odeint(...,
gradient="adjoint")`` otherwise (the JSON says which).

Run: ``python benchmarks/odeint_vs_torchdiffeq.py [--quick] [--repeats N] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchdiffeq
from torch import Tensor, nn

import flowkit
from flowkit.bench.timing import stopwatch

__all__ = ["CASES", "Case", "MLPField", "main", "run_cases"]

IMPLEMENTATIONS = ("torchdiffeq", "flowkit")
SIZES = {"small": 1, "batch512": 512}
DEFAULT_OUT = "bench-out/odeint_vs_torchdiffeq.json"
EVENT_DISTANCE = 0.1


class UsageError(Exception):
    """A bad command-line choice; reported as one line, exit status 2."""


class MLPField(nn.Module):
    """MLP 2-64-64-2 with tanh; time enters as a third input. Counts its evaluations."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(
            nn.Linear(3, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 2)
        )
        self.nfe = 0

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        self.nfe += 1
        return self.net(torch.cat([x, t.to(x.dtype).expand(x.shape[0], 1)], dim=1))


class TupleField(nn.Module):
    """The state ``(x, e)``: ``x' = f(t, x)`` and ``e' = |f|^2`` per row (a kinetic energy)."""

    def __init__(self, field: MLPField) -> None:
        super().__init__()
        self.field = field

    def forward(self, t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        dx = self.field(t, state[0])
        return dx, dx.pow(2).sum(dim=1, keepdim=True)


@dataclass(frozen=True)
class Case:
    """One call: the solver arguments and whether it runs a backward pass."""

    name: str
    method: str
    rtol: float | None = None
    atol: float | None = None
    options: dict[str, Any] | None = None
    gradient: str = "none"  # "none", "backprop" or "adjoint"
    tuple_state: bool = False
    event: bool = False  # odeint_event until some row has moved by EVENT_DISTANCE


CASES = (
    Case("dopri5 tol 1e-6", "dopri5", 1e-6, 1e-6),
    Case("dopri5 tol 1e-9", "dopri5", 1e-9, 1e-9),
    Case("rk4 fixed grid h=0.05", "rk4", options={"step_size": 0.05}),
    Case("dopri5 1e-6 + backprop", "dopri5", 1e-6, 1e-6, gradient="backprop"),
    Case("dopri5 1e-6 + adjoint", "dopri5", 1e-6, 1e-6, gradient="adjoint"),
    Case("dopri5 1e-6 tuple state", "dopri5", 1e-6, 1e-6, tuple_state=True),
    Case("odeint_event 1e-6 + backprop", "dopri5", 1e-6, 1e-6, gradient="backprop", event=True),
)


def _adjoint_call() -> tuple[str, Callable[..., Any]]:
    """flowkit's adjoint entry point: ``odeint_adjoint`` when present, else ``gradient=``."""
    odeint_adjoint = getattr(flowkit, "odeint_adjoint", None)
    if odeint_adjoint is not None:
        return "flowkit.odeint_adjoint", odeint_adjoint

    def through_gradient(*args: Any, **kwargs: Any) -> Any:
        return flowkit.odeint(*args, gradient="adjoint", **kwargs)

    return 'flowkit.odeint(gradient="adjoint")', through_gradient


def _solver(implementation: str, case: Case) -> Callable[..., Any]:
    adjoint = case.gradient == "adjoint"
    if implementation == "torchdiffeq":
        return torchdiffeq.odeint_adjoint if adjoint else torchdiffeq.odeint
    return _adjoint_call()[1] if adjoint else flowkit.odeint


def _one_call(implementation: str, case: Case, field: MLPField, x0: Tensor) -> tuple[float, Tensor]:
    """Run ``case`` once; its seconds and its final state (the ``x`` part)."""
    func: nn.Module = TupleField(field) if case.tuple_state else field
    y0: Tensor | tuple[Tensor, Tensor] = (
        (x0, torch.zeros(x0.shape[0], 1)) if case.tuple_state else x0
    )
    y0 = y0 if case.gradient == "none" else _requiring_grad(y0)
    kwargs: dict[str, Any] = {"method": case.method}
    kwargs.update({k: v for k, v in (("rtol", case.rtol), ("atol", case.atol)) if v is not None})
    if case.options is not None:
        kwargs["options"] = dict(case.options)
    solve = _solver(implementation, case)
    t = torch.tensor([0.0, 1.0])
    with torch.set_grad_enabled(case.gradient != "none"), stopwatch() as clock:
        if case.event:
            final = _until_event(implementation, func, x0, kwargs)
        else:
            ys = solve(func, y0, t, **kwargs)
            final = ys[0][-1] if case.tuple_state else ys[-1]
        if case.gradient != "none":
            final.pow(2).sum().backward()
    field.zero_grad(set_to_none=True)
    return clock.seconds, final.detach()


def _until_event(
    implementation: str, func: nn.Module, x0: Tensor, kwargs: dict[str, Any]
) -> Tensor:
    """``odeint_event`` from ``x0`` until a row has moved by :data:`EVENT_DISTANCE`."""
    module = torchdiffeq if implementation == "torchdiffeq" else flowkit
    y0 = x0.clone().requires_grad_(True)

    def moved(t: Tensor, y: Tensor) -> Tensor:
        return (y - x0).pow(2).sum(dim=1) - EVENT_DISTANCE**2

    event_t, ys = module.odeint_event(func, y0, torch.tensor(0.0), event_fn=moved, **kwargs)
    return ys[-1] + 0 * event_t


def _requiring_grad(y0: Tensor | tuple[Tensor, Tensor]) -> Tensor | tuple[Tensor, Tensor]:
    if isinstance(y0, tuple):
        return (y0[0].clone().requires_grad_(True), y0[1])
    return y0.clone().requires_grad_(True)


def run_cases(repeats: int, sizes: dict[str, int] = SIZES, seed: int = 0) -> list[dict[str, Any]]:
    """Time every case and size under both implementations, interleaved; one record each."""
    field = MLPField(seed)
    generator = torch.Generator().manual_seed(seed)
    states = {name: torch.randn(batch, 2, generator=generator) for name, batch in sizes.items()}
    keys = [(case, size) for case in CASES for size in sizes]
    times: dict[tuple[str, str, str], list[float]] = {}
    nfe: dict[tuple[str, str, str], int] = {}
    finals: dict[tuple[str, str, str], Tensor] = {}
    for rep in range(repeats + 1):  # repetition 0 warms up and is not counted
        for case, size in keys:
            order = IMPLEMENTATIONS if rep % 2 == 0 else IMPLEMENTATIONS[::-1]
            for implementation in order:
                key = (case.name, size, implementation)
                field.nfe = 0
                seconds, final = _one_call(implementation, case, field, states[size])
                if rep == 0:
                    nfe[key], finals[key] = field.nfe, final
                else:
                    times.setdefault(key, []).append(seconds)
    records = []
    for case, size in keys:
        ref, ours = (times[(case.name, size, impl)] for impl in IMPLEMENTATIONS)
        records.append(
            {
                "case": case.name,
                "size": size,
                "batch": sizes[size],
                "torchdiffeq_s": statistics.median(ref),
                "flowkit_s": statistics.median(ours),
                "ratio_of_medians": statistics.median(ours) / statistics.median(ref),
                "median_ratio": statistics.median(o / r for o, r in zip(ours, ref, strict=True)),
                "torchdiffeq_nfe": nfe[(case.name, size, "torchdiffeq")],
                "flowkit_nfe": nfe[(case.name, size, "flowkit")],
                "max_abs_state_difference": float(
                    (
                        finals[(case.name, size, "flowkit")]
                        - finals[(case.name, size, "torchdiffeq")]
                    )
                    .abs()
                    .max()
                ),
            }
        )
    return records


def _print_table(records: list[dict[str, Any]]) -> None:
    header = f"{'case':<30}{'size':<10}{'tdq ms':>9}{'fk ms':>9}{'ratio':>7}{'nfe tdq/fk':>12}"
    print(header)
    for r in records:
        print(
            f"{r['case']:<30}{r['size']:<10}{1e3 * r['torchdiffeq_s']:>9.2f}"
            f"{1e3 * r['flowkit_s']:>9.2f}{r['ratio_of_medians']:>7.2f}"
            f"{r['torchdiffeq_nfe']:>7}/{r['flowkit_nfe']:<4}"
        )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15, help="Timed repetitions (default 15).")
    parser.add_argument("--quick", action="store_true", help="Three repetitions (a smoke run).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"Output JSON (default {DEFAULT_OUT}).")
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing --out.")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 2 with a one-line message for a bad choice."""
    try:
        return _main(argv)
    except UsageError as exc:
        print(f"odeint_vs_torchdiffeq.py: error: {exc}", file=sys.stderr)
        return 2


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    repeats = 3 if args.quick else args.repeats
    if repeats < 1:
        raise UsageError(f"--repeats must be at least 1, got {repeats}.")
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise UsageError(f"{out} exists; pass --overwrite to replace it, or choose another --out.")
    torch.set_num_threads(1)
    records = run_cases(repeats, seed=args.seed)
    _print_table(records)
    report = {
        "question": __doc__.split("\n\n")[1],
        "torch": torch.__version__,
        "torchdiffeq": torchdiffeq.__version__,
        "flowkit": flowkit.__version__,
        "threads": 1,
        "repeats": repeats,
        "adjoint_call": _adjoint_call()[0],
        "command": sys.argv if argv is None else ["benchmarks/odeint_vs_torchdiffeq.py", *argv],
        "results": records,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
