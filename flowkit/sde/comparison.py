"""Sample quality against sampler cost: the samplers of one score model, side by side.

:func:`compare_samplers` samples a trained score model with several
:func:`flowkit.sde.sample` settings (the reverse SDE at several step counts,
predictor-corrector, the probability flow ODE adaptive and with few fixed
steps), measures each one's sample quality as the (unbiased) energy distance
to held-out data (:func:`flowkit.metrics.energy_distance`), its score
evaluations and its wall time, and repeats the whole round ``repeats`` times,
interleaved (each round runs every setting once, in a rotated order, all with
that round's seed), reporting medians. The ``training`` bench suite and
``benchmarks/sde_sampling.py`` call it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from flowkit.metrics import energy_distance
from flowkit.sde.sampling import sample

__all__ = ["DEFAULT_SETTINGS", "SamplerScore", "SamplerSetting", "compare_samplers"]


@dataclass(frozen=True)
class SamplerSetting:
    """One sampler configuration: a label and the keyword arguments of :func:`sample`."""

    label: str
    options: Mapping[str, Any] = field(default_factory=dict)


def _em(steps: int) -> SamplerSetting:
    return SamplerSetting(f"reverse_sde em {steps}", {"sampler": "reverse_sde", "n_steps": steps})


def _pc(steps: int) -> SamplerSetting:
    return SamplerSetting(f"pc {steps}+{steps}", {"sampler": "pc", "n_steps": steps})


def _rk4(steps: int) -> SamplerSetting:
    options = {"sampler": "ode", "integrator": "rk4", "integrator_options": {"n_steps": steps}}
    return SamplerSetting(f"ode rk4 {steps}", options)


DEFAULT_SETTINGS: tuple[SamplerSetting, ...] = (
    _em(100),
    _em(300),
    _em(1000),
    _pc(100),
    _pc(300),
    SamplerSetting(
        "ode dopri5",
        {
            "sampler": "ode",
            "integrator": "dopri5",
            "integrator_options": {"rtol": 1e-5, "atol": 1e-5},
        },
    ),
    _rk4(5),
    _rk4(10),
    _rk4(20),
)
"""The issue's comparison: Euler-Maruyama at 100/300/1000 steps, predictor-corrector
(reverse diffusion + one Langevin step, snr 0.16) at 100+100 and 300+300, the
probability flow ODE with dopri5 (1e-5) and with rk4 at 5, 10 and 20 steps."""


@dataclass
class SamplerScore:
    """One setting's result: medians over the rounds, and every round's values."""

    label: str
    options: dict[str, Any]
    nfe: float
    energy_distance: float
    seconds: float
    energy_distances: list[float]
    all_seconds: list[float]
    all_nfe: list[int]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return asdict(self)


def _synchronize(like: Tensor) -> None:
    """Wait for queued CUDA work, so that a timing includes it (no-op on CPU)."""
    if like.device.type == "cuda":
        torch.cuda.synchronize(like.device)


def compare_samplers(
    model: Any,
    held_out: Tensor,
    *,
    settings: Sequence[SamplerSetting] = DEFAULT_SETTINGS,
    n_samples: int | None = None,
    repeats: int = 3,
    seed: int = 0,
    context: Tensor | None = None,
) -> list[SamplerScore]:
    """Sample quality (energy distance to ``held_out``) against score evaluations and time.

    Arguments:
        model: a score model, as :func:`flowkit.sde.sample` takes it (a
            :class:`flowkit.CNF` on a probability flow field).
        held_out: data the model was not trained on, shape ``(m, dim)``, in
            the model's space.
        settings: the sampler settings to compare (default :data:`DEFAULT_SETTINGS`).
        n_samples: samples per setting and round (default: as many as ``held_out``).
        repeats: rounds; round ``r`` seeds every setting with ``seed + r`` and
            runs them in an order rotated by ``r``.
        seed: the first round's seed.
        context: passed to :func:`flowkit.sde.sample` (conditional models).

    Returns:
        One :class:`SamplerScore` per setting, in the order of ``settings``.

    Raises:
        ValueError: for no settings, ``repeats < 1`` or a bad ``n_samples``;
            whatever :func:`flowkit.sde.sample` raises for a setting.

    Example:
        >>> import torch
        >>> from flowkit.plugins.sdes import VPSDE
        >>> from flowkit.sde import GaussianScore
        >>> score = GaussianScore(torch.zeros(2), torch.eye(2), VPSDE())
        >>> rows = compare_samplers(score, torch.randn(50, 2), repeats=1,
        ...                         settings=[SamplerSetting("pc 10+10",
        ...                                   {"sampler": "pc", "n_steps": 10})])
        >>> rows[0].label, rows[0].nfe
        ('pc 10+10', 20.0)
    """
    if not settings:
        raise ValueError("settings is empty; give at least one SamplerSetting.")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}.")
    n = held_out.shape[0] if n_samples is None else n_samples
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}.")
    distances: list[list[float]] = [[] for _ in settings]
    seconds: list[list[float]] = [[] for _ in settings]
    nfes: list[list[int]] = [[] for _ in settings]
    for r in range(repeats):
        order = [(i + r) % len(settings) for i in range(len(settings))]
        for i in order:
            generator = torch.Generator(device=held_out.device).manual_seed(seed + r)
            options = dict(settings[i].options)
            _synchronize(held_out)
            start = time.perf_counter()
            result = sample(model, n, context=context, generator=generator, **options)
            _synchronize(held_out)
            seconds[i].append(time.perf_counter() - start)
            x = result.samples.to(held_out.dtype)
            distances[i].append(float(energy_distance(x, held_out, unbiased=True)))
            nfes[i].append(result.nfe)
    return [
        SamplerScore(
            label=setting.label,
            options=dict(setting.options),
            nfe=float(statistics.median(nfes[i])),
            energy_distance=statistics.median(distances[i]),
            seconds=statistics.median(seconds[i]),
            energy_distances=distances[i],
            all_seconds=seconds[i],
            all_nfe=nfes[i],
        )
        for i, setting in enumerate(settings)
    ]
