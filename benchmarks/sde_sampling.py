"""Benchmark: how good are a score model's samples for the score evaluations they cost?

Question: on 8gaussians, with one score model trained by the ``score_matching``
objective (``probability_flow`` field, ``vp`` SDE, noise parametrisation), how
close to held-out data are the samples of each sampler of
:func:`flowkit.sde.sample` (sample quality: the unbiased squared energy
distance, :func:`flowkit.metrics.energy_distance`, lower is better) against
the number of score evaluations (NFE) and the wall time it takes? Samplers:
the reverse SDE with Euler-Maruyama at 100, 300 and 1000 steps;
predictor-corrector (reverse diffusion + one Langevin step, snr 0.16) at
100+100 and 300+300; the probability flow ODE with dopri5 (1e-5) and with rk4
at 5, 10 and 20 steps. Goal (issue 14): predictor-corrector at 100+100 matches
Euler-Maruyama at 1000 steps within 10% on the sample-quality figure
(``ratio = ED(pc 100+100) / ED(em 1000) <= 1.1``).

Method: the model trains for ``--iterations`` (default 2000, batch 256, an
MLP of 3 x 64; ``--train-seconds`` stops it earlier) on 8gaussians; then
:func:`flowkit.sde.compare_samplers` runs ``--repeats`` rounds, each sampling
every setting once (rotated order, one seed per round shared by all settings),
``n`` samples each, ``n`` the size of the test split (default 1000); medians
over the rounds are reported, on one CPU thread. For scale, the floor is the energy distance between
the validation and the test split (two samples of the data itself). Results go
to JSON (refused if the file exists, unless ``--overwrite``).

Usage:
    python benchmarks/sde_sampling.py                 # bench-out/sde_sampling.json
    python benchmarks/sde_sampling.py --quick         # a smoke run
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from flowkit.metrics import energy_distance
from flowkit.sde import SamplerSetting, compare_samplers
from flowkit.sde.comparison import DEFAULT_SETTINGS
from flowkit.train import TrainConfig, Trainer

__all__ = ["main", "run", "train_score_model"]

GOAL = ("pc 100+100", "reverse_sde em 1000", 1.1)
"""(setting, reference, largest allowed ratio of their energy distances)."""


def train_score_model(iterations: int, seconds: float | None, *, n_test: int, seed: int) -> Trainer:
    """A score model on 8gaussians, trained with ``score_matching`` for ``iterations``
    (or until ``seconds`` of training, whichever comes first)."""
    config = TrainConfig(
        data="8gaussians",
        n_train=20000,
        n_val=n_test,
        n_test=n_test,
        field="probability_flow",
        field_options={"score_field_options": {"hidden": [64, 64, 64]}},
        objective="score_matching",
        t1=1.0,
        batch_size=256,
        iterations=iterations,
        time_budget=seconds,
        lr=2e-3,
        lr_schedule="cosine",
        val_every=1_000_000,
        eval_integrator="rk4",
        eval_integrator_options={"n_steps": 20},
        eval_trace="exact",
        progress=False,
        plots=False,
        seed=seed,
        device="cpu",
        dtype="float32",
        threads=1,
    )
    trainer = Trainer(config, run_dir=Path(tempfile.mkdtemp(prefix="sde_sampling-")))
    trainer.fit()
    return trainer


def run(
    *,
    iterations: int,
    train_seconds: float | None,
    n_test: int,
    repeats: int,
    seed: int,
    settings: list[SamplerSetting],
) -> dict[str, Any]:
    """Train, compare the samplers, and return the JSON record."""
    started = time.perf_counter()
    trainer = train_score_model(iterations, train_seconds, n_test=n_test, seed=seed)
    model = trainer.final_model().eval()
    held_out = trainer.data.test.to(torch.float32)
    floor = float(energy_distance(trainer.data.val.to(held_out.dtype), held_out, unbiased=True))
    scores = compare_samplers(model, held_out, settings=settings, repeats=repeats, seed=seed)
    rows = [score.to_dict() for score in scores]
    by_label = {row["label"]: row for row in rows}
    record: dict[str, Any] = {
        "question": __doc__.split("\n\n")[1].replace("\n", " "),
        "command": " ".join(["python", *sys.argv]),
        "machine": {"platform": platform.platform(), "torch": torch.__version__},
        "threads": torch.get_num_threads(),
        "train_seconds_budget": train_seconds,
        "train_iterations": trainer.iteration,
        "n_samples": int(held_out.shape[0]),
        "repeats": repeats,
        "seed": seed,
        "floor_energy_distance": floor,
        "results": rows,
    }
    setting, reference, limit = GOAL
    if setting in by_label and reference in by_label:
        ratio = by_label[setting]["energy_distance"] / by_label[reference]["energy_distance"]
        per_round = [
            a / b
            for a, b in zip(
                by_label[setting]["energy_distances"],
                by_label[reference]["energy_distances"],
                strict=True,
            )
        ]
        record["goal"] = {
            "statement": f"ED({setting}) / ED({reference}) <= {limit}",
            "ratio_of_medians": ratio,
            "median_ratio_per_round": statistics.median(per_round),
            "met": ratio <= limit,
        }
    record["wall_seconds"] = time.perf_counter() - started
    return record


def _table(record: dict[str, Any]) -> str:
    lines = [f"{'sampler':<22} {'NFE':>7} {'energy distance':>16} {'seconds':>9}"]
    for row in record["results"]:
        lines.append(
            f"{row['label']:<22} {row['nfe']:>7.0f} {row['energy_distance']:>16.5f} "
            f"{row['seconds']:>9.2f}"
        )
    lines.append(f"{'(data vs data floor)':<22} {'':>7} {record['floor_energy_distance']:>16.5f}")
    if "goal" in record:
        goal = record["goal"]
        lines.append(
            f"goal {goal['statement']}: ratio {goal['ratio_of_medians']:.3f}, met={goal['met']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse the command line, run the benchmark, print a table and write the JSON."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iterations", type=int, default=2000, help="training iterations")
    parser.add_argument(
        "--train-seconds", type=float, default=None, help="stop training earlier, at this time"
    )
    parser.add_argument("--n-test", type=int, default=1000, help="held-out samples (and n)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="20 iterations, small samples")
    parser.add_argument("--out", type=Path, default=None, help="the JSON file to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # one thread: a shared machine's cores stay comparable
    name = "sde_sampling-quick.json" if args.quick else "sde_sampling.json"
    out = args.out if args.out is not None else Path("bench-out") / name
    if out.exists() and not args.overwrite:
        parser.error(f"{out} exists; pass --overwrite to replace it, or choose --out.")
    if args.quick:
        args.iterations, args.n_test, args.repeats = 20, 300, 1
    record = run(
        iterations=args.iterations,
        train_seconds=args.train_seconds,
        n_test=args.n_test,
        repeats=args.repeats,
        seed=args.seed,
        settings=list(DEFAULT_SETTINGS),
    )
    print(_table(record))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2))
    print(f"wrote {out}")
    return record


if __name__ == "__main__":
    main()
