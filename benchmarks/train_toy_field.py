"""Produce the trained toy fields that ``flowkit bench``'s speed suite ships.

Question it answers: none -- it is the fixture maker. A field at its random
initialisation is nearly flat and an adaptive solver needs very few steps on
it, which flatters every solver; the speed suite therefore measures a field
briefly trained by maximum likelihood, as in FFJORD's toy experiments:
flowkit's ``mlp`` field (3 hidden layers of 64, tanh) in a flowkit CNF
(dopri5, exact trace, adjoint gradients), Adam, on

* d = 2: the ``pinwheel`` density -> ``flowkit/bench/assets/toy_field.pt``;
* d = 8: four 2-D toy densities side by side -> ``toy_field_d8.pt``.

The state dict is saved in float32 and loaded with ``weights_only=True``.
Training statistics (NLL before/after, time, nfe) go to a JSON beside it.

Run: ``python benchmarks/train_toy_field.py --dim 2`` (``--quick`` for a smoke run
into ``bench-out/``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from flowkit.bench.assets import ASSET_DIR, TOY_DENSITIES, TOY_FIELD_SPEC, asset_path, toy_data
from flowkit.bench.timing import stopwatch
from flowkit.cnf import CNF

__all__ = ["main", "train_field"]


def train_field(dim: int, iters: int, batch: int, seed: int, lr: float) -> tuple[CNF, dict]:
    """Train the field by maximum likelihood; returns the model and statistics."""
    torch.manual_seed(seed)
    cnf = CNF(
        "mlp",
        integrator="dopri5",
        trace="exact",
        gradient="adjoint",
        dim=dim,
        field_options=dict(TOY_FIELD_SPEC),
        integrator_options={"rtol": 1e-4, "atol": 1e-4},
    )
    held_out = toy_data(dim, 2048, seed=10_000 + seed)
    optimiser = torch.optim.Adam(cnf.parameters(), lr=lr)

    def nll() -> float:
        with torch.no_grad():
            return float(-cnf.log_prob(held_out).mean())

    before = nll()
    nfes = []
    with stopwatch(cnf) as clock:
        for it in range(iters):
            x = toy_data(dim, batch, seed=seed * 100_003 + it)
            optimiser.zero_grad()
            loss = -cnf.log_prob(x).mean()
            loss.backward()
            optimiser.step()
            nfes.append(cnf.last_stats.nfe)
            if it % 50 == 0:
                print(f"iter {it:5d}  loss {float(loss):.3f}  nfe {nfes[-1]}", flush=True)
    stats = {
        "dim": dim,
        "densities": list(TOY_DENSITIES[dim]),
        "iters": iters,
        "batch": batch,
        "seed": seed,
        "lr": lr,
        "field": {
            "name": "mlp",
            **{k: list(v) if isinstance(v, tuple) else v for k, v in TOY_FIELD_SPEC.items()},
        },
        "heldout_nll_before": before,
        "heldout_nll_after": nll(),
        "train_seconds": clock.seconds,
        "nfe_first": nfes[0],
        "nfe_last": nfes[-1],
    }
    return cnf, stats


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dim", type=int, default=2, choices=sorted(TOY_DENSITIES))
    parser.add_argument("--iters", type=int, default=400)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="20 iterations into bench-out/")
    parser.add_argument("--out", type=Path, default=None, help="output file (default: asset)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    iters = 20 if args.quick else args.iters
    out = args.out or (
        Path("bench-out") / asset_path(args.dim).name if args.quick else asset_path(args.dim)
    )
    cnf, stats = train_field(args.dim, iters, args.batch, args.seed, args.lr)
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float32).cpu() for k, v in cnf.field.state_dict().items()}
    torch.save(state, out)
    out.with_suffix(".json").write_text(json.dumps(stats, indent=2) + "\n")
    print(json.dumps(stats, indent=2))
    print(f"wrote {out} (asset directory: {ASSET_DIR})")


if __name__ == "__main__":
    main()
