"""Built-in trace estimators: ``exact_loop``, ``exact``, ``hutchinson``, ``hutchpp``, ``analytic``.

Each returns ``(f(t, x), tr(df/dx))`` per sample, following
:class:`~flowkit.interfaces.TraceEstimator`: under grad mode the divergence
carries a second-order graph to ``x`` and the field's parameters; under
``torch.no_grad()`` a local graph is built and the results carry no history.
All rely on the rows of a batch being independent (the field contract), so one
vector-Jacobian product ``v^T df/dx`` over the batch gives every sample's
product at once.
"""

from __future__ import annotations

import warnings
import weakref
from typing import ClassVar

import torch
from flowkit.plugins.exact_trace_plan import exact_trace_plan
from torch import Tensor, nn

from flowkit.hookspecs import Register, hookimpl
from flowkit.interfaces import TraceEstimator

__all__ = [
    "AnalyticTrace",
    "ExactTrace",
    "ExactTraceLoop",
    "HutchPlusPlusTrace",
    "HutchinsonTrace",
    "PROBE_DISTRIBUTIONS",
    "flowkit_register_trace_estimators",
]

PROBE_DISTRIBUTIONS: tuple[str, ...] = ("rademacher", "gaussian")
"""Probe distributions of the stochastic estimators (zero mean, identity covariance)."""


def _local_input(x: Tensor) -> tuple[Tensor, bool]:
    """``x`` ready for differentiation, and whether results keep their graph.

    Under grad mode an ``x`` that already requires grad is used as is (so the
    divergence is differentiable with respect to it); otherwise a detached copy
    that requires grad gives the local graph the vector-Jacobian products need.
    """
    track = torch.is_grad_enabled()
    if track and x.requires_grad:
        return x, True
    return x.detach().requires_grad_(True), track


def _vjp(f: Tensor, x: Tensor, v: Tensor, create_graph: bool) -> Tensor:
    """``v^T df/dx`` row by row (zeros when ``f`` does not depend on ``x``)."""
    if not f.requires_grad:
        return torch.zeros_like(x)
    (g,) = torch.autograd.grad(
        f, x, v, create_graph=create_graph, retain_graph=True, allow_unused=True
    )
    return torch.zeros_like(x) if g is None else g


def _finish(f: Tensor, div: Tensor, track: bool) -> tuple[Tensor, Tensor]:
    return (f, div) if track else (f.detach(), div.detach())


def _check_probes(probes: Tensor | None, x: Tensor, name: str, count: int) -> Tensor:
    if probes is None:
        raise ValueError(
            f"The {name!r} trace estimator is stochastic and needs the probes of this solve; "
            "draw them once per solve with estimator.sample_probes(x, generator) and pass them "
            "to every estimate() call (flowkit.dynamics.CNFDynamics does this)."
        )
    expected = (count, *x.shape)
    if tuple(probes.shape) != expected:
        raise ValueError(
            f"Probes of shape {tuple(probes.shape)} do not fit a batch of shape "
            f"{tuple(x.shape)}; {name!r} expects {expected}. Draw new probes with "
            "sample_probes(x) when the batch changes."
        )
    return probes.to(dtype=x.dtype, device=x.device)


def _draw(
    shape: tuple[int, ...], x: Tensor, distribution: str, generator: torch.Generator | None
) -> Tensor:
    """Zero-mean, identity-covariance probes of ``shape`` in ``x``'s dtype and device."""
    if distribution == "gaussian":
        return torch.randn(shape, generator=generator, dtype=x.dtype, device=x.device)
    bits = torch.randint(0, 2, shape, generator=generator, device=x.device)
    return bits.to(x.dtype) * 2 - 1


def _check_distribution(distribution: str) -> str:
    if distribution not in PROBE_DISTRIBUTIONS:
        raise ValueError(
            f"Unknown probe distribution {distribution!r}; choose one of: "
            f"{', '.join(PROBE_DISTRIBUTIONS)}."
        )
    return distribution


