"""The shipped toy fields: flowkit ``mlp`` fields (3 x 64, tanh) trained on 2-D toy densities.

``benchmarks/train_toy_field.py`` produces them; the repository ships the
state dicts in ``flowkit/bench/assets/`` so that no benchmark downloads
anything. An untrained field is nearly flat and needs few solver steps, which
would flatter every solver; these are briefly trained.

* ``toy_field.pt`` -- d = 2, trained on ``pinwheel``;
* ``toy_field_d8.pt`` -- d = 8, trained on four independent 2-D toy densities
  side by side (for the vectorised-trace goal at d >= 8).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from flowkit.data.toy import sample_toy
from flowkit.errors import FlowkitError
from flowkit.registry import Registry, get_registry

__all__ = [
    "ASSET_DIR",
    "TOY_DENSITIES",
    "TOY_FIELD_SPEC",
    "asset_path",
    "load_toy_field",
    "toy_data",
]

ASSET_DIR = Path(__file__).parent / "assets"
TOY_FIELD_SPEC = {"hidden": (64, 64, 64), "activation": "tanh"}
"""The ``mlp`` field options of the shipped fields (FFJORD's toy field)."""

TOY_DENSITIES: dict[int, tuple[str, ...]] = {
    2: ("pinwheel",),
    8: ("pinwheel", "8gaussians", "moons", "checkerboard"),
}
"""The 2-D toy densities each shipped field was trained on, side by side."""


def toy_data(
    dim: int,
    n: int,
    *,
    seed: int,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """``n`` points of the density the field of dimension ``dim`` was trained on.

    Raises:
        FlowkitError: for a dimension without a toy density.
    """
    if dim not in TOY_DENSITIES:
        raise FlowkitError(
            f"No toy density of dimension {dim}; choose from {sorted(TOY_DENSITIES)}."
        )
    parts = [
        sample_toy(name, n, seed=seed * 31 + i, dtype=dtype, device=device)
        for i, name in enumerate(TOY_DENSITIES[dim])
    ]
    return torch.cat(parts, dim=1)


def asset_path(dim: int) -> Path:
    """Where the shipped field of dimension ``dim`` lives."""
    return ASSET_DIR / ("toy_field.pt" if dim == 2 else f"toy_field_d{dim}.pt")


def load_toy_field(
    dim: int = 2,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    registry: Registry | None = None,
) -> nn.Module:
    """The trained toy field of dimension ``dim`` (a registry ``mlp`` field).

    Arguments:
        dim: the dimension of the field.
        dtype, device: where the field computes.
        registry: the registry whose ``mlp`` is built (default: the global one,
            for scripts that load the field on their own).

    Raises:
        FlowkitError: when no field of that dimension is shipped, saying how to
            produce it.
    """
    path = asset_path(dim)
    if not path.exists():
        raise FlowkitError(
            f"No trained toy field of dimension {dim} at {path}; produce it with "
            f"`python benchmarks/train_toy_field.py --dim {dim}`."
        )
    registry = registry if registry is not None else get_registry()
    field = registry.create("vector_field", "mlp", dim=dim, **TOY_FIELD_SPEC)
    state = torch.load(path, map_location="cpu", weights_only=True)
    field.load_state_dict(state)
    return field.to(dtype=dtype, device=device)  # type: ignore[no-any-return]
