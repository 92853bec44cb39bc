"""PNG outputs of a trained model: 2-D density, samples and trajectories; digit grids.

Figures are built with :class:`matplotlib.figure.Figure` directly (no pyplot,
no global backend change); every function writes one file and returns its path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor, nn

__all__ = [
    "plot_density_2d",
    "plot_digits",
    "plot_samples_2d",
    "plot_trajectories_2d",
    "sample_paths",
]


def _bounds(data: Tensor, margin: float = 0.1) -> tuple[float, float]:
    lo, hi = np.quantile(data.detach().cpu().numpy(), [0.001, 0.999])
    span = hi - lo
    return float(lo - margin * span), float(hi + margin * span)


@torch.no_grad()
def plot_density_2d(
    model: nn.Module,
    data: Tensor,
    path: str | Path,
    *,
    grid: int = 100,
    chunk: int = 5_000,
    title: str = "learned density",
) -> Path:
    """The model's density ``exp(log_prob)`` on a ``grid`` x ``grid`` lattice over the data.

    Arguments:
        model: a model with ``log_prob(x)`` for ``x`` of shape ``(n, 2)``.
        data: samples fixing the plotted square.
        path: the PNG to write.
        grid: lattice points per axis.
        chunk: points per ``log_prob`` call.
    """
    lo, hi = _bounds(data)
    axis = torch.linspace(lo, hi, grid, dtype=data.dtype, device=data.device)
    xx, yy = torch.meshgrid(axis, axis, indexing="xy")
    points = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)
    logp = torch.cat([model.log_prob(c) for c in points.split(chunk)])
    density = logp.exp().reshape(grid, grid).cpu().numpy()
    fig = Figure(figsize=(4, 4))
    ax = fig.subplots()
    ax.imshow(density, origin="lower", extent=(lo, hi, lo, hi), cmap="inferno")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    return _save(fig, path)


def _hist(ax: Axes, x: Tensor, lo: float, hi: float, title: str) -> None:
    pts = x.detach().cpu().numpy()
    ax.hist2d(pts[:, 0], pts[:, 1], bins=100, range=[[lo, hi], [lo, hi]], cmap="inferno")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_aspect("equal")


@torch.no_grad()
def plot_samples_2d(model: nn.Module, data: Tensor, path: str | Path, *, n: int = 5_000) -> Path:
    """Histograms of ``n`` data points next to ``n`` model samples."""
    lo, hi = _bounds(data)
    samples = model.sample(n)
    fig = Figure(figsize=(8, 4))
    axes = fig.subplots(1, 2)
    _hist(axes[0], data[:n], lo, hi, "data")
    _hist(axes[1], samples, lo, hi, "model samples")
    return _save(fig, path)


@torch.no_grad()
def sample_paths(
    model: nn.Module, n: int, steps: int = 41, *, context: Tensor | None = None
) -> Tensor:
    """Paths of ``n`` samples from the base (t0) to the data (t1), shape ``(steps, n, dim)``.

    Uses the model's own field and integrator through :func:`flowkit.solve.solve`;
    a conditional model's paths follow ``context`` (one row per sample).
    """
    from flowkit.solve import solve

    if hasattr(model, "sample_labels"):  # a MarginalModel: labels drawn by the class weights
        from flowkit.train.context import label_context

        labels = model.sample_labels(n)
        p = next(model.model.parameters())
        context = label_context(labels, model.n_classes, torch.empty(0, dtype=p.dtype))
        model = model.model
    field = model.field
    z = model.sample_base(n) if hasattr(model, "sample_base") else None
    if z is None:
        p = next(model.parameters())
        z = torch.randn(n, model.dim, dtype=p.dtype, device=p.device)
    ts = torch.linspace(float(model.t0), float(model.t1), steps, dtype=z.dtype, device=z.device)
    if context is not None:
        bound = context.to(device=z.device, dtype=z.dtype)
        sol = solve(
            lambda t, x: field(t, x, context=bound),
            z,
            ts,
            integrator=model.integrator,
            gradient="backprop",
        )
        return sol.ys  # type: ignore[return-value]
    sol = solve(lambda t, x: field(t, x), z, ts, integrator=model.integrator, gradient="backprop")
    return sol.ys  # type: ignore[return-value]


@torch.no_grad()
def plot_trajectories_2d(
    model: nn.Module, data: Tensor, path: str | Path, *, n: int = 40, steps: int = 41
) -> Path:
    """The paths of ``n`` samples from the base density to the data, over the data."""
    lo, hi = _bounds(data)
    paths = sample_paths(model, n, steps).cpu().numpy()
    fig = Figure(figsize=(4, 4))
    ax = fig.subplots()
    pts = data[:5_000].detach().cpu().numpy()
    ax.scatter(pts[:, 0], pts[:, 1], s=1, alpha=0.15, color="grey")
    for i in range(paths.shape[1]):
        ax.plot(paths[:, i, 0], paths[:, i, 1], lw=0.8, alpha=0.8)
    ax.scatter(paths[0, :, 0], paths[0, :, 1], s=8, color="black", label="t0 (base)")
    ax.scatter(paths[-1, :, 0], paths[-1, :, 1], s=8, color="red", label="t1 (data)")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")
    ax.legend(loc="lower right", fontsize=7)
    ax.set_title("sample trajectories")
    return _save(fig, path)


def plot_digits(
    images: Tensor,
    path: str | Path,
    *,
    shape: Sequence[int] = (8, 8),
    columns: int = 8,
    vmax: float = 16.0,
    title: str = "samples",
) -> Path:
    """A grid of images (rows of ``images`` reshaped to ``shape``), grey levels 0..vmax."""
    imgs = images.detach().cpu().numpy().reshape(len(images), *shape)
    rows = int(np.ceil(len(imgs) / columns))
    fig = Figure(figsize=(columns * 0.8, rows * 0.8))
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax, img in zip(
        np.atleast_1d(axes).ravel(), [*imgs, *([None] * (rows * columns))], strict=False
    ):
        ax.axis("off")
        if img is not None:
            ax.imshow(img, cmap="gray_r", vmin=0, vmax=vmax)
    fig.suptitle(title)
    return _save(fig, path)


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
