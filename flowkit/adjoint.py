"""The solver-agnostic continuous adjoint (optimise-then-discretise).

The forward solve runs without a graph. In the backward pass the augmented
system ``(y, a_y, a_params)`` is integrated from ``t[-1]`` back to ``t[0]``,
interval by interval between the output times, with any integrator: the
forward one by default, or another one with its own options::

    dy/dt = f(t, y)
    da_y/dt = -a_y^T df/dy                  a_y(t[-1]) = dL/dy(t[-1])
    da_params/dt = -a_y^T df/dparams        a_params(t[-1]) = 0

At each output time ``t_i`` the incoming gradient ``dL/dy(t_i)`` is added to
``a_y`` and the state is reset to the value saved by the forward solve. The
field's ``callback_*_adjoint`` methods (torchdiffeq's) become the augmented
field's ``callback_*``, called with ``(t0, (*y, *a_y, *a_params), dt)``. The
vector-Jacobian products come from :func:`torch.autograd.grad` on a local graph
of one evaluation of ``f``, so memory does not grow with the number of steps.

Gradients with respect to the times: ``y(t_i)`` depends on ``t_i`` (``i >= 1``)
only through where it is read off the trajectory, so ``dL/dt_i = dL/dy(t_i) .
f(t_i, y(t_i))``; the trajectory itself starts at ``t_0``, so ``dL/dt_0 =
-a_y(t_0) . f(t_0, y_0)`` with ``a_y(t_0)`` the adjoint before ``dL/dy(t_0)``
is added.

References:
    Pontryagin et al. (1962). The Mathematical Theory of Optimal Processes.
    Chen, Rubanova, Bettencourt, Duvenaud (2018). Neural Ordinary Differential
    Equations. NeurIPS.
    Kidger, Chen, Lyons (2021). "Hey, that's not an ODE": Faster ODE Adjoints
    via Seminorms. ICML.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx, once_differentiable

from flowkit.errors import IncompatibleComponentsError
from flowkit.interfaces import AdaptiveIntegrator, Integrator
from flowkit.rk.control import mixed_rms_norm
from flowkit.solution import Solution, SolverStats
from flowkit.state import Dynamics, State, as_tuple, check_state, like

__all__ = ["adjoint_solve", "group_norm", "resolve_params"]

Norm = Callable[[tuple[Tensor, ...]], Tensor]


def resolve_params(func: Dynamics, params: Iterable[Tensor] | None) -> tuple[Tensor, ...]:
    """The tensors an adjoint differentiates with respect to.

    Arguments:
        func: the right-hand side; when ``params`` is ``None`` its parameters are
            used if it is an ``nn.Module`` (or a bound method of one).
        params: explicit tensors ``func`` depends on, or ``None``.

    Returns:
        The distinct tensors that require gradients, in order; tensors that do
        not require gradients are skipped (they get none).

    Raises:
        TypeError: for an entry that is not a tensor, or a tensor that is not
            floating point.
    """
    if params is None:
        owner = func if isinstance(func, nn.Module) else getattr(func, "__self__", None)
        params = owner.parameters() if isinstance(owner, nn.Module) else ()
    selected: list[Tensor] = []
    seen: set[int] = set()
    for i, p in enumerate(params):
        if not isinstance(p, Tensor):
            raise TypeError(
                f"params[{i}] must be a torch.Tensor, got {type(p).__name__}; pass the "
                "tensors the right-hand side depends on (e.g. list(model.parameters()))."
            )
        if not p.is_floating_point():
            raise TypeError(
                f"params[{i}] has dtype {p.dtype}; only floating-point tensors can receive "
                "gradients. Leave integer tensors out of params."
            )
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            selected.append(p)
    return tuple(selected)


def group_norm(sizes: Sequence[int], n_kept: int | None = None) -> Norm:
    """The error norm of the augmented state: the largest RMS over its groups.

    The augmented state ``(y, a_y, a_params)`` holds quantities of different
    scales and sizes; pooled into one RMS, the (many) parameter-adjoint
    components would swamp the state's. Each group is measured on its own
    and the largest RMS is the error. With ``n_kept`` groups only the first
    ones count: ``n_kept=2`` is the seminorm of Kidger et al. (2021), which
    leaves the parameter adjoint out of step-size control (sound because
    nothing else in the system depends on it, and cheaper).

    Arguments:
        sizes: the number of scalar components of each group, in order.
        n_kept: how many leading groups enter the norm (default: all).

    Returns:
        A callable taking the scaled-error leaves (a tuple, or one flat tensor
        as torchdiffeq passes it) and returning a scalar tensor.

    Raises:
        ValueError: for no kept group or an empty one.
    """
    kept = list(sizes if n_kept is None else sizes[:n_kept])
    if not kept or min(kept) < 1:
        raise ValueError(f"group_norm needs non-empty groups, got sizes={list(sizes)}.")

    def norm(leaves: tuple[Tensor, ...] | Tensor) -> Tensor:
        leaves = (leaves,) if isinstance(leaves, Tensor) else leaves
        flat = (
            leaves[0].reshape(-1)
            if len(leaves) == 1
            else torch.cat([leaf.reshape(-1) for leaf in leaves])
        )
        parts = torch.split(flat[: sum(kept)], kept)
        return torch.stack([p.square().mean().sqrt() for p in parts]).max()

    return norm


class _Packer:
    """Packs ``(y leaves, a leaves, param-adjoint leaves)`` into one integrator state.

    When every leaf shares a dtype and device the state is one flat tensor
    (cheapest for the integrator's per-step arithmetic); otherwise a tuple.
    """

    def __init__(self, leaves: Sequence[Tensor]) -> None:
        self.shapes = [leaf.shape for leaf in leaves]
        self.sizes = [leaf.numel() for leaf in leaves]
        first = leaves[0]
        self.flat = all(
            leaf.dtype == first.dtype and leaf.device == first.device for leaf in leaves
        )

    def pack(self, leaves: Sequence[Tensor]) -> State:
        if self.flat:
            return torch.cat([leaf.reshape(-1) for leaf in leaves])
        return tuple(leaves)

    def unpack(self, state: State) -> tuple[Tensor, ...]:
        if self.flat:
            assert isinstance(state, Tensor)
            parts = torch.split(state, self.sizes)
            return tuple(p.view(s) for p, s in zip(parts, self.shapes, strict=True))
        return as_tuple(state)


@dataclass
class _Problem:
    """Everything the autograd function needs besides tensors."""

    func: Dynamics
    integrator: Integrator
    backward_integrator: Integrator
    template: State
    n_leaves: int
    params: tuple[Tensor, ...]
    backward_norm: Norm | None = None
    stats: SolverStats | None = None


def _vjp_field(problem: _Problem, packer: _Packer) -> Callable[[Tensor, State], State]:
    """The right-hand side of the augmented backward system."""
    n = problem.n_leaves
    params = problem.params
    func = problem.func
    template = problem.template

    def augmented(t: Tensor, state: State) -> State:
        leaves = packer.unpack(state)
        y, a = leaves[:n], leaves[n : 2 * n]
        with torch.enable_grad():
            y_ = tuple(leaf.detach().requires_grad_(True) for leaf in y)
            f = as_tuple(func(t.detach(), like(template, y_)))
            if len(f) != n:
                raise TypeError(
                    f"The right-hand side returned {len(f)} leaves for a state of {n}; it must "
                    "return a state of the same structure as y."
                )
            used = [k for k, fk in enumerate(f) if fk.requires_grad]
            inputs = (*y_, *params)
            if used:
                grads = torch.autograd.grad(
                    [f[k] for k in used],
                    inputs,
                    grad_outputs=[-a[k] for k in used],
                    allow_unused=True,
                )
            else:
                grads = (None,) * len(inputs)
        out = [fk.detach() for fk in f]
        out += [torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs, strict=True)]
        return packer.pack(out)

    for name in ("callback_step", "callback_accept_step", "callback_reject_step"):
        hook = getattr(func, f"{name}_adjoint", None)  # torchdiffeq's adjoint callbacks
        if callable(hook):  # called by a backward integrator that calls step callbacks
            setattr(augmented, name, lambda t0, s, dt, h=hook: h(t0, packer.unpack(s), dt))
    return augmented


def _dot(a: Sequence[Tensor], b: Sequence[Tensor]) -> Tensor:
    return sum((x * y).sum() for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


class _AdjointFunction(torch.autograd.Function):
    """Forward solve without a graph; backward solve of the augmented system."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: FunctionCtx, problem: _Problem, t: Tensor, *inputs: Tensor
    ) -> tuple[Tensor, ...]:
        y0 = like(problem.template, tuple(inputs[: problem.n_leaves]))
        solution = problem.integrator.integrate(problem.func, y0, t)
        problem.stats = solution.stats
        ys = tuple(leaf.detach() for leaf in as_tuple(solution.ys))
        ctx.problem = problem  # type: ignore[attr-defined]
        ctx.save_for_backward(t, *ys)
        return ys

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, *grad_ys: Tensor) -> tuple[Tensor | None, ...]:
        problem: _Problem = ctx.problem  # type: ignore[attr-defined]
        t, *ys = ctx.saved_tensors  # type: ignore[attr-defined]
        n, params, stats = problem.n_leaves, problem.params, problem.stats
        func, template = problem.func, problem.template
        assert stats is not None
        needs_t = ctx.needs_input_grad[1]  # type: ignore[attr-defined]

        def f_at(i: int) -> tuple[Tensor, ...]:
            with torch.no_grad():
                out = as_tuple(func(t[i], like(template, tuple(y[i] for y in ys))))
            stats.backward_nfe += 1
            return out

        a = [g[-1] for g in grad_ys]
        a_params = [torch.zeros_like(p) for p in params]
        grad_t = torch.zeros_like(t) if needs_t else None
        packer = _Packer([*(y[0] for y in ys), *a, *a_params])
        augmented = _vjp_field(problem, packer)
        back = problem.backward_integrator
        if problem.backward_norm is not None:
            back = back.with_norm(_unpacking_norm(problem.backward_norm, packer))  # type: ignore[attr-defined]
        for i in range(t.shape[0] - 1, 0, -1):
            y_i = [y[i] for y in ys]
            if grad_t is not None:
                grad_t[i] = _dot(f_at(i), [g[i] for g in grad_ys])
            state = packer.pack([*y_i, *a, *a_params])
            span = torch.stack([t[i], t[i - 1]]).detach()
            solution = back.integrate(augmented, state, span)
            stats.backward_nfe += solution.stats.nfe
            stats.backward_n_accepted += solution.stats.n_accepted
            stats.backward_n_rejected += solution.stats.n_rejected
            final = packer.unpack(
                like(state, tuple(leaf[-1] for leaf in as_tuple(solution.ys)))  # type: ignore[arg-type]
            )
            a = list(final[n : 2 * n])
            a_params = list(final[2 * n :])
            if i - 1 > 0:
                a = [ak + g[i - 1] for ak, g in zip(a, grad_ys, strict=True)]
        if grad_t is not None:
            grad_t[0] = -_dot(f_at(0), a)
        a = [ak + g[0] for ak, g in zip(a, grad_ys, strict=True)]
        needs = ctx.needs_input_grad  # type: ignore[attr-defined]
        grads_in = [ak if needs[2 + k] else None for k, ak in enumerate(a)]
        grads_in += [gp if needs[2 + n + k] else None for k, gp in enumerate(a_params)]
        return (None, grad_t, *grads_in)


