"""PNG plots of a report: error against time (Pareto front), memory against steps, NLL
against time. Drawn with matplotlib's non-interactive Agg backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["pareto_front", "write_plots"]


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points not dominated in both coordinates (lower is better), sorted by x."""
    front: list[tuple[float, float]] = []
    for x, y in sorted(points):
        if not front or y < front[-1][1]:
            front.append((x, y))
    return front


def _ok(report: dict[str, Any], suite: str) -> list[dict[str, Any]]:
    return [r for r in report["results"] if r["suite"] == suite and r["status"] == "ok"]


def write_plots(report: dict[str, Any], out: Path) -> list[Path]:
    """Draw the plots the report has data for; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []

    acc = [
        r
        for r in _ok(report, "accuracy")
        if "logp_error" in r["metrics"] and "time" in r["metrics"]
    ]
    if acc:
        fig, ax = plt.subplots(figsize=(7, 5))
        pts = []
        for res in acc:
            x = res["metrics"]["time"]["median"]
            y = max(res["metrics"]["logp_error"]["median"], 1e-17)
            pts.append((x, y))
            ax.scatter(x, y, s=18)
            ax.annotate(str(res["params"].get("label", res["key"])), (x, y), fontsize=6)
        front = pareto_front(pts)
        ax.plot([p[0] for p in front], [p[1] for p in front], "k--", lw=1, label="Pareto front")
        ax.set(xscale="log", yscale="log", xlabel="time of log_prob + gradient [s]")
        ax.set_ylabel("max |log p error| vs closed form")
        ax.set_title("accuracy: error against time")
        ax.legend()
        fig.tight_layout()
        written.append(out / "error_vs_time.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)

    mem = [
        r for r in _ok(report, "memory") if "peak_mib" in r["metrics"] and "steps" in r["params"]
    ]
    if mem:
        fig, ax = plt.subplots(figsize=(7, 5))
        lines: dict[str, list[tuple[int, float]]] = {}
        for res in mem:
            name = str(res["params"].get("line", res["subject"]))
            lines.setdefault(name, []).append(
                (res["params"]["steps"], res["metrics"]["peak_mib"]["median"])
            )
        for name, pts in sorted(lines.items()):
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=name)
        ax.set(xscale="log", xlabel="solver steps", ylabel="peak memory of a training step [MiB]")
        ax.set_title("memory: peak against steps")
        ax.legend(fontsize=7)
        fig.tight_layout()
        written.append(out / "memory_vs_steps.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)

    train = [r for r in _ok(report, "training") if r["series"].get("nll_vs_time")]
    if train:
        fig, ax = plt.subplots(figsize=(7, 5))
        for res in train:
            curve = res["series"]["nll_vs_time"][0]
            ax.plot(
                [p[0] for p in curve],
                [p[1] for p in curve],
                label=str(res["params"].get("label", res["key"])),
            )
        ax.set(xlabel="wall time [s]", ylabel="held-out NLL [nats]")
        ax.set_title("training: NLL against time")
        ax.legend(fontsize=7)
        fig.tight_layout()
        written.append(out / "nll_vs_time.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)
    return written
