"""The augmented continuity-equation dynamics of a continuous normalizing flow.

For the state ``(x, delta_logp, *penalties)`` the right-hand side is
``(f(t, x), -tr(df/dx), *rates)``: the change of log-density along a path
obeys ``d log p_t(x(t)) / dt = -tr(df/dx)`` (GUIDE §1). ``delta_logp`` starts
at zero where a solve starts, so at its end it holds
``log p_end(x_end) - log p_start(x_start)``, in either direction of time; the
model turns that into a log-density in :mod:`flowkit.cnf`.

The vector-field contract (``forward(t, x)`` returning a tensor of ``x``'s
shape ``(batch, dim)`` and dtype) is checked here, by
:func:`check_field_signature` when a model is built and by
:func:`check_field_output` on what the field returns, so that a field breaking
it raises :class:`~flowkit.errors.PluginContractError` naming the field and
the contract, not an ``IndexError`` or ``TypeError`` from deep inside a trace
estimator.

A conditional CNF carries a context per sample to the field. The model binds
it into the field once per solve with :class:`BoundContext`, whose
``forward(t, x)`` calls ``field(t, x, context=context)``: trace estimators,
regularizers and gradient strategies, which call ``field(t, x)``, pass it
through unchanged. :func:`check_field_takes_context` checks, at the model's
boundary, that a field given a context can take one.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from flowkit.errors import FlowkitError, InvalidInputError, PluginContractError
from flowkit.interfaces import Regularizer, TraceEstimator

__all__ = [
    "BoundContext",
    "CNFDynamics",
    "FieldDynamics",
    "check_field_output",
    "check_field_signature",
    "check_field_takes_context",
]

FIELD_CONTRACT = (
    "a vector field is an nn.Module whose forward(t, x) takes a 0-dim time tensor t and a "
    "batch x of shape (batch, dim) and returns a tensor of the same shape and dtype"
)


def _field_name(field: object) -> str:
    name = getattr(field, "registry_name", None)
    cls = type(field).__name__
    return f"{name!r} ({cls})" if name else cls


def _field_error(field: object, problem: str) -> PluginContractError:
    return PluginContractError(
        f"The vector field {_field_name(field)} {problem}; {FIELD_CONTRACT}.",
        component=getattr(field, "registry_name", None) or type(field).__name__,
        contract="forward(t, x) -> tensor of shape (batch, dim)",
    )


def check_field_signature(field: nn.Module) -> None:
    """Check that ``field.forward`` can be called as ``forward(t, x)``.

    Raises:
        PluginContractError: naming the field and the contract ``forward(t, x)``.
    """
    try:
        signature = inspect.signature(field.forward)
    except (TypeError, ValueError):  # builtins and C extensions: nothing to check
        return
    try:
        signature.bind(torch.zeros(()), torch.zeros(1, 1))
    except TypeError:
        raise _field_error(
            field, f"has forward{signature}, which cannot be called as forward(t, x)"
        ) from None


def check_field_output(field: nn.Module, x: Tensor, out: object) -> Tensor:
    """Check that ``field(t, x)`` returned a tensor of ``x``'s shape and dtype.

    Returns:
        ``out``, unchanged.

    Raises:
        PluginContractError: naming the field, what it returned and the contract.
    """
    if not isinstance(out, Tensor):
        raise _field_error(field, f"returned {type(out).__name__}, not a tensor")
    if out.shape != x.shape:
        raise _field_error(
            field,
            f"returned shape {tuple(out.shape)} for x of shape {tuple(x.shape)}",
        )
    if out.dtype != x.dtype:
        raise _field_error(field, f"returned dtype {out.dtype} for x of dtype {x.dtype}")
    return out


def _takes_context(method: object) -> bool:
    """Whether ``method`` can be called with a ``context=`` keyword."""
    try:
        params = inspect.signature(method).parameters  # type: ignore[arg-type]
    except (TypeError, ValueError):  # builtins and C extensions: assume it can
        return True
    return "context" in params or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
    )


def check_field_takes_context(field: nn.Module) -> None:
    """Check that ``field`` can be called as ``forward(t, x, context=...)``.

    A field with a closed-form divergence must take the context there too
    (``divergence(t, x, context=...)``).

    Raises:
        InvalidInputError: naming the field and how to make it conditional.
    """
    if not _takes_context(field.forward):
        raise InvalidInputError(
            f"A context was given, but the vector field {_field_name(field)} takes none: its "
            "forward has no `context` parameter. Drop the context, or use a conditional field "
            "(a built-in field with context_dim=c, or forward(t, x, context=None))."
        )
    if getattr(field, "has_divergence", False) and not _takes_context(field.divergence):
        raise InvalidInputError(
            f"A context was given, but the closed-form divergence of the vector field "
            f"{_field_name(field)} takes none; give its divergence a `context` parameter "
            "(divergence(t, x, context=None)), or drop the context."
        )


class BoundContext(nn.Module):
    """A field with its context bound: ``forward(t, x) = field(t, x, context=context)``.

    The context is a constant input of the solve (one row per sample of the
    batch being solved, not differentiated with respect to ``x``), so trace
    estimators and regularizers, which call ``field(t, x)``, need no change.
    ``has_divergence`` is the field's; :meth:`divergence` and
    :meth:`value_and_divergence` pass the context to the field's. The field's
    parameters are this module's; the context is not a parameter: a gradient
    strategy that should differentiate it is given it explicitly (see
    :meth:`flowkit.CNF.pull_back`).

    Arguments:
        field: the conditional vector field.
        context: the context, shape ``(batch, c)``.

    Example:
        >>> import torch
        >>> from flowkit.plugins.vector_fields import LinearField
        >>> field = LinearField(dim=2, context_dim=1, matrix=torch.zeros(2, 2),
        ...                     context_matrix=torch.ones(2, 1))
        >>> BoundContext(field, torch.tensor([[1.0], [2.0]]))(torch.tensor(0.0), torch.zeros(2, 2))
        tensor([[1., 1.],
                [2., 2.]], grad_fn=<AddBackward0>)
    """

    def __init__(self, field: nn.Module, context: Tensor) -> None:
        super().__init__()
        self.field = field
        self.context = context
        self.has_divergence = bool(getattr(field, "has_divergence", False))
        name = getattr(field, "registry_name", None)
        if name is not None:
            self.registry_name = name
        field_dim = getattr(field, "dim", None)
        if field_dim is not None:
            self.dim = field_dim

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        """``field(t, x, context=context)``."""
        return self.field(t, x, context=self.context)  # type: ignore[no-any-return]

    def divergence(self, t: Tensor, x: Tensor) -> Tensor:
        """``field.divergence(t, x, context=context)``.

        Raises:
            TypeError: when the field has no closed-form divergence.
        """
        if not self.has_divergence:
            raise TypeError(
                f"The vector field {_field_name(self.field)} has no closed-form divergence "
                "(has_divergence=False); use the 'exact' or 'hutchinson' trace estimator."
            )
        return self.field.divergence(t, x, context=self.context)  # type: ignore[no-any-return]

    def value_and_divergence(self, t: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(f(t, x), tr(df/dx))`` with the context, in one pass when the field offers one."""
        both = getattr(self.field, "value_and_divergence", None)
        if callable(both) and _takes_context(both):
            return both(t, x, context=self.context)  # type: ignore[no-any-return]
        return self.forward(t, x), self.divergence(t, x)