def _with_norm(integrator: Integrator, norm: Norm) -> Integrator:
    """A copy of ``integrator`` measuring its errors with ``norm`` (its ``with_norm``).

    Raises:
        IncompatibleComponentsError: when it is not an ``AdaptiveIntegrator``.
    """
    if not isinstance(integrator, AdaptiveIntegrator):
        raise IncompatibleComponentsError(
            "seminorm=True needs an adaptive backward integrator that takes a `norm` option "
            f"(an AdaptiveIntegrator); {type(integrator).__name__} "
            f"(adaptive={getattr(integrator, 'adaptive', False)}) is not one. Set "
            "seminorm=False, or choose an adaptive integrator with a norm option as "
            "backward_integrator (e.g. 'dopri5')."
        )
    return integrator.with_norm(norm)


def _unpacking_norm(norm: Norm, packer: _Packer) -> Norm:
    """``norm`` called with the augmented leaves ``(*y, *a_y, *a_params)``, however packed."""

    def unpacked(scaled: tuple[Tensor, ...] | Tensor) -> Tensor:
        leaves = (scaled,) if isinstance(scaled, Tensor) else tuple(scaled)
        return norm(packer.unpack(leaves[0] if packer.flat else leaves))

    return unpacked


def _own_norm(integrator: Integrator | None) -> Norm | None:
    """The norm a user gave the backward integrator (None for none, or the default)."""
    own = isinstance(integrator, AdaptiveIntegrator) and integrator.norm is not mixed_rms_norm
    return integrator.norm if own else None  # type: ignore[union-attr,return-value]


