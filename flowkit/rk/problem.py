"""The right-hand side as the Runge-Kutta loops see it, and steps recorded by autograd.

:class:`Problem` wraps ``func(t, y)`` on tuples of leaves, counts evaluations
and checks the first output's shape; :class:`PlainSteps` computes steps for
the plain ``integrate`` path (the checkpointed path is
:class:`~flowkit.rk.checkpointed.CheckpointedSteps`, with the same interface).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from flowkit.rk.stepper import StepResult, dense_state, rk_step
from flowkit.rk.tableau import ButcherTableau
from flowkit.state import Dynamics, State, as_tuple

__all__ = ["PlainSteps", "Problem"]


class Problem:
    """The right-hand side on tuples of leaves, counting evaluations."""

    def __init__(self, func: Dynamics, y0: State, t: Tensor) -> None:
        self.func = func
        self.single = not isinstance(y0, tuple)
        self.leaves = as_tuple(y0)
        self.tdtype = t.dtype
        self.device = t.device
        self.nfe = 0
        self.checked = False

    def __call__(self, t: float, y: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        self.nfe += 1
        tt = torch.scalar_tensor(t, dtype=self.tdtype, device=self.device)
        out = self.func(tt, y[0] if self.single else y)
        leaves = (out,) if self.single else out
        if not self.checked:
            self._check(out, leaves)
        return leaves  # type: ignore[return-value]

    def _check(self, out: object, leaves: object) -> None:
        want = "a tensor" if self.single else f"a tuple of {len(self.leaves)} tensors"
        if self.single and not isinstance(out, Tensor):
            raise TypeError(f"func(t, y) must return {want} like y0, got {type(out).__name__}.")
        if not self.single and (not isinstance(leaves, tuple) or len(leaves) != len(self.leaves)):
            raise TypeError(f"func(t, y) must return {want} like y0, got {type(out).__name__}.")
        for i, (a, b) in enumerate(zip(leaves, self.leaves, strict=True)):  # type: ignore[arg-type]
            if not isinstance(a, Tensor) or a.shape != b.shape:
                got = tuple(a.shape) if isinstance(a, Tensor) else type(a).__name__
                raise ValueError(
                    f"func(t, y) returned leaf {i} of shape {got}, but the state leaf has shape "
                    f"{tuple(b.shape)}; the derivative must have the state's shape."
                )
        self.checked = True


class PlainSteps:
    """Steps recorded by autograd as they are computed (the ``integrate`` path).

    The same interface as :class:`~flowkit.rk.checkpointed.CheckpointedSteps`:
    :meth:`trial` computes a step, :meth:`accept` returns ``(y1, f1, dense
    states)`` of an accepted one, :meth:`evaluate` evaluates the field.
    """

    def __init__(self, tableau: ButcherTableau, problem: Problem) -> None:
        self.tableau = tableau
        self.evaluate = problem

    def trial(
        self, t: float, y: tuple[Tensor, ...], f0: tuple[Tensor, ...] | None, h: float
    ) -> StepResult:
        return rk_step(self.tableau, self.evaluate, t, y, f0, h)

    def accept(
        self,
        t: float,
        y: tuple[Tensor, ...],
        f0: tuple[Tensor, ...] | None,
        h: float,
        res: StepResult,
        thetas: Sequence[float],
    ) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...] | None, list[tuple[Tensor, ...]]]:
        dense = [dense_state(self.tableau, y, res.ks, h, th) for th in thetas]
        return res.y1, res.f1, dense
