"""Step checkpointing for the native Runge-Kutta loops: one autograd node per step.

In a checkpointed solve every step is first computed under ``torch.no_grad``
(a trace estimator still builds its own local graph there), exactly as the
plain solve would compute it, and the step-size controller decides on those
values. An accepted step is then attached to the autograd graph by
:class:`StepNode`, a custom :class:`torch.autograd.Function` whose inputs are
the step's state leaves (plus the first-same-as-last derivative it starts
from, for FSAL tableaus) and the parameters, and whose saved tensors are only
those inputs. Its backward pass re-runs the step under ``torch.enable_grad``
and returns the vector-Jacobian products with respect to the state leaves and
the parameters. The step's internals (stages, the field's activations, the
trace estimator's graphs) therefore live only while one step is being
differentiated.

Cost: the forward pass evaluates the field exactly as often as a plain solve
(rejected steps included); the backward pass re-evaluates each accepted step
once (``stats.backward_nfe``). The gradient is that of the computed solution,
equal to plain backpropagation's through the same steps to round-off.

Why not :func:`torch.utils.checkpoint.checkpoint`: in its non-reentrant mode,
any ``torch.autograd.grad`` call inside the checkpointed region (which every
CNF trace estimator makes) unpacks saved tensors and triggers a recomputation
of the whole region during the forward pass, multiplying the function
evaluations and the memory; the reentrant mode cannot return gradients to
tensors that are not inputs without accumulating into ``.grad`` behind
``torch.autograd.grad``'s back. An explicit node with explicit parameters has
neither problem.

Limitations: the backward pass is not itself differentiable
(``once_differentiable``: no higher-order gradients through a checkpointed
solve), and gradients reach only the parameters passed in, not other tensors
the right-hand side happens to close over.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from flowkit.rk.stepper import LeafFunc, StepResult, dense_state, rk_step
from flowkit.rk.tableau import ButcherTableau
from flowkit.solution import SolverStats

__all__ = ["CheckpointedSteps", "StepNode", "StepRecipe"]

Rerun = Callable[[tuple[Tensor, ...]], Sequence[Tensor]]
"""Recomputes a step's outputs from its (gradient-requiring) input leaves."""


@dataclass(eq=False)
class StepRecipe:
    """Everything a :class:`StepNode` needs besides its input tensors.

    Attributes:
        rerun: recomputes the step's outputs from its input leaves (counting
            its function evaluations on ``counter``).
        n_inputs: how many of the node's tensor inputs are step inputs; the
            rest are the parameters.
        params: the parameters, as the tensors the right-hand side uses (the
            gradients are taken with respect to these very tensors).
        counter: returns the right-hand side's evaluation count, so that the
            backward pass's evaluations land in ``stats.backward_nfe``.
        stats: the solve's statistics.
        outputs: the step's outputs computed in the forward pass; handed over
            (and dropped) when the node is applied.
    """

    rerun: Rerun
    n_inputs: int
    params: tuple[Tensor, ...]
    counter: Callable[[], int]
    stats: SolverStats
    outputs: tuple[Tensor, ...] = field(default=(), repr=False)