def _check_count(n: object, name: str, minimum: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {n!r}.")
    return n


def _exact_by_loop(field: nn.Module, t: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    xl, track = _local_input(x)
    with torch.enable_grad():
        f = field(t, xl)
        columns = []
        for i in range(x.shape[1]):
            basis = torch.zeros_like(f)
            basis[:, i] = 1  # a fresh tensor: create_graph keeps it in the graph
            columns.append(_vjp(f, xl, basis, track)[:, i])
        div = sum(columns[1:], columns[0])
    return _finish(f, div, track)


class ExactTraceLoop(TraceEstimator):
    """The exact divergence from one vector-Jacobian product per dimension.

    Costs ``dim`` backward passes per call; the reference the vectorised
    ``exact`` estimator is checked and benchmarked against. Works for any field.
    """

    def estimate(
        self, field: nn.Module, t: Tensor, x: Tensor, probes: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Return ``(f(t, x), tr(df/dx))`` with ``dim`` vector-Jacobian products."""
        return _exact_by_loop(field, t, x)


class ExactTrace(TraceEstimator):
    """The exact divergence, by whichever of vectorised passes and the loop is faster.

    The same ``dim`` vector-Jacobian products as ``exact_loop``, computed one of
    two ways: ``torch.func.vjp`` evaluates the field once and ``torch.func.vmap``
    maps its pullback over the basis vectors (each spread over the batch), in
    passes of ``chunk`` of them, giving every sample's Jacobian rows in batched
    backward passes; or the loop of ``exact_loop``. The values agree to
    round-off. The result composes with ordinary autograd, so it is
    differentiable (second order) under grad mode and detached under
    ``torch.no_grad()``.

    Choice (``method="auto"``): :func:`~flowkit.plugins.exact_trace_plan.exact_trace_plan`
    by dimension, batch and device. Vectorised passes save the per-product
    overhead (launches on a GPU, Python and autograd set-up on a CPU) but hold
    ``chunk`` times the backward's working set; on a CPU they win while the
    pass stays small: ``exact`` uses the loop at ``dim <= 2``, one pass while
    ``dim * batch <= 4096``, passes of ``2048 // batch`` basis vectors above
    that when there are at least 8, and the loop otherwise (so for ``dim >= 16``
    at batches above 256). Measured with ``benchmarks/divergence.py`` (the
    README's benchmark section has the figures, one thread, ``mlp`` 64-64-64):
    where the rule takes vectorised passes they ran 1.06x to 1.9x as fast as
    the loop at ``d`` from 8 to 128; elsewhere ``exact`` is the loop.

    Fallback: a field that ``torch.func`` cannot transform (for instance one
    using a custom ``torch.autograd.Function`` without vmap support) is
    evaluated with the loop instead, with a ``RuntimeWarning``; the value is the
    same, only slower. The same happens inside contexts ``torch.func`` refuses,
    such as saved-tensor hooks (``torch.utils.checkpoint`` around the field).

    Arguments:
        chunk_size: basis vectors per vectorised pass; setting it forces the
            vectorised path (to bound its memory, ``O(chunk_size * batch *
            width)``); ``None``: chosen by ``method``.
        method: ``"auto"`` (the rule above), ``"vectorised"`` (all basis
            vectors in one pass) or ``"loop"`` (as ``exact_loop``).

    Raises:
        ValueError: for an unknown ``method``, a ``chunk_size`` below 1, or a
            ``chunk_size`` with ``method="loop"``.

    Example:
        >>> import torch
        >>> field = lambda t, x: x * x.sum(-1, keepdim=True)
        >>> x = torch.ones(3, 4)
        >>> ExactTrace().estimate(field, torch.tensor(0.0), x)[1]  # (dim + 1) * sum(x)
        tensor([20., 20., 20.])
        >>> ExactTrace().plan(x), ExactTrace(method="loop").plan(x)
        (4, None)
    """

    METHODS: ClassVar[tuple[str, ...]] = ("auto", "vectorised", "loop")
    _fallback_fields: ClassVar[weakref.WeakSet[nn.Module]] = weakref.WeakSet()

    def __init__(self, *, chunk_size: int | None = None, method: str = "auto") -> None:
        if method not in self.METHODS:
            raise ValueError(
                f"Unknown method {method!r} of the 'exact' trace; choose one of: "
                f"{', '.join(self.METHODS)}."
            )
        self.chunk_size = None if chunk_size is None else _check_count(chunk_size, "chunk_size", 1)
        if method == "loop" and self.chunk_size is not None:
            raise ValueError(
                "chunk_size sets the vectorised passes, which method='loop' does not use; "
                "drop chunk_size or choose method='auto' or 'vectorised'."
            )
        self.method = method

    def plan(self, x: Tensor) -> int | None:
        """Basis vectors per vectorised pass for the batch ``x``, or ``None`` for the loop."""
        batch, dim = x.shape
        if self.method == "loop":
            return None
        if self.chunk_size is not None:
            return min(self.chunk_size, dim)
        if self.method == "vectorised":
            return dim
        return exact_trace_plan(batch, dim, x.device)

    def estimate(
        self, field: nn.Module, t: Tensor, x: Tensor, probes: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Return ``(f(t, x), tr(df/dx))`` as :meth:`plan` says."""
        chunk = self.plan(x)
        if chunk is None or (isinstance(field, nn.Module) and field in self._fallback_fields):
            return _exact_by_loop(field, t, x)
        try:
            return self._vectorised(field, t, x, chunk)
        except (RuntimeError, NotImplementedError, TypeError) as exc:
            # Saved-tensor hooks (e.g. activation checkpointing) are a property of the
            # calling context, not of the field: only remember field-specific failures.
            if isinstance(field, nn.Module) and "saved tensor hooks" not in str(exc):
                self._fallback_fields.add(field)
            warnings.warn(
                f"'exact' trace: torch.func cannot transform {type(field).__name__} "
                f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); using one "
                "vector-Jacobian product per dimension instead (same value, slower).",
                RuntimeWarning,
                stacklevel=2,
            )
            return _exact_by_loop(field, t, x)

    def _vectorised(
        self, field: nn.Module, t: Tensor, x: Tensor, chunk: int
    ) -> tuple[Tensor, Tensor]:
        track = torch.is_grad_enabled()
        xin = x if track else x.detach()
        f, pullback = torch.func.vjp(lambda y: field(t, y), xin)
        batch, dim = x.shape
        basis = torch.eye(dim, dtype=f.dtype, device=f.device).unsqueeze(1).expand(dim, batch, dim)
        passes = None if chunk >= dim else chunk
        (rows,) = torch.func.vmap(pullback, chunk_size=passes)(basis)
        div = torch.diagonal(rows, dim1=0, dim2=2).sum(-1)
        return _finish(f, div, track)


class HutchinsonTrace(TraceEstimator):
    """Hutchinson's unbiased estimate ``mean_k eps_k^T (df/dx) eps_k``.

    Probes of shape ``(n_probes, batch, dim)`` are drawn once per solve by
    :meth:`sample_probes` (seedable through a ``torch.Generator``) and reused by
    every call of that solve. Costs ``n_probes`` vector-Jacobian products.

    Arguments:
        n_probes: probes per sample (the estimate averages them).
        distribution: ``"rademacher"`` (random signs, lower variance) or ``"gaussian"``.

    References:
        Hutchinson, "A stochastic estimator of the trace of the influence matrix
        for Laplacian smoothing splines", 1989; Grathwohl et al., "FFJORD", ICLR 2019.
    """

    stochastic = True

    def __init__(self, *, n_probes: int = 1, distribution: str = "rademacher") -> None:
        self.n_probes = _check_count(n_probes, "n_probes", 1)
        self.distribution = _check_distribution(distribution)

    def sample_probes(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``(n_probes, batch, dim)`` probes in ``x``'s dtype and device."""
        return _draw((self.n_probes, *x.shape), x, self.distribution, generator)

    def estimate(
        self, field: nn.Module, t: Tensor, x: Tensor, probes: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Return ``(f(t, x), Hutchinson estimate of tr(df/dx))``."""
        eps = _check_probes(probes, x, "hutchinson", self.n_probes)
        xl, track = _local_input(x)
        with torch.enable_grad():
            f = field(t, xl)
            if self.n_probes == 1:  # no sum from 0, no division by 1: two ops fewer per call
                e = eps[0]
                div = (_vjp(f, xl, e, track) * e).sum(-1)
            else:
                div = sum((_vjp(f, xl, e, track) * e).sum(-1) for e in eps) / self.n_probes
        return _finish(f, div, track)  # type: ignore[arg-type]


class HutchPlusPlusTrace(TraceEstimator):
    """Hutch++: an exact trace on a sketched subspace plus Hutchinson on the rest.

    With a budget of ``m = n_probes`` vector-Jacobian products and
    ``k = m // 3``: for each sample ``b`` with ``A_b = (df/dx)_b^T``,
    ``Q_b = orth(A_b S_b)`` from ``k`` sketch probes ``S_b``;
    ``tr(Q_b^T A_b Q_b)`` costs at most ``k`` more products; Hutchinson with the
    remaining ``m - 2k`` probes ``G_b``, projected onto the orthogonal
    complement of ``Q_b``, estimates the rest. Unbiased for any ``Q_b``, and of
    much lower variance than Hutchinson when the Jacobian has a dominant
    low-rank part.

    Per-sample adaptation: the probes ``S`` and ``G`` (Rademacher) are drawn
    once per solve, shape ``(m - k, batch, dim)``; every function evaluation
    recomputes each sample's own ``Q_b`` from its current Jacobian with one
    batched QR, so the right-hand side stays a deterministic function of
    ``(t, x)``. ``Q_b`` is treated as a constant when differentiating: the
    estimate is then linear in the Jacobian, its gradient an unbiased estimate
    of the gradient of the trace, and no QR backward is needed. When
    ``dim <= k`` the sketch spans everything and the estimate is exact.

    Arguments:
        n_probes: the budget ``m >= 3`` of vector-Jacobian products per call.

    References:
        Meyer, Musco, Musco and Woodruff, "Hutch++: Optimal Stochastic Trace
        Estimation", SOSA 2021.
    """

    stochastic = True

    def __init__(self, *, n_probes: int = 3) -> None:
        self.n_probes = _check_count(n_probes, "n_probes", 3)
        self.n_sketch = self.n_probes // 3
        self.n_hutchinson = self.n_probes - 2 * self.n_sketch

    def sample_probes(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Draw the ``(n_probes - n_probes // 3, batch, dim)`` sketch and Hutchinson probes."""
        return _draw((self.n_sketch + self.n_hutchinson, *x.shape), x, "rademacher", generator)

    def estimate(
        self, field: nn.Module, t: Tensor, x: Tensor, probes: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Return ``(f(t, x), Hutch++ estimate of tr(df/dx))``."""
        eps = _check_probes(probes, x, "hutchpp", self.n_sketch + self.n_hutchinson)
        sketch, rest = eps[: self.n_sketch], eps[self.n_sketch :]
        xl, track = _local_input(x)
        with torch.enable_grad():
            f = field(t, xl)
            # A S for every sample: (batch, dim, k); only its range matters, so no graph.
            ys = torch.stack([_vjp(f, xl, s, False) for s in sketch], dim=-1)
            q = torch.linalg.qr(ys.detach(), mode="reduced").Q  # (batch, dim, k')
            basis = q.permute(2, 0, 1)  # (k', batch, dim)
            low_rank = sum((_vjp(f, xl, v, track) * v).sum(-1) for v in basis)
            coeff = torch.einsum("bdk,rbd->rbk", q, rest)
            projected = rest - torch.einsum("bdk,rbk->rbd", q, coeff)
            remainder = sum((_vjp(f, xl, g, track) * g).sum(-1) for g in projected)
            div = low_rank + remainder / self.n_hutchinson
        return _finish(f, div, track)  # type: ignore[arg-type]


class AnalyticTrace(TraceEstimator):
    """The field's own closed-form divergence (``field.divergence(t, x)``).

    Only for fields with ``has_divergence = True``; the compatibility function
    refuses any other field. A field that also offers
    ``value_and_divergence(t, x)`` (as ``mlp`` does) is evaluated with it, in
    one pass.
    """

    requires_divergence = True

    def estimate(
        self, field: nn.Module, t: Tensor, x: Tensor, probes: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Return ``(f(t, x), field.divergence(t, x))``.

        Raises:
            TypeError: if the field has no ``divergence`` method.
        """
        divergence = getattr(field, "divergence", None)
        if not getattr(field, "has_divergence", False) or divergence is None:
            raise TypeError(
                f"{type(field).__name__} has no closed-form divergence (has_divergence=False); "
                "use the 'exact' or 'hutchinson' trace estimator."
            )
        both = getattr(field, "value_and_divergence", None)
        if callable(both):
            return both(t, x)  # type: ignore[no-any-return]
        return field(t, x), divergence(t, x)


@hookimpl
def flowkit_register_trace_estimators(register: Register) -> None:
    """Register the built-in trace estimators."""
    register("exact_loop", ExactTraceLoop, aliases=("brute_force",))
    register("exact", ExactTrace, aliases=("exact_vmap",))
    register("hutchinson", HutchinsonTrace, aliases=("hutch",))
    register("hutchpp", HutchPlusPlusTrace, aliases=("hutch_plus_plus",))
    register("analytic", AnalyticTrace, aliases=("closed_form",))
