"""The augmented continuity-equation dynamics of a continuous normalizing flow.

For the state ``(x, delta_logp, *penalties)`` the right-hand side is
``(f(t, x), -tr(df/dx), *rates)``: the change of log-density along a path
obeys ``d log p_t(x(t)) / dt = -tr(df/dx)`` (GUIDE §1). ``delta_logp`` starts
at zero where a solve starts, so at its end it holds
``log p_end(x_end) - log p_start(x_start)``, in either direction of time; the
model turns that into a log-density in :mod:`flowkit.cnf`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from flowkit.interfaces import Regularizer, TraceEstimator

__all__ = ["CNFDynamics"]


class CNFDynamics(nn.Module):
    """``d/dt (x, delta_logp, *penalties) = (f(t, x), -div, *rates)`` for one solve.

    A stochastic trace estimator (and a stochastic regularizer) needs the same
    probes at every evaluation of a solve, forward and backward (an adaptive
    solver needs a deterministic right-hand side; an adjoint must re-evaluate
    the very function it solved). :meth:`prepare` draws them once; one
    ``CNFDynamics`` serves one solve and keeps its probes for as long as a
    backward pass may use it, which is why the model builds a fresh one per
    solve (two solves before one ``backward()`` would otherwise share probes).

    Arguments:
        field: the vector field, any ``nn.Module`` with ``forward(t, x)``.
        trace: the trace estimator.
        regularizers: penalties integrated as extra states, each a
            :class:`~flowkit.interfaces.Regularizer` whose rate has shape ``(batch,)``.

    Example:
        >>> import torch
        >>> from flowkit.plugins.vector_fields import LinearField
        >>> from flowkit.plugins.trace_estimators import ExactTrace
        >>> field = LinearField(dim=2, matrix=torch.eye(2))
        >>> dyn = CNFDynamics(field, ExactTrace()).prepare(torch.zeros(3, 2))
        >>> dx, dlogp = dyn(torch.tensor(0.0), (torch.ones(3, 2), torch.zeros(3)))
        >>> dlogp.tolist()
        [-2.0, -2.0, -2.0]
    """

    def __init__(
        self,
        field: nn.Module,
        trace: TraceEstimator,
        regularizers: Sequence[Regularizer] = (),
    ) -> None:
        super().__init__()
        self.field = field
        self.trace = trace
        self.regularizers = tuple(regularizers)
        self.trace_probes: Tensor | None = None
        self.regularizer_probes: tuple[Tensor | None, ...] = (None,) * len(self.regularizers)
        self._prepared = False

    @property
    def n_states(self) -> int:
        """The number of state leaves: ``x``, ``delta_logp`` and one per regularizer."""
        return 2 + len(self.regularizers)

    def prepare(self, x: Tensor, generator: torch.Generator | None = None) -> CNFDynamics:
        """Draw this solve's probes for the batch ``x``; returns ``self``.

        Arguments:
            x: the initial batch, shape ``(batch, dim)``.
            generator: the random generator to draw from (default: torch's global one).
        """
        with torch.no_grad():
            self.trace_probes = self.trace.sample_probes(x, generator)
            self.regularizer_probes = tuple(
                r.sample_probes(x, generator) for r in self.regularizers
            )
        self._prepared = True
        return self

    def initial_state(self, x: Tensor, logp: Tensor | None = None) -> tuple[Tensor, ...]:
        """``(x, delta_logp, *penalties)`` at the start of a solve (zeros unless ``logp``)."""
        zeros = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        return (x, zeros if logp is None else logp, *([zeros] * len(self.regularizers)))

    def forward(self, t: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """The time derivative of ``(x, delta_logp, *penalties)``.

        Raises:
            RuntimeError: if :meth:`prepare` was not called for this solve.
        """
        if not self._prepared:
            raise RuntimeError(
                "CNFDynamics.prepare(x, generator) must be called once before a solve, "
                "so that stochastic estimators draw their probes once per solve."
            )
        x = state[0]
        if self.regularizers and torch.is_grad_enabled() and not x.requires_grad:
            x = x.detach().requires_grad_(True)  # Jacobian penalties need dx's graph to x
        dx, div = self.trace.estimate(self.field, t, x, self.trace_probes)
        # The continuity equation, GUIDE §1: d log p_t(x(t)) / dt = -tr(df/dx).
        # This is the one place in flowkit where that sign is written.
        dlogp = -div
        rates = tuple(
            r.rate(self.field, t, x, dx, p)
            for r, p in zip(self.regularizers, self.regularizer_probes, strict=True)
        )
        return (dx, dlogp, *rates)