def _check_scalar_tolerances(integrator: Integrator) -> None:
    """Per-component or per-leaf tolerances do not fit the augmented state."""
    for name in ("rtol", "atol"):
        value = getattr(integrator, name, None)
        if isinstance(value, (tuple, list)) or (isinstance(value, Tensor) and value.numel() > 1):
            raise ValueError(
                f"The adjoint's backward solve integrates the augmented state (y, a_y, "
                f"a_params), which per-component or per-leaf {name} of the backward integrator "
                f"{type(integrator).__name__} does not fit. Give the adjoint strategy a "
                "backward_integrator (or backward_options) with scalar rtol and atol."
            )


def adjoint_solve(
    integrator: Integrator,
    func: Dynamics,
    y0: State,
    t: Tensor,
    *,
    params: Sequence[Tensor] = (),
    backward_integrator: Integrator | None = None,
    seminorm_control: bool = False,
) -> Solution:
    """Solve with gradients from the continuous adjoint; see the module docstring.

    Arguments:
        integrator: the forward integrator.
        func: the right-hand side ``func(t, y)``; it must be deterministic for
            the solve (stochastic estimators fix their probes in its closure).
        y0: the initial state, a tensor or a tuple of tensors.
        t: 1-D tensor of output times, strictly monotone.
        params: the tensors ``func`` depends on that receive gradients (see
            :func:`resolve_params`).
        backward_integrator: the integrator of the augmented backward system
            (default: ``integrator``).
        seminorm_control: leave the parameter adjoint out of the backward
            step-size control (needs an
            :class:`~flowkit.interfaces.AdaptiveIntegrator`). Without it, a
            ``backward_integrator`` given with its own ``norm`` keeps it, and
            the norm is called with the tuple of scaled-error leaves
            ``(*y, *a_y, *a_params)`` of the augmented state; any other
            adaptive backward integrator gets :func:`group_norm` over
            ``(y, a_y, a_params)``.

    Returns:
        The forward :class:`~flowkit.solution.Solution`; its ``stats`` object
        receives ``backward_nfe``, ``backward_n_accepted`` and
        ``backward_n_rejected`` (summed over backward passes) once the backward
        pass has run.

    Raises:
        TypeError: for non-floating state leaves or parameters.
        ValueError: for a backward integrator with per-component tolerances, or
            ``seminorm_control`` with a backward integrator that has its own norm.
        IncompatibleComponentsError: for ``seminorm_control`` with a backward
            integrator that cannot take a norm.
    """
    y0 = check_state(y0)
    leaves = as_tuple(y0)
    back = backward_integrator if backward_integrator is not None else integrator
    _check_scalar_tolerances(back)
    n_state = sum(leaf.numel() for leaf in leaves)
    n_params = sum(p.numel() for p in params)
    groups = [n_state, n_state] + ([n_params] if n_params else [])
    own_norm = _own_norm(backward_integrator)
    if seminorm_control and own_norm is not None:
        raise ValueError(
            "The backward integrator was given its own norm and seminorm_control is on; "
            "give one of them (the seminorm is a norm that leaves out the parameter adjoint)."
        )
    if seminorm_control:
        back = _with_norm(back, group_norm(groups, n_kept=2))
    elif own_norm is None and isinstance(back, AdaptiveIntegrator):
        back = back.with_norm(group_norm(groups))
    problem = _Problem(
        func=func,
        integrator=integrator,
        backward_integrator=back,
        template=y0,
        n_leaves=len(leaves),
        params=tuple(params),
        backward_norm=own_norm,
    )
    ys = _AdjointFunction.apply(problem, t, *leaves, *problem.params)
    assert problem.stats is not None
    return Solution(ts=t, ys=like(y0, tuple(ys)), stats=problem.stats)
