"""The continuous normalizing flow model, :class:`CNF`.

A CNF maps base samples ``z`` at ``t0`` to data ``x`` at ``t1`` along
``dx/dt = f(t, x)``. :meth:`CNF.pull_back` integrates the augmented state
``(x, delta_logp)`` backward from ``t1`` to ``t0`` (GUIDE §1); sampling
integrates forward. A conditional CNF takes a ``context`` in every method
(``(batch, c)``, one row per sample, or ``(c,)``, the same for every sample):
it is checked at this boundary (:meth:`CNF.check_context`) and bound into the
field for each solve (:class:`flowkit.dynamics.BoundContext`), so every trace
estimator, regularizer and gradient strategy passes it through unchanged; a
context that requires grad receives its gradient from every strategy.

Every solve goes through :func:`flowkit.solve.solve` with the model's
integrator and gradient strategy, resolved once, at construction: the CNF
constructor is where names meet the registry.

Example:
    >>> import torch, flowkit
    >>> model = flowkit.CNF("mlp", "rk4", "exact", "backprop", dim=2,
    ...                     field_options={"hidden": (16,)},
    ...                     integrator_options={"n_steps": 4})
    >>> model.log_prob(torch.zeros(5, 2)).shape
    torch.Size([5])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from flowkit.cnf.base_density import StandardNormal
from flowkit.cnf.flow_model import FlowModel, FlowResult, check_count
from flowkit.cnf.inputs import check_context, check_points, check_time
from flowkit.compat import ensure_compatible
from flowkit.dynamics import (
    BoundContext,
    CNFDynamics,
    FieldDynamics,
    check_field_signature,
)
from flowkit.interfaces import (
    GaussianPrior,
    GradientStrategy,
    Integrator,
    Regularizer,
    TraceEstimator,
)
from flowkit.registry import Registry, get_registry
from flowkit.solution import SolverStats
from flowkit.solve import solve

__all__ = ["CNF"]


class CNF(FlowModel):
    """A continuous normalizing flow with pluggable field, solver, trace and gradients.

    Each component is a registered name (built with its ``*_options``) or an
    instance; any ``nn.Module`` with ``forward(t, x)`` serves as the field. The
    combination is checked at construction by
    :func:`flowkit.compat.ensure_compatible`.

    Arguments:
        field: the vector field.
        integrator: the ODE solver.
        trace: the trace (divergence) estimator.
        gradient: the gradient strategy.
        dim: the dimension of the data.
        base: the base distribution, any object with ``log_prob(z) -> (batch,)``
            and ``sample((n,))``; default: the field's own ``base_density()``
            when it has one (a probability flow field: its SDE's prior), else
            :class:`StandardNormal`. A base that
            is an ``nn.Module`` is registered (and moved with the model);
            samples of another base are converted to the model's dtype and device.
        t0, t1: the times of the base (``t0``) and of the data (``t1``).
        field_options, integrator_options, trace_options, gradient_options:
            options of components given by name (``dim`` is passed to a field
            built by name).
        regularizers: penalties integrated along the path (names or
            :class:`~flowkit.interfaces.Regularizer` instances), reported by
            :meth:`log_prob_and_regularization`.
        regularizer_options: options per regularizer given by name,
            ``{name: {option: value}}``.
        seed: seeds the model's own random generator (probes and base samples);
            ``None`` uses torch's global generator.
        registry: the registry to resolve names in (default: the global one);
            components that resolve names themselves are given it too.

    Raises:
        IncompatibleComponentsError: for a combination the compatibility
            function refuses, with its reason.
        UnknownComponentError: for an unknown component name.
        TypeError: for unknown options, or options given with an instance.
        ValueError: for a bad ``dim`` or time span.
        InvalidInputError: in the methods, for a bad batch or context (see
            :meth:`check_input` and :meth:`check_context`).
        PluginContractError: for a field whose ``forward`` cannot be called as
            ``forward(t, x)``; later, when the field returns anything but a
            tensor of shape ``(batch, dim)`` in the points' dtype, or an
            integrator returns states that break its contract.
    """

    def __init__(
        self,
        field: str | nn.Module,
        integrator: str | Integrator = "dopri5",
        trace: str | TraceEstimator = "hutchinson",
        gradient: str | GradientStrategy = "adjoint",
        *,
        dim: int,
        base: Any = None,
        t0: float = 0.0,
        t1: float = 1.0,
        field_options: Mapping[str, Any] | None = None,
        integrator_options: Mapping[str, Any] | None = None,
        trace_options: Mapping[str, Any] | None = None,
        gradient_options: Mapping[str, Any] | None = None,
        regularizers: Sequence[str | Regularizer] = (),
        regularizer_options: Mapping[str, Mapping[str, Any]] | None = None,
        seed: int | None = None,
        registry: Registry | None = None,
    ) -> None:
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}.")
        self.dim = dim
        self.t0 = check_time(t0, "t0")
        self.t1 = check_time(t1, "t1")
        if self.t0 == self.t1:
            raise ValueError(f"t0 and t1 must differ, both are {self.t0}.")
        reg = registry if registry is not None else get_registry()  # the edge: names resolve here
        self.field = self._resolve_field(reg, field, field_options)
        self.integrator = reg.resolve("integrator", integrator, dict(integrator_options or {}))
        self.trace = reg.resolve("trace_estimator", trace, dict(trace_options or {}))
        self.gradient = reg.resolve("gradient_strategy", gradient, dict(gradient_options or {}))
        self.regularizers = self._resolve_regularizers(reg, regularizers, regularizer_options)

        # Components given by name are described by their registry spec, so that the
        # compatibility function's reasons name them as the user did.
        def described(kind: str, given: object, built: object) -> object:
            return reg.get(kind, given) if isinstance(given, str) else built

        ensure_compatible(
            field=described("vector_field", field, self.field),
            integrator=described("integrator", integrator, self.integrator),
            trace=described("trace_estimator", trace, self.trace),
            gradient=described("gradient_strategy", gradient, self.gradient),
        )
        check_field_signature(self.field)
        if base is None:
            natural = getattr(self.field, "base_density", None)
            base = natural() if callable(natural) else StandardNormal(dim)
        elif not (
            callable(getattr(base, "log_prob", None)) and callable(getattr(base, "sample", None))
        ):
            raise TypeError(
                f"base must have log_prob(z) and sample(shape) methods, got {type(base).__name__}."
            )
        self.base = base
        self._seed = seed
        self._generators: dict[torch.device, torch.Generator] = {}
        self._last_stats: SolverStats | None = None

    # -- construction helpers -----------------------------------------------
    def _resolve_field(
        self, reg: Registry, field: str | nn.Module, options: Mapping[str, Any] | None
    ) -> nn.Module:
        if isinstance(field, str):
            opts = dict(options or {})
            accepted = reg.get("vector_field", field).options()
            if "dim" in opts and opts["dim"] != self.dim:
                raise ValueError(f"field_options dim={opts['dim']} differs from dim={self.dim}.")
            if accepted is None or "dim" in accepted:
                opts["dim"] = self.dim
            return reg.create("vector_field", field, **opts)  # type: ignore[no-any-return]
        if options:
            raise TypeError(
                "field_options were given with a field instance; configure the instance "
                "itself, or pass the field's registered name."
            )
        if not isinstance(field, nn.Module):
            raise TypeError(
                f"field must be a registered name or an nn.Module with forward(t, x), "
                f"got {type(field).__name__}."
            )
        field_dim = getattr(field, "dim", None)
        if isinstance(field_dim, int) and field_dim != self.dim:
            raise ValueError(f"The field has dim={field_dim} but the CNF has dim={self.dim}.")
        return field

    @staticmethod
    def _resolve_regularizers(
        reg: Registry,
        regularizers: Sequence[str | Regularizer],
        options: Mapping[str, Mapping[str, Any]] | None,
    ) -> tuple[Regularizer, ...]:
        if isinstance(regularizers, (str, Regularizer)):
            regularizers = (regularizers,)
        options = dict(options or {})
        names = [r for r in regularizers if isinstance(r, str)]
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise TypeError(
                f"regularizer_options for {unknown}, which are not among the regularizers "
                f"given by name ({names or 'none'}); key options by the regularizer's name."
            )
        built = []
        for r in regularizers:
            if isinstance(r, str):
                built.append(reg.create("regularizer", r, **dict(options.get(r, {}))))
            elif callable(getattr(r, "rate", None)):
                built.append(r)
            else:
                raise TypeError(
                    f"regularizers must be registered names or Regularizer instances, "
                    f"got {type(r).__name__}."
                )
        return tuple(built)

    # -- device, dtype, randomness -------------------------------------------
    def dtype_and_device(self) -> tuple[torch.dtype, torch.device]:
        """The dtype and device the model computes in (of its first floating tensor)."""
        for tensor in (*self.parameters(), *self.buffers()):
            if tensor.is_floating_point():
                return tensor.dtype, tensor.device
        return torch.get_default_dtype(), torch.device("cpu")

    def manual_seed(self, seed: int | None) -> CNF:
        """Reseed the model's generator (``None``: use torch's global one); returns ``self``."""
        self._seed = seed
        self._generators = {}
        return self

    def _generator(self, device: torch.device) -> torch.Generator | None:
        if self._seed is None:
            return None
        gen = self._generators.get(device)
        if gen is None:
            gen = torch.Generator(device=device)
            gen.manual_seed(self._seed)
            self._generators[device] = gen
        return gen

    @property
    def n_regularizers(self) -> int:
        """The number of integrated penalties."""
        return len(self.regularizers)

    @property
    def last_stats(self) -> SolverStats | None:
        """Statistics of the last solve (``backward_*`` filled in once its backward ran)."""
        return self._last_stats

    # -- validation -----------------------------------------------------------
    def check_input(self, x: object, what: str = "x") -> Tensor:
        """Validate a batch of points; see :func:`flowkit.cnf.inputs.check_points`."""
        dtype, device = self.dtype_and_device()
        has_parameters = any(True for _ in self.parameters())
        return check_points(x, self.dim, dtype, device, strict=has_parameters, what=what)

    def check_context(self, context: object, x: Tensor) -> Tensor | None:
        """Validate a context for ``x``; see :func:`flowkit.cnf.inputs.check_context`."""
        return check_context(self.field, context, x)

    def _bind(self, context: Tensor | None) -> nn.Module:
        """The field with ``context`` bound (the field itself when unconditional)."""
        return self.field if context is None else BoundContext(self.field, context)

    @staticmethod
    def _params(dynamics: nn.Module, context: Tensor | None) -> list[Tensor] | None:
        """The tensors a gradient strategy differentiates: the dynamics' parameters, and
        the context when it requires grad (``None``: the strategy's default)."""
        if context is None or not context.requires_grad:
            return None
        return [*dynamics.parameters(), context]

    # -- solves ----------------------------------------------------------------
    def _times(self, start: float, end: float, like: Tensor) -> Tensor:
        # At least float32: half precision cannot hold times such as 0.1 (see flowkit.solve).
        half = like.dtype in (torch.float16, torch.bfloat16)
        dtype = torch.float32 if half else like.dtype
        return torch.tensor([start, end], dtype=dtype, device=like.device)

    def _flow(
        self,
        y: Tensor,
        start: float,
        end: float,
        *,
        logp: Tensor | None,
        regularize: bool,
        context: Tensor | None = None,
    ) -> FlowResult:
        regularizers = self.regularizers if regularize else ()
        dynamics = CNFDynamics(self._bind(context), self.trace, regularizers)
        dynamics.prepare(y, self._generator(y.device))
        solution = solve(
            dynamics,
            dynamics.initial_state(y, logp),
            self._times(start, end, y),
            integrator=self.integrator,
            gradient=self.gradient,
            params=self._params(dynamics, context),
        )
        self._last_stats = solution.stats
        out = solution.final
        direction = 1.0 if end > start else -1.0
        penalties = [direction * p for p in out[2:]]
        reg = (
            torch.stack(penalties, dim=1)
            if penalties
            else torch.zeros(y.shape[0], 0, dtype=y.dtype, device=y.device)
        )
        return FlowResult(out[0], out[1], reg)

    def pull_back(
        self,
        x: Tensor,
        *,
        t1: float | None = None,
        regularize: bool = False,
        context: Tensor | None = None,
    ) -> FlowResult:
        """Flow data ``x`` from ``t1`` back to ``t0`` with the change of log-density.

        Arguments:
            x: data, shape ``(batch, dim)``.
            t1: the data time for this call (default: the model's ``t1``); a
                random ``t1`` per iteration is STEER's regularization.
            regularize: also integrate the model's regularizers.
            context: the context, ``(batch, c)`` or ``(c,)`` (see :meth:`check_context`).

        Returns:
            ``FlowResult(z, log p_t0(z) - log p_t1(x), penalties)``.
        """
        x = self.check_input(x)
        ctx = self.check_context(context, x)
        end = self.t1 if t1 is None else check_time(t1, "t1")
        return self._flow(x, end, self.t0, logp=None, regularize=regularize, context=ctx)

    def push_forward(
        self, z: Tensor, *, regularize: bool = False, context: Tensor | None = None
    ) -> FlowResult:
        """Flow base points ``z`` from ``t0`` to ``t1`` with the change of log-density.

        Returns:
            ``FlowResult(x, log p_t1(x) - log p_t0(z), penalties)``.
        """
        z = self.check_input(z, "z")
        ctx = self.check_context(context, z)
        return self._flow(z, self.t0, self.t1, logp=None, regularize=regularize, context=ctx)

    def _solve_field(
        self, y: Tensor, start: float, end: float, context: Tensor | None = None
    ) -> Tensor:
        dynamics = FieldDynamics(self._bind(context))
        solution = solve(
            dynamics,
            y,
            self._times(start, end, y),
            integrator=self.integrator,
            gradient=self.gradient,
            params=self._params(dynamics, context),
        )
        self._last_stats = solution.stats
        return solution.final  # type: ignore[return-value]

    def sample_base(self, n: int) -> Tensor:
        """``n`` samples of the base distribution in the model's dtype and device."""
        n = check_count(n)
        dtype, device = self.dtype_and_device()
        if isinstance(self.base, (StandardNormal, GaussianPrior)):
            return self.base.sample(
                (n,), generator=self._generator(device), dtype=dtype, device=device
            )
        return self.base.sample((n,)).to(dtype=dtype, device=device)  # type: ignore[no-any-return]

    def transform(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """Map base points ``z`` (at ``t0``) to data space (at ``t1``)."""
        z = self.check_input(z, "z")
        return self._solve_field(z, self.t0, self.t1, self.check_context(context, z))

    def inverse(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Map data ``x`` (at ``t1``) to base space (at ``t0``)."""
        x = self.check_input(x)
        return self._solve_field(x, self.t1, self.t0, self.check_context(context, x))

    def extra_repr(self) -> str:
        names = [
            getattr(c, "registry_name", type(c).__name__)
            for c in (self.integrator, self.trace, self.gradient)
        ]
        return (
            f"dim={self.dim}, t0={self.t0}, t1={self.t1}, integrator={names[0]}, "
            f"trace={names[1]}, gradient={names[2]}"
        )
