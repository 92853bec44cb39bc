"""The continuous normalizing flow model: :class:`CNF` and compositions of CNF blocks.

A CNF maps base samples ``z`` at ``t0`` to data ``x`` at ``t1`` along
``dx/dt = f(t, x)``. :meth:`CNF.log_prob` integrates the augmented state
``(x, delta_logp)`` backward from ``t1`` to ``t0`` (GUIDE §1); sampling
integrates forward. Every solve goes through :func:`flowkit.solve.solve` with
the model's integrator and gradient strategy.

Example:
    >>> import torch, flowkit
    >>> model = flowkit.CNF("mlp", "rk4", "exact", "backprop", dim=2,
    ...                     field_options={"hidden": (16,)},
    ...                     integrator_options={"n_steps": 4})
    >>> model.log_prob(torch.zeros(5, 2)).shape
    torch.Size([5])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from flowkit.compat import ensure_compatible
from flowkit.distributions import standard_normal_log_prob
from flowkit.dynamics import CNFDynamics, FieldDynamics, check_field_signature
from flowkit.errors import InvalidInputError
from flowkit.interfaces import GradientStrategy, Integrator, Regularizer, TraceEstimator
from flowkit.registry import Registry, get_registry
from flowkit.solution import SolverStats
from flowkit.solve import solve

__all__ = ["CNF", "CNFSequence", "FlowResult", "StandardNormal", "compose"]


class StandardNormal:
    """The standard normal base density ``N(0, I_dim)``, in any dtype and device.

    Arguments:
        dim: the dimension.
    """

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def log_prob(self, z: Tensor) -> Tensor:
        """``log N(z; 0, I)`` per row, shape ``(batch,)``."""
        return standard_normal_log_prob(z)

    def sample(
        self,
        sample_shape: Sequence[int] = (),
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Samples of shape ``(*sample_shape, dim)``."""
        shape = (*tuple(sample_shape), self.dim)
        return torch.randn(shape, generator=generator, dtype=dtype, device=device)

    def __repr__(self) -> str:
        return f"StandardNormal(dim={self.dim})"


class FlowResult(NamedTuple):
    """The end of one flow solve.

    Attributes:
        value: the points at the end of the solve, shape ``(batch, dim)``.
        delta_logp: ``log p_end(value) - log p_start(start)``, shape ``(batch,)``.
        regularization: the integrated penalties over the solve's time span
            (positive measure), shape ``(batch, n_regularizers)``.
    """

    value: Tensor
    delta_logp: Tensor
    regularization: Tensor


def _check_time(value: object, name: str) -> float:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}.") from None
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {value!r}.")
    return out


