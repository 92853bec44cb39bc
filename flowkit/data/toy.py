"""The 2-D toy densities of the FFJORD paper, generated from a seed.

Each density is written from its geometric description (mixture centres,
spiral equations, square tiles); nothing is downloaded. Samples are drawn with
an explicit :class:`torch.Generator`, so a seed fixes the data exactly.

Class labels (``sample_toy(..., labels=True)``, for conditional flows): the
densities drawn as a mixture return the index of the part each point was
drawn from, as int64 (:data:`TOY_CLASSES` gives how many there are):
``8gaussians`` the Gaussian (0-7, counter-clockwise from angle 0),
``pinwheel`` the arm (0-4), ``moons`` the half circle (0 upper, 1 lower),
``circles`` the circle (0 outer, 1 inner), ``rings`` the ring (0 outermost
to 3 innermost), ``2spirals`` the spiral (0 and 1) and ``checkerboard`` the
square (0-7: ``2 * column + k``, columns from the left, ``k`` 0 for the lower
and 1 for the upper black square of the column). ``swissroll`` is
one continuous arm and has no labels. The points for a seed are the same with
or without labels.

References:
    Grathwohl, Chen, Bettencourt, Sutskever, Duvenaud. "FFJORD: Free-form
    Continuous Dynamics for Scalable Reversible Generative Models", ICLR 2019.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["TOY_CLASSES", "TOY_DATASETS", "sample_toy"]

_Sampler = Callable[[int, torch.Generator], Tensor]
_LabelledSampler = Callable[[int, torch.Generator], tuple[Tensor, Tensor | None]]


def _randn(n: int, d: int, g: torch.Generator) -> Tensor:
    return torch.randn(n, d, generator=g, dtype=torch.float64)


def _rand(n: int, g: torch.Generator) -> Tensor:
    return torch.rand(n, generator=g, dtype=torch.float64)


def _eight_gaussians(n: int, g: torch.Generator) -> tuple[Tensor, Tensor | None]:
    # Eight equal-weight Gaussians centred on a circle of radius 4 (every 45 degrees),
    # standard deviation 0.5, the whole picture shrunk by sqrt(2). The differential
    # entropy, log 8 + log(2 pi e sigma^2) with sigma = 0.5 / sqrt(2), is about 2.84 nats.
    angles = torch.arange(8, dtype=torch.float64) * (math.pi / 4)
    centres = 4.0 * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    which = torch.randint(0, 8, (n,), generator=g)
    return (centres[which] + 0.5 * _randn(n, 2, g)) / math.sqrt(2.0), which


def _pinwheel(n: int, g: torch.Generator) -> tuple[Tensor, Tensor | None]:
    # Five arms: a point starts at (1, 0) with radial noise 0.3 and tangential noise 0.1
    # and is rotated by its arm's angle plus 0.25 * exp(radial coordinate), which bends
    # the arm the further out it lies; then scaled by 2.
    arms, radial_std, tangential_std, rate = 5, 0.3, 0.1, 0.25
    which = torch.randint(0, arms, (n,), generator=g)
    feats = _randn(n, 2, g) * torch.tensor([radial_std, tangential_std], dtype=torch.float64)
    feats[:, 0] += 1.0
    angle = which.to(torch.float64) * (2 * math.pi / arms) + rate * torch.exp(feats[:, 0])
    c, s = torch.cos(angle), torch.sin(angle)
    x = c * feats[:, 0] - s * feats[:, 1]
    y = s * feats[:, 0] + c * feats[:, 1]
    return 2.0 * torch.stack([x, y], dim=1), which


def _moons(n: int, g: torch.Generator) -> tuple[Tensor, Tensor | None]:
    # Two interleaved half circles of radius 1 (the lower one shifted by (1, -0.5)),
    # Gaussian noise 0.1, scaled by 2 and shifted by (-1, -0.2) to centre the picture.
    upper = torch.rand(n, generator=g) < 0.5
    theta = math.pi * _rand(n, g)
    x = torch.where(upper, torch.cos(theta), 1.0 - torch.cos(theta))
    y = torch.where(upper, torch.sin(theta), 0.5 - torch.sin(theta))
    pts = torch.stack([x, y], dim=1) + 0.1 * _randn(n, 2, g)
    return 2.0 * pts + torch.tensor([-1.0, -0.2], dtype=torch.float64), (~upper).long()


def _circles(n: int, g: torch.Generator) -> tuple[Tensor, Tensor | None]:
    # Two concentric circles of radii 1 and 0.5, uniform angle, Gaussian noise 0.08,
    # scaled by 3.
    inner = torch.rand(n, generator=g) < 0.5
    radius = torch.where(inner, 0.5, 1.0).to(torch.float64)
    theta = 2 * math.pi * _rand(n, g)
    pts = radius[:, None] * torch.stack([torch.cos(theta), torch.sin(theta)], dim=1)
    return 3.0 * (pts + 0.08 * _randn(n, 2, g)), inner.long()


def _rings(n: int, g: torch.Generator) -> tuple[Tensor, Tensor | None]:
    # Four concentric rings of radii 3, 2.25, 1.5, 0.75 (equal weight, uniform angle)
    # with Gaussian noise 0.08.
    radii = 3.0 * torch.tensor([1.0, 0.75, 0.5, 0.25], dtype=torch.float64)
    which = torch.randint(0, 4, (n,), generator=g)
    theta = 2 * math.pi * _rand(n, g)
    pts = radii[which][:, None] * torch.stack([torch.cos(theta), torch.sin(theta)], dim=1)
    return pts + 0.08 * _randn(n, 2, g), which


def _swissroll(n: int, g: torch.Generator) -> tuple[Tensor, Tensor | None]:
    # The 2-D section of a Swiss roll: t uniform on [1.5 pi, 4.5 pi], the point
    # (t cos t, t sin t) plus unit Gaussian noise, scaled by 1/5.
    t = 1.5 * math.pi * (1.0 + 2.0 * _rand(n, g))
    pts = torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1) + _randn(n, 2, g)
    return pts / 5.0, None


def _two_spirals(n: int, g: torch.Generator) -> tuple[Tensor, Tensor | None]:
    # Two mirrored Archimedean spirals r = theta with theta = 3 pi sqrt(u) (so points
    # spread evenly along the arm), a uniform jitter of up to 0.5 on each coordinate,
    # scaled by 1/3, plus Gaussian noise 0.1.
    theta = 3 * math.pi * torch.sqrt(_rand(n, g))
    x = -torch.cos(theta) * theta + 0.5 * _rand(n, g)
    y = torch.sin(theta) * theta + 0.5 * _rand(n, g)
    sign = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0).to(torch.float64)
    pts = sign[:, None] * torch.stack([x, y], dim=1) / 3.0
    return pts + 0.1 * _randn(n, 2, g), (sign > 0).long()


def _checkerboard(n: int, g: torch.Generator) -> tuple[Tensor, Tensor | None]:
    # Uniform on the eight black squares of a 4x4 checkerboard covering [-4, 4]^2:
    # x uniform on [-2, 2); y uniform on [-2, -1) or [0, 1), moved up by one on the
    # columns where floor(x) is odd; everything scaled by 2.
    x = 4.0 * _rand(n, g) - 2.0
    lower = torch.randint(0, 2, (n,), generator=g)
    y = _rand(n, g) - 2.0 * lower.to(torch.float64)
    y = y + torch.remainder(torch.floor(x), 2.0)
    square = 2 * (torch.floor(x).long() + 2) + (1 - lower)
    return 2.0 * torch.stack([x, y], dim=1), square


_LABELLED: dict[str, _LabelledSampler] = {
    "8gaussians": _eight_gaussians,
    "pinwheel": _pinwheel,
    "moons": _moons,
    "circles": _circles,
    "rings": _rings,
    "swissroll": _swissroll,
    "2spirals": _two_spirals,
    "checkerboard": _checkerboard,
}


def _points_only(sampler: _LabelledSampler) -> _Sampler:
    def points(n: int, g: torch.Generator) -> Tensor:
        return sampler(n, g)[0]

    return points


TOY_DATASETS: dict[str, _Sampler] = {name: _points_only(f) for name, f in _LABELLED.items()}
"""Name -> sampler ``(n, generator) -> (n, 2)`` float64 tensor, for every toy density."""

TOY_CLASSES: dict[str, int] = {
    "8gaussians": 8,
    "pinwheel": 5,
    "moons": 2,
    "circles": 2,
    "rings": 4,
    "2spirals": 2,
    "checkerboard": 8,
}
"""Name -> number of classes, for the toy densities that have labels (see the module)."""


def sample_toy(
    name: str,
    n: int,
    *,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    labels: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Draw ``n`` points of a 2-D toy density (with their class labels if asked).

    Arguments:
        name: one of :data:`TOY_DATASETS`.
        n: the number of points (positive).
        generator: a CPU generator to draw from; alternatively ``seed``.
        seed: seeds a fresh generator when ``generator`` is not given.
        dtype, device: of the returned tensor (generation runs in float64 on CPU,
            so the same seed gives the same points on every device).
        labels: also return each point's class, int64 in ``[0, TOY_CLASSES[name])``
            (the mixture part it was drawn from; see the module docstring).

    Returns:
        A tensor of shape ``(n, 2)``; with ``labels``, ``(points, labels)``
        with labels of shape ``(n,)`` (the points are the same as without).

    Raises:
        ValueError: for an unknown name, a non-positive ``n``, or ``labels``
            for a density without labels.
    """
    if name not in TOY_DATASETS:
        raise ValueError(f"Unknown toy density {name!r}; choose from {', '.join(TOY_DATASETS)}.")
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}.")
    if labels and name not in TOY_CLASSES:
        raise ValueError(
            f"The toy density {name!r} has no class labels; labelled ones: "
            f"{', '.join(TOY_CLASSES)}."
        )
    if generator is None:
        generator = torch.Generator().manual_seed(0 if seed is None else seed)
    points, classes = _LABELLED[name](n, generator)
    points = points.to(dtype=dtype, device=device)
    if not labels:
        return points
    assert classes is not None
    return points, classes.to(dtype=torch.int64, device=device)