class FieldDynamics(nn.Module):
    """The bare field as ODE dynamics, ``dx/dt = f(t, x)``, checking what it returns.

    Used to transform points without the change of log-density; its parameters
    are the field's, so every gradient strategy finds them.

    Arguments:
        field: the vector field.
    """

    def __init__(self, field: nn.Module) -> None:
        super().__init__()
        self.field = field

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        """``f(t, x)``.

        Raises:
            PluginContractError: when the field's output breaks its contract.
        """
        return check_field_output(self.field, x, self.field(t, x))


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
        try:
            dx, div = self.trace.estimate(self.field, t, x, self.trace_probes)
        except FlowkitError:
            raise
        except Exception as exc:
            self._diagnose_field(t, x, exc)
            raise
        check_field_output(self.field, x, dx)
        if not isinstance(div, Tensor) or div.shape != x.shape[:1]:
            got = tuple(div.shape) if isinstance(div, Tensor) else type(div).__name__
            raise PluginContractError(
                f"The trace estimator {_field_name(self.trace)} returned a divergence of "
                f"shape {got} for a batch of {x.shape[0]}; estimate(field, t, x, probes) must "
                "return (f(t, x), divergence of shape (batch,)).",
                component=getattr(self.trace, "registry_name", None) or type(self.trace).__name__,
                contract="estimate() -> (f of shape (batch, dim), divergence of shape (batch,))",
            )
        # The continuity equation, GUIDE §1: d log p_t(x(t)) / dt = -tr(df/dx).
        # This is the one place in flowkit where that sign is written.
        dlogp = -div
        rates = tuple(
            r.rate(self.field, t, x, dx, p)
            for r, p in zip(self.regularizers, self.regularizer_probes, strict=True)
        )
        return (dx, dlogp, *rates)

    def _diagnose_field(self, t: Tensor, x: Tensor, exc: Exception) -> None:
        """After a trace estimator failed, blame the field if it breaks its contract."""
        try:
            with torch.enable_grad():
                out = self.field(t.detach(), x.detach())
        except Exception:
            return  # the field fails on its own: its original error is the clearest
        try:
            check_field_output(self.field, x, out)
        except PluginContractError as contract:
            raise contract from exc
