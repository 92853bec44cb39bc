"""The training benchmark's figures: NLL-versus-time curves and learned densities."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor, nn
from training_setups import reference_cnf

__all__ = ["plot_curves", "plot_density"]


def plot_curves(result: dict[str, Any], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2, 3.0))
    ax = fig.subplots()
    for name, curve in result["curves"].items():
        ts, nll = zip(*curve, strict=True)
        ax.plot(ts, nll, marker="o", ms=2.5, label=name.replace("_", " "))
    if "target" in result:
        ax.axhline(result["target"], color="grey", ls="--", lw=0.8, label="target 2.856")
    finals = [c[-1][1] for c in result["curves"].values()]
    lo = min(finals)
    ax.set_ylim(lo - 0.05, lo + 1.0)
    ax.set_xlabel("training time (s, one thread)")
    ax.set_ylabel("test NLL (nats)")
    ax.set_title(result["dataset"])
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def plot_density(field: nn.Module, data: Tensor, t1: float, path: Path, title: str) -> None:
    from flowkit.train.plots import plot_density_2d

    model = reference_cnf(field, dim=2, t1=t1)
    plot_density_2d(model, data, path, grid=80, title=title)
