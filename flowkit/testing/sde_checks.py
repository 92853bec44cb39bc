"""The SDE checker: the contract every noising process (plugin kind ``sde``) must meet.

:func:`check_sde` holds an SDE to the contract of :class:`flowkit.interfaces.SDE`:
its perturbation kernel ``N(alpha(s) x0, sigma(s)^2 I)`` must be the exact law
of the SDE ``dx = a(s) x ds + g(s) dw`` started at ``x0``. Plugin authors run it
on their own SDEs; the built-ins (``vp``, ``subvp``, ``ve``) pass the same check.

Example:
    >>> from flowkit.testing.sde_checks import check_sde
    >>> check_sde("vp")
    ['contract', 'shapes', 'moment equations', 'kernel moments', 'prior']
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from flowkit.registry import Registry
from flowkit.testing.conformance.common import (
    ConformanceError,
    ConformanceTarget,
    build_target,
    target_label,
)
from flowkit.testing.tolerances import statistical_bound

__all__ = ["check_sde", "simulate_moments"]

_CHECK_FRACTIONS = (0.02, 0.1, 0.3, 0.6, 1.0)
"""Times (as fractions of ``end_time``) where the moment equations are checked."""

_SIMULATION_FRACTIONS = (0.1, 0.4, 1.0)
"""Times (as fractions of ``end_time``) where simulated moments are compared. Not
near 0: a diffusion vanishing at 0 (subVP) gives Euler-Maruyama a relative
variance bias of about ``h / s``, which ``n_steps`` keeps below 1 % from 0.1 T on."""

_MOMENT_RTOL = 1e-9
"""Relative bound on the moment equations: autograd derivatives of closed forms
agree to round-off (float64), far below any modelling error."""


def _affine_rate(sde: Any, s: Tensor, dim: int) -> Tensor:
    """``a(s)`` of a drift ``f(x, s) = a(s) x``, read off the drift at the unit vectors."""
    eye = torch.eye(dim, dtype=s.dtype)
    origin = torch.zeros(1, dim, dtype=s.dtype)
    return torch.diagonal(sde.drift(eye, s) - sde.drift(origin, s)).mean()


def simulate_moments(
    sde: Any,
    x0: Tensor,
    times: list[float],
    *,
    n_paths: int = 4000,
    n_steps: int = 2000,
    generator: torch.Generator | None = None,
) -> list[tuple[Tensor, Tensor]]:
    """Sample means and variances of the SDE started at ``x0``, by Euler-Maruyama.

    Arguments:
        sde: the SDE.
        x0: the start, shape ``(dim,)``.
        times: increasing diffusion times in ``(0, end_time]`` to report.
        n_paths: independent paths.
        n_steps: equal Euler-Maruyama steps over ``[0, max(times)]`` (weak order 1:
            the moments' bias is ``O(1 / n_steps)``).
        generator: the noise's random generator.

    Returns:
        One ``(mean, variance)`` per time, each of shape ``(dim,)`` (per coordinate).
    """
    end = max(times)
    h = end / n_steps
    x = x0.expand(n_paths, x0.shape[0]).clone()
    marks = {min(n_steps, max(1, round(t / h))): t for t in times}
    out: dict[float, tuple[Tensor, Tensor]] = {}
    for k in range(n_steps):
        s = torch.tensor(k * h, dtype=x.dtype)
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        x = x + sde.drift(x, s) * h + sde.diffusion(s) * math.sqrt(h) * noise
        if k + 1 in marks:
            out[marks[k + 1]] = (x.mean(0), x.var(0))
    return [out[t] for t in times]


def check_sde(
    sde: ConformanceTarget,
    *,
    options: dict[str, Any] | None = None,
    dim: int = 2,
    n_paths: int = 4000,
    n_steps: int = 2000,
    seed: int = 0,
    registry: Registry | None = None,
) -> list[str]:
    """Check an SDE against the :class:`~flowkit.interfaces.SDE` contract, in float64.

    Properties, in order:

    * ``contract``: ``0 <= start_time < end_time``; the drift is linear,
      ``f(x, s) = a(s) x`` (what the Gaussian kernel needs);
    * ``shapes``: for one time (0-d) and one time per sample (shape
      ``(batch,)``), in float32 and float64: ``drift`` has ``x``'s shape and
      dtype, ``diffusion`` and both parts of ``kernel`` have ``s``'s shape,
      ``marginal`` gives a mean of ``x0``'s shape and a std that broadcasts
      against it, and per-sample times give row ``b`` the values of time ``s_b``;
    * ``moment equations``: the kernel solves the Fokker-Planck equation's
      moment equations, ``d alpha/ds = a alpha`` and
      ``d sigma^2/ds = 2 a sigma^2 + g^2`` (autograd in ``s``, to round-off),
      from ``alpha(0) = 1``, ``sigma(0) = 0`` (the law at time 0 is the point
      ``x0``);
    * ``kernel moments``: Euler-Maruyama simulation from a fixed ``x0``
      (:func:`simulate_moments`) has, at a few times, means and variances within
      4 standard errors of ``alpha x0`` and ``sigma^2`` (the discretisation bias,
      ``O(1 / n_steps)``, is far smaller);
    * ``prior``: ``prior(dim)`` has ``log_prob`` of shape ``(n,)`` (finite) and
      ``sample((n,))`` of shape ``(n, dim)``.

    Arguments:
        sde: a registered name, an SDE class, or an instance.
        options: options for a name or class.
        dim: the state dimension used.
        n_paths, n_steps: the simulation's size (4000 paths: variances to
            about 2 %; 2000 steps: a bias well below that).
        seed: seeds the simulation, so the check is deterministic.
        registry: resolves a name (default: the global registry).

    Returns:
        The names of the verified properties.

    Raises:
        ConformanceError: naming the first broken property.
        TypeError: options given together with an instance.
    """
    label = target_label(sde)
    process = build_target("sde", sde, dict(options or {}), registry)
    checked: list[str] = []

    _check_contract(label, process, dim)
    checked.append("contract")
    _check_shapes(label, process, dim)
    checked.append("shapes")
    _check_moment_equations(label, process, dim)
    checked.append("moment equations")
    _check_kernel_moments(label, process, dim, n_paths, n_steps, seed)
    checked.append("kernel moments")
    _check_prior(label, process, dim)
    checked.append("prior")
    return checked


def _check_contract(label: str, sde: Any, dim: int) -> None:
    start, end = getattr(sde, "start_time", None), getattr(sde, "end_time", None)
    if not (isinstance(start, float) and isinstance(end, float) and 0 <= start < end):
        raise ConformanceError(
            label, "contract", f"need floats 0 <= start_time < end_time, got {start!r}, {end!r}"
        )
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, dim, generator=gen, dtype=torch.float64)
    for fraction in _CHECK_FRACTIONS:
        s = torch.tensor(fraction * end, dtype=torch.float64)
        rate = _affine_rate(sde, s, dim)
        drift = sde.drift(x, s)
        if not torch.allclose(drift, rate * x, rtol=1e-12, atol=1e-12 * max(1.0, abs(rate))):
            raise ConformanceError(
                label,
                "contract",
                f"the drift at s={float(s):g} is not a(s) x (a scalar times the state); the "
                "Gaussian kernel N(alpha x0, sigma^2 I) needs a linear drift",
            )


def _check_shapes(label: str, sde: Any, dim: int) -> None:
    batch = 3
    for dtype in (torch.float32, torch.float64):
        x = torch.ones(batch, dim, dtype=dtype)
        times = torch.linspace(0.2, 0.9, batch, dtype=dtype) * sde.end_time
        for s in (times[1], times):
            what = f"{'0-d' if s.dim() == 0 else 'per-sample'} times in {dtype}"
            _expect(label, "drift", sde.drift(x, s), (batch, dim), dtype, what)
            _expect(label, "diffusion", sde.diffusion(s), tuple(s.shape), dtype, what)
            alpha, sigma = sde.kernel(s)
            _expect(label, "kernel alpha", alpha, tuple(s.shape), dtype, what)
            _expect(label, "kernel sigma", sigma, tuple(s.shape), dtype, what)
            mean, std = sde.marginal(x, s)
            _expect(label, "marginal mean", mean, (batch, dim), dtype, what)
            if torch.broadcast_shapes(std.shape, x.shape) != x.shape:
                raise ConformanceError(
                    label,
                    "shapes",
                    f"marginal std of shape {tuple(std.shape)} does not broadcast against "
                    f"x0 {tuple(x.shape)} ({what})",
                )
        # per-sample times: row b behaves as the single time s_b
        drift_rows = sde.drift(x, times)
        for b in range(batch):
            one = sde.drift(x[b : b + 1], times[b])
            if not torch.allclose(drift_rows[b : b + 1], one):
                raise ConformanceError(
                    label, "shapes", f"per-sample drift row {b} differs from time {times[b]:g}"
                )
            if not torch.allclose(sde.kernel(times)[1][b], sde.kernel(times[b])[1]):
                raise ConformanceError(
                    label, "shapes", f"per-sample kernel row {b} differs from time {times[b]:g}"
                )


def _expect(
    label: str, what: str, value: Any, shape: tuple[int, ...], dtype: torch.dtype, where: str
) -> None:
    if not isinstance(value, Tensor) or tuple(value.shape) != shape or value.dtype != dtype:
        got = (
            f"{tuple(value.shape)} {value.dtype}"
            if isinstance(value, Tensor)
            else type(value).__name__
        )
        raise ConformanceError(
            label, "shapes", f"{what} should be a {shape} {dtype} tensor, got {got} ({where})"
        )


def _check_moment_equations(label: str, sde: Any, dim: int) -> None:
    zero = torch.tensor(0.0, dtype=torch.float64)
    alpha0, sigma0 = sde.kernel(zero)
    if abs(float(alpha0) - 1.0) > 1e-12 or abs(float(sigma0)) > 1e-12:
        raise ConformanceError(
            label,
            "moment equations",
            f"the kernel at s=0 must be the point x0 (alpha=1, sigma=0), got alpha="
            f"{float(alpha0):.6g}, sigma={float(sigma0):.6g}; an approximate kernel (such as "
            "sigma_min * (sigma_max / sigma_min)**s for VE) is not the SDE's law",
        )
    for fraction in _CHECK_FRACTIONS:
        s = torch.tensor(fraction * sde.end_time, dtype=torch.float64, requires_grad=True)
        alpha, sigma = sde.kernel(s)
        d_alpha, d_variance = _derivative(alpha, s), _derivative(sigma**2, s)
        with torch.no_grad():
            a = _affine_rate(sde, s.detach(), dim)
            g2 = sde.diffusion(s.detach()) ** 2
            checks = (
                ("d alpha/ds = a alpha", d_alpha, a * alpha, abs(a * alpha)),
                (
                    "d sigma^2/ds = 2 a sigma^2 + g^2",
                    d_variance,
                    2 * a * sigma**2 + g2,
                    abs(2 * a * sigma**2) + g2,
                ),
            )
        for name, lhs, rhs, scale in checks:
            lhs, rhs = lhs.detach(), rhs.detach()
            if abs(float(lhs - rhs)) > _MOMENT_RTOL * max(float(scale), 1e-300) + 1e-300:
                raise ConformanceError(
                    label,
                    "moment equations",
                    f"{name} fails at s={float(s.detach()):g}: {float(lhs):.10g} vs "
                    f"{float(rhs):.10g}; "
                    "the drift and diffusion do not produce this kernel",
                )


def _derivative(value: Tensor, s: Tensor) -> Tensor:
    """``d value / ds`` by autograd (zero for a value that does not depend on ``s``)."""
    if not value.requires_grad:
        return torch.zeros_like(value)
    (grad,) = torch.autograd.grad(value, s, retain_graph=True, allow_unused=True)
    return torch.zeros_like(value) if grad is None else grad


def _check_kernel_moments(
    label: str, sde: Any, dim: int, n_paths: int, n_steps: int, seed: int
) -> None:
    x0 = torch.linspace(-1.0, 1.5, dim, dtype=torch.float64)
    times = [f * sde.end_time for f in _SIMULATION_FRACTIONS]
    gen = torch.Generator().manual_seed(seed)
    simulated = simulate_moments(sde, x0, times, n_paths=n_paths, n_steps=n_steps, generator=gen)
    for s, (mean, variance) in zip(times, simulated, strict=True):
        alpha, sigma = sde.kernel(torch.tensor(s, dtype=torch.float64))
        want_mean, want_var = alpha * x0, sigma**2
        mean_se = float(sigma) / math.sqrt(n_paths)
        var_se = float(want_var) * math.sqrt(2.0 / (n_paths - 1))
        gap_mean = float((mean - want_mean).abs().max())
        gap_var = float((variance - want_var).abs().max())
        if gap_mean > statistical_bound(mean_se) or gap_var > statistical_bound(var_se):
            raise ConformanceError(
                label,
                "kernel moments",
                f"at s={s:g} the simulated mean {mean.tolist()} and variance "
                f"{variance.tolist()} differ from the kernel's {want_mean.tolist()} and "
                f"{float(want_var):.6g} by more than 4 standard errors (mean {mean_se:.3g}, "
                f"variance {var_se:.3g})",
            )


def _check_prior(label: str, sde: Any, dim: int) -> None:
    prior = sde.prior(dim)
    n = 5
    z = prior.sample((n,))
    if not isinstance(z, Tensor) or tuple(z.shape) != (n, dim):
        got = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
        raise ConformanceError(label, "prior", f"sample((5,)) has shape {got}, want (5, {dim})")
    log_prob = prior.log_prob(z)
    if tuple(log_prob.shape) != (n,) or not bool(torch.isfinite(log_prob).all()):
        raise ConformanceError(
            label, "prior", f"log_prob of 5 samples: want 5 finite values, got {log_prob}"
        )