class CNF(nn.Module):
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
            and ``sample((n,))``; default :class:`StandardNormal`. A base that
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
        registry: the registry to resolve names in (default: the global one).

    Raises:
        IncompatibleComponentsError: for a combination the compatibility
            function refuses, with its reason.
        UnknownComponentError: for an unknown component name.
        TypeError: for unknown options, or options given with an instance.
        ValueError: for a bad ``dim`` or time span.
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
        self.t0 = _check_time(t0, "t0")
        self.t1 = _check_time(t1, "t1")
        if self.t0 == self.t1:
            raise ValueError(f"t0 and t1 must differ, both are {self.t0}.")
        reg = registry or get_registry()
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
            base = StandardNormal(dim)
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
    def _reference(self) -> tuple[torch.dtype, torch.device]:
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
        """Validate a batch of points: shape ``(batch, dim)``, the model's dtype and device, finite.

        Raises:
            InvalidInputError: saying what is wrong and how to fix it.
        """
        if not isinstance(x, Tensor):
            raise InvalidInputError(f"{what} must be a torch.Tensor, got {type(x).__name__}.")
        if x.dim() != 2 or x.shape[1] != self.dim or x.shape[0] == 0:
            raise InvalidInputError(
                f"{what} must have shape (batch, {self.dim}) with batch >= 1, got "
                f"{tuple(x.shape)}; reshape a single point with x.reshape(1, -1)."
            )
        dtype, device = self._reference()
        if not x.is_floating_point():
            raise InvalidInputError(
                f"{what} has dtype {x.dtype}, but points must be floating point; convert the "
                f"data to the model's dtype with {what}.to({dtype}) (or {what}.float())."
            )
        if x.dtype != dtype and any(True for _ in self.parameters()):
            raise InvalidInputError(
                f"{what} has dtype {x.dtype} but the model computes in {dtype}; "
                f"convert with {what}.to({dtype}) or the model with model.to({x.dtype})."
            )
        if x.device != device and any(True for _ in self.parameters()):
            raise InvalidInputError(
                f"{what} is on {x.device} but the model is on {device}; move one of them "
                f"({what}.to('{device}') or model.to('{x.device}'))."
            )
        bad = ~torch.isfinite(x).all(dim=1)
        if bool(bad.any()):
            rows = bad.nonzero().flatten()[:5].tolist()
            raise InvalidInputError(
                f"{what} contains NaN or Inf in {int(bad.sum())} row(s) (e.g. rows {rows}); "
                "remove or impute them before calling the model."
            )
        return x

    def _check_count(self, n: object) -> int:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InvalidInputError(f"n must be a positive integer number of samples, got {n!r}.")
        return n

    # -- solves ----------------------------------------------------------------
    def _times(self, start: float, end: float, like: Tensor) -> Tensor:
        # At least float32: half precision cannot hold times such as 0.1 (see flowkit.solve).
        half = like.dtype in (torch.float16, torch.bfloat16)
        dtype = torch.float32 if half else like.dtype
        return torch.tensor([start, end], dtype=dtype, device=like.device)

    def _flow(
        self, y: Tensor, start: float, end: float, *, logp: Tensor | None, regularize: bool
    ) -> FlowResult:
        regularizers = self.regularizers if regularize else ()
        dynamics = CNFDynamics(self.field, self.trace, regularizers)
        dynamics.prepare(y, self._generator(y.device))
        solution = solve(
            dynamics,
            dynamics.initial_state(y, logp),
            self._times(start, end, y),
            integrator=self.integrator,
            gradient=self.gradient,
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
        self, x: Tensor, *, t1: float | None = None, regularize: bool = False
    ) -> FlowResult:
        """Flow data ``x`` from ``t1`` back to ``t0`` with the change of log-density.

        Arguments:
            x: data, shape ``(batch, dim)``.
            t1: the data time for this call (default: the model's ``t1``); a
                random ``t1`` per iteration is STEER's regularization.
            regularize: also integrate the model's regularizers.

        Returns:
            ``FlowResult(z, log p_t0(z) - log p_t1(x), penalties)``.
        """
        x = self.check_input(x)
        end = self.t1 if t1 is None else _check_time(t1, "t1")
        return self._flow(x, end, self.t0, logp=None, regularize=regularize)

    def push_forward(self, z: Tensor, *, regularize: bool = False) -> FlowResult:
        """Flow base points ``z`` from ``t0`` to ``t1`` with the change of log-density.

        Returns:
            ``FlowResult(x, log p_t1(x) - log p_t0(z), penalties)``.
        """
        z = self.check_input(z, "z")
        return self._flow(z, self.t0, self.t1, logp=None, regularize=regularize)

    def _solve_field(self, y: Tensor, start: float, end: float) -> Tensor:
        solution = solve(
            FieldDynamics(self.field),
            y,
            self._times(start, end, y),
            integrator=self.integrator,
            gradient=self.gradient,
        )
        self._last_stats = solution.stats
        return solution.final  # type: ignore[return-value]

    # -- public API --------------------------------------------------------------
    def log_prob(self, x: Tensor) -> Tensor:
        """The model's log-density at data ``x``, shape ``(batch,)``.

        Raises:
            InvalidInputError: for a wrong shape, dtype or device, or NaN/Inf.
        """
        z, delta, _ = self.pull_back(x)
        return self.base.log_prob(z) - delta

    def forward(self, x: Tensor) -> Tensor:
        """Same as :meth:`log_prob`."""
        return self.log_prob(x)

    def log_prob_and_regularization(
        self, x: Tensor, *, t1: float | None = None
    ) -> tuple[Tensor, Tensor]:
        """Log-density and integrated penalties in one backward solve.

        Arguments:
            x: data, shape ``(batch, dim)``.
            t1: the data time for this call (STEER samples it per iteration).

        Returns:
            ``(log_prob (batch,), penalties (batch, n_regularizers))``.
        """
        z, delta, reg = self.pull_back(x, t1=t1, regularize=True)
        return self.base.log_prob(z) - delta, reg

    def sample_base(self, n: int) -> Tensor:
        """``n`` samples of the base distribution in the model's dtype and device."""
        n = self._check_count(n)
        dtype, device = self._reference()
        if isinstance(self.base, StandardNormal):
            return self.base.sample(
                (n,), generator=self._generator(device), dtype=dtype, device=device
            )
        return self.base.sample((n,)).to(dtype=dtype, device=device)  # type: ignore[no-any-return]

    def transform(self, z: Tensor) -> Tensor:
        """Map base points ``z`` (at ``t0``) to data space (at ``t1``)."""
        return self._solve_field(self.check_input(z, "z"), self.t0, self.t1)

    def inverse(self, x: Tensor) -> Tensor:
        """Map data ``x`` (at ``t1``) to base space (at ``t0``)."""
        return self._solve_field(self.check_input(x), self.t1, self.t0)

    def sample(self, n: int) -> Tensor:
        """``n`` samples of the model, shape ``(n, dim)``."""
        return self.transform(self.sample_base(n))

    def sample_with_log_prob(self, n: int) -> tuple[Tensor, Tensor]:
        """``n`` samples and their log-densities from one forward solve."""
        z = self.sample_base(n)
        x, delta, _ = self.push_forward(z)
        return x, self.base.log_prob(z) + delta

    def extra_repr(self) -> str:
        names = [
            getattr(c, "registry_name", type(c).__name__)
            for c in (self.integrator, self.trace, self.gradient)
        ]
        return (
            f"dim={self.dim}, t0={self.t0}, t1={self.t1}, integrator={names[0]}, "
            f"trace={names[1]}, gradient={names[2]}"
        )


