"""Sample quality for ``benchmarks/objectives.py``: model samples against held-out data.

* :data:`SAMPLERS`: the integrators samples are drawn with (dopri5 at 1e-5 and 1e-3,
  4 fixed Euler and midpoint steps).
* :func:`sample_distances`: the unbiased energy distance and the sliced W2
  (:mod:`flowkit.metrics`) between two point sets.
* :func:`sample_quality`: those distances for a field's samples, per sampler, with
  each sampler's function evaluations; a probability flow field (a score model)
  is also sampled by :func:`score_samplers` (:func:`flowkit.sde.sample`: the
  reverse-time SDE and predictor-corrector).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from flowkit.cnf import CNF
from flowkit.metrics import energy_distance, sliced_wasserstein
from flowkit.sde import ProbabilityFlow, sample

__all__ = ["SAMPLERS", "SDE_STEPS", "sample_distances", "sample_quality", "score_samplers"]


SAMPLERS: dict[str, tuple[str, dict[str, Any]]] = {
    "dopri5_1e-5": ("dopri5", {"rtol": 1e-5, "atol": 1e-5}),
    "dopri5_1e-3": ("dopri5", {"rtol": 1e-3, "atol": 1e-3}),
    "euler_4": ("euler", {"n_steps": 4}),
    "midpoint_4": ("midpoint", {"n_steps": 4}),
}
"""The integrators samples are drawn with, by name."""

SDE_STEPS = 1000
"""The reverse-SDE steps of a score model's reference samples (Song et al.'s N)."""


def score_samplers(steps: int = SDE_STEPS) -> dict[str, dict[str, Any]]:
    """The stochastic samplers of a score model (:func:`flowkit.sde.sample`), by name:
    Euler-Maruyama on the reverse SDE with ``steps`` and ``steps // 10`` steps, and
    predictor-corrector at ``steps // 10`` (reverse diffusion and one Langevin step at
    snr 0.16 per time: 100 + 100 evaluations for the default)."""
    short = max(steps // 10, 1)
    return {
        "reverse_sde": {"sampler": "reverse_sde", "n_steps": steps},
        "reverse_sde_short": {"sampler": "reverse_sde", "n_steps": short},
        "pc": {"sampler": "pc", "n_steps": short},
    }


def sample_distances(x: Tensor, reference: Tensor, seed: int) -> dict[str, float]:
    """Unbiased energy distance and sliced W2 (256 projections, ``seed``), in float64."""
    x, reference = x.double(), reference.double()
    return {
        "energy_distance": float(energy_distance(x, reference, unbiased=True)),
        "sliced_w2": float(
            sliced_wasserstein(x, reference, 256, torch.Generator().manual_seed(seed))
        ),
    }


@torch.no_grad()
def sample_quality(
    field_: nn.Module,
    reference: Tensor,
    *,
    t1: float,
    n: int,
    seed: int,
    sde_steps: int = SDE_STEPS,
) -> dict[str, dict[str, float]]:
    """Distances between ``n`` samples of the flow of ``field_`` and ``reference``, per sampler.

    The same noise (``seed``) for every sampler and model; each entry also has the
    sampler's function evaluations (``nfe``).
    """
    dim = reference.shape[1]
    z = torch.randn(
        n, dim, generator=torch.Generator().manual_seed(seed), dtype=reference.dtype
    ).to(reference.device)
    prior = getattr(field_, "base_density", None)  # a probability flow: its SDE's prior
    if callable(prior):
        z = z * float(prior().std)
    out: dict[str, dict[str, float]] = {}
    for name, (integrator, options) in SAMPLERS.items():
        model = CNF(
            field_, integrator, "exact", "backprop", dim=dim, t1=t1, integrator_options=options
        )
        x = model.transform(z)
        stats = model.last_stats
        out[name] = {
            **sample_distances(x, reference, seed + 1),
            "nfe": stats.nfe if stats else None,
        }
    if isinstance(field_, ProbabilityFlow):
        model = CNF(field_, "dopri5", "exact", "backprop", dim=dim, t1=t1)
        for name, options in score_samplers(sde_steps).items():
            drawn = sample(model, n, generator=torch.Generator().manual_seed(seed), **options)
            out[name] = {
                **sample_distances(drawn.samples.to(reference.dtype), reference, seed + 1),
                "nfe": drawn.nfe,
            }
    return out