class StepNode(torch.autograd.Function):
    """One accepted step (or one evaluation) as a single autograd node.

    ``StepNode.apply(recipe, *inputs, *params)`` returns ``recipe.outputs``,
    already computed without a graph, as outputs of this node. The backward
    pass re-runs ``recipe.rerun`` on detached copies of the inputs under
    ``torch.enable_grad`` and returns vector-Jacobian products for the inputs
    and the parameters.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: FunctionCtx, recipe: StepRecipe, *tensors: Tensor
    ) -> tuple[Tensor, ...]:
        outputs = recipe.outputs
        recipe.outputs = ()
        ctx.recipe = recipe  # type: ignore[attr-defined]
        # Parameters are saved too: not for their values (the recipe holds them) but so
        # that an in-place change before backward raises, as it would for backprop.
        ctx.save_for_backward(*tensors)
        # Fresh tensor objects, so that marking them as this node's outputs never touches
        # a tensor held elsewhere (a buffer the field returned, a leaf returned twice).
        return tuple(o.detach() for o in outputs)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, *grads: Tensor) -> tuple[Tensor | None, ...]:
        recipe: StepRecipe = ctx.recipe  # type: ignore[attr-defined]
        saved = ctx.saved_tensors  # type: ignore[attr-defined]
        needs = ctx.needs_input_grad[1:]  # type: ignore[attr-defined]
        n = recipe.n_inputs
        inputs = tuple(x.detach().requires_grad_(True) for x in saved[:n])
        before = recipe.counter()
        with torch.enable_grad():
            outputs = recipe.rerun(inputs)
        recipe.stats.backward_nfe += recipe.counter() - before
        pairs = [
            (o, g) for o, g in zip(outputs, grads, strict=True) if o.requires_grad and g is not None
        ]
        wrt = [x for x, need in zip((*inputs, *recipe.params), needs, strict=True) if need]
        if not pairs or not wrt:
            return (None,) * (len(needs) + 1)
        got = iter(
            torch.autograd.grad(
                [o for o, _ in pairs], wrt, [g for _, g in pairs], allow_unused=True
            )
        )
        return (None, *(next(got) if need else None for need in needs))


def _detached(leaves: tuple[Tensor, ...] | None) -> tuple[Tensor, ...] | None:
    return None if leaves is None else tuple(x.detach() for x in leaves)


class CheckpointedSteps:
    """The checkpointed way of taking steps, for the loops of :mod:`flowkit.rk.solver`.

    :meth:`trial` computes a step without a graph; :meth:`accept` attaches an
    accepted step (and its dense outputs) to the graph as one
    :class:`StepNode`; :meth:`evaluate` does the same for a lone evaluation of
    the right-hand side (the first derivative of an adaptive solve).

    Arguments:
        tableau: the method.
        func: the counted right-hand side on leaves, with an ``nfe`` attribute.
        params: the tensors the right-hand side depends on that need gradients.
        stats: the solve's statistics (receives ``backward_nfe``).
    """

    def __init__(
        self,
        tableau: ButcherTableau,
        func: LeafFunc,
        params: Sequence[Tensor],
        stats: SolverStats,
    ) -> None:
        self.tableau = tableau
        self.func = func
        self.params = tuple(params)
        self.stats = stats

    def _count(self) -> int:
        return int(self.func.nfe)  # type: ignore[attr-defined]

    def _attach(
        self, rerun: Rerun, inputs: tuple[Tensor, ...], outputs: tuple[Tensor, ...]
    ) -> tuple[Tensor, ...]:
        recipe = StepRecipe(
            rerun=rerun,
            n_inputs=len(inputs),
            params=self.params,
            counter=self._count,
            stats=self.stats,
            outputs=outputs,
        )
        return StepNode.apply(recipe, *inputs, *self.params)  # type: ignore[no-any-return]

    def trial(
        self, t: float, y: tuple[Tensor, ...], f0: tuple[Tensor, ...] | None, h: float
    ) -> StepResult:
        """The step from ``(t, y)`` of size ``h``, computed without a graph."""
        with torch.no_grad():
            return rk_step(self.tableau, self.func, t, _detached(y), _detached(f0), h)  # type: ignore[arg-type]

    def accept(
        self,
        t: float,
        y: tuple[Tensor, ...],
        f0: tuple[Tensor, ...] | None,
        h: float,
        res: StepResult,
        thetas: Sequence[float],
    ) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...] | None, list[tuple[Tensor, ...]]]:
        """Attach an accepted step: ``(y1, f1, dense states at thetas)`` with a graph.

        The node's inputs are ``y`` (and ``f0`` when the tableau is FSAL and
        ``f0`` was given, so that the derivative is not evaluated again in the
        backward pass); its outputs ``y1``, ``f1`` (FSAL) and the dense states.
        """
        tableau, func, n = self.tableau, self.func, len(y)
        thetas = tuple(thetas)
        with torch.no_grad():
            dense = [dense_state(tableau, _detached(y), res.ks, h, th) for th in thetas]  # type: ignore[arg-type]
        takes_f0 = f0 is not None
        keeps_f1 = res.f1 is not None
        outputs = (*res.y1, *(res.f1 or ()), *(leaf for state in dense for leaf in state))

        def rerun(leaves: tuple[Tensor, ...]) -> list[Tensor]:
            y_, f0_ = leaves[:n], (leaves[n:] if takes_f0 else None)
            again = rk_step(tableau, func, t, y_, f0_, h)
            out = [*again.y1, *(again.f1 or ())]
            for th in thetas:
                out.extend(dense_state(tableau, y_, again.ks, h, th))
            return out

        inputs = (*y, *(f0 if takes_f0 else ()))  # type: ignore[misc]
        attached = self._attach(rerun, inputs, outputs)
        y1 = attached[:n]
        f1 = attached[n : 2 * n] if keeps_f1 else None
        rest = attached[2 * n if keeps_f1 else n :]
        states = [rest[i * n : (i + 1) * n] for i in range(len(thetas))]
        return y1, f1, states

    def evaluate(self, t: float, y: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """``func(t, y)`` as one node (recomputed in the backward pass)."""
        func = self.func
        with torch.no_grad():
            out = func(t, _detached(y))  # type: ignore[arg-type]
        return self._attach(lambda leaves: func(t, leaves), y, tuple(out))