def _sum_stats(stats: Sequence[SolverStats | None]) -> SolverStats | None:
    present = [s for s in stats if s is not None]
    if not present:
        return None
    total = SolverStats()
    for s in present:
        total.nfe += s.nfe
        total.n_accepted += s.n_accepted
        total.n_rejected += s.n_rejected
        total.backward_nfe += s.backward_nfe
        total.backward_n_accepted += s.backward_n_accepted
        total.backward_n_rejected += s.backward_n_rejected
        if s.status != "success":
            total.status = s.status
    return total


class CNFSequence(nn.Module):
    """A composition of CNF blocks: ``x = T_K(... T_1(z))``, ``z`` from the base.

    ``log p(x) = log p_base(z) - sum_k delta_k``, with each block contributing
    its change of log-density. The blocks' own bases are not used.

    Arguments:
        blocks: the CNF blocks, applied to base samples in order; all of one ``dim``.
        base: the base distribution (default: the first block's).

    Raises:
        ValueError: for no blocks or blocks of different dimensions.
    """

    def __init__(self, blocks: Sequence[CNF], *, base: Any = None) -> None:
        super().__init__()
        blocks = list(blocks)
        if not blocks:
            raise ValueError("CNFSequence needs at least one CNF block.")
        for b in blocks:
            if not isinstance(b, CNF):
                raise TypeError(
                    f"CNFSequence blocks must be CNF instances, got {type(b).__name__}."
                )
        dims = {b.dim for b in blocks}
        if len(dims) != 1:
            raise ValueError(f"CNF blocks must share one dim, got dims {sorted(dims)}.")
        self.blocks = nn.ModuleList(blocks)
        self.dim = blocks[0].dim
        self.base = blocks[0].base if base is None else base

    @property
    def last_stats(self) -> SolverStats | None:
        """The blocks' statistics of their last solves, summed (read after ``backward()``)."""
        return _sum_stats([b.last_stats for b in self.blocks])

    def manual_seed(self, seed: int | None) -> CNFSequence:
        """Reseed every block (block ``k`` with ``seed + k``); returns ``self``."""
        for k, b in enumerate(self.blocks):
            b.manual_seed(None if seed is None else seed + k)
        return self

    def _pull_back(self, x: Tensor, regularize: bool) -> tuple[Tensor, Tensor, Tensor]:
        x = self.blocks[-1].check_input(x)
        total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        regs = []
        for block in reversed(self.blocks):
            x, delta, reg = block.pull_back(x, regularize=regularize)
            total = total + delta
            regs.insert(0, reg)
        return x, total, torch.cat(regs, dim=1)

    def log_prob(self, x: Tensor) -> Tensor:
        """The log-density at ``x``, shape ``(batch,)``."""
        z, delta, _ = self._pull_back(x, False)
        return self.base.log_prob(z) - delta

    def forward(self, x: Tensor) -> Tensor:
        """Same as :meth:`log_prob`."""
        return self.log_prob(x)

    def log_prob_and_regularization(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Log-density and every block's penalties, shape ``(batch, sum of n_regularizers)``."""
        z, delta, reg = self._pull_back(x, True)
        return self.base.log_prob(z) - delta, reg

    def transform(self, z: Tensor) -> Tensor:
        """Map base points through every block."""
        for block in self.blocks:
            z = block.transform(z)
        return z

    def inverse(self, x: Tensor) -> Tensor:
        """Map data back through every block."""
        for block in reversed(self.blocks):
            x = block.inverse(x)
        return x

    def _sample_base(self, n: int) -> Tensor:
        first = self.blocks[0]
        if self.base is first.base:
            return first.sample_base(n)
        dtype, device = first._reference()
        return self.base.sample((first._check_count(n),)).to(dtype=dtype, device=device)  # type: ignore[no-any-return]

    def sample(self, n: int) -> Tensor:
        """``n`` samples, shape ``(n, dim)``."""
        return self.transform(self._sample_base(n))

    def sample_with_log_prob(self, n: int) -> tuple[Tensor, Tensor]:
        """``n`` samples and their log-densities."""
        z = self._sample_base(n)
        logp = self.base.log_prob(z)
        for block in self.blocks:
            z, delta, _ = block.push_forward(z)
            logp = logp + delta
        return z, logp


def compose(*blocks: CNF, base: Any = None) -> CNFSequence:
    """Compose CNF blocks into a :class:`CNFSequence` (first block applied first)."""
    return CNFSequence(blocks, base=base)
