"""Compositions of CNF blocks: :class:`CNFSequence` and :func:`compose`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from flowkit.cnf.flow_model import FlowModel, FlowResult, check_count
from flowkit.cnf.model import CNF
from flowkit.solution import SolverStats

__all__ = ["CNFSequence", "compose"]


class CNFSequence(FlowModel):
    """A composition of CNF blocks: ``x = T_K(... T_1(z))``, ``z`` from the base.

    ``log p(x) = log p_base(z) - sum_k delta_k``, with each block contributing
    its change of log-density. The blocks' own bases are not used. The
    density and sampling API is :class:`~flowkit.cnf.flow_model.FlowModel`'s;
    a ``context`` reaches every block unchanged.

    Arguments:
        blocks: the CNF blocks, applied to base samples in order; all of one ``dim``.
        base: the base distribution (default: the first block's).

    Raises:
        ValueError: for no blocks or blocks of different dimensions.
        TypeError: for a block that is not a :class:`~flowkit.cnf.CNF`.
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
        return SolverStats.total(b.last_stats for b in self.blocks)

    def manual_seed(self, seed: int | None) -> CNFSequence:
        """Reseed every block (block ``k`` with ``seed + k``); returns ``self``."""
        for k, b in enumerate(self.blocks):
            b.manual_seed(None if seed is None else seed + k)
        return self

    def check_input(self, x: object, what: str = "x") -> Tensor:
        """Validate a batch of points as the blocks do (see :meth:`CNF.check_input`)."""
        return self.blocks[-1].check_input(x, what)  # type: ignore[no-any-return]

    def pull_back(
        self,
        x: Tensor,
        *,
        t1: float | None = None,
        regularize: bool = False,
        context: Tensor | None = None,
    ) -> FlowResult:
        """Flow data through every block back to the base, summing the changes of log-density.

        Raises:
            TypeError: for ``t1``: each block has its own data time; set it on the blocks.
        """
        if t1 is not None:
            raise TypeError(
                "A CNFSequence has no single data time t1; each block has its own "
                "(set t1 on the blocks when building them)."
            )
        x = self.check_input(x)
        total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        regs = []
        for block in reversed(self.blocks):
            x, delta, reg = block.pull_back(x, regularize=regularize, context=context)
            total = total + delta
            regs.insert(0, reg)
        return FlowResult(x, total, torch.cat(regs, dim=1))

    def push_forward(
        self, z: Tensor, *, regularize: bool = False, context: Tensor | None = None
    ) -> FlowResult:
        """Flow base points through every block, summing the changes of log-density."""
        z = self.check_input(z, "z")
        total = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
        regs = []
        for block in self.blocks:
            z, delta, reg = block.push_forward(z, regularize=regularize, context=context)
            total = total + delta
            regs.append(reg)
        return FlowResult(z, total, torch.cat(regs, dim=1))

    def transform(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """Map base points through every block."""
        for block in self.blocks:
            z = block.transform(z, context)
        return z

    def inverse(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Map data back through every block."""
        for block in reversed(self.blocks):
            x = block.inverse(x, context)
        return x

    def sample_base(self, n: int) -> Tensor:
        """``n`` samples of the sequence's base in the first block's dtype and device."""
        first = self.blocks[0]
        if self.base is first.base:
            return first.sample_base(n)  # type: ignore[no-any-return]
        dtype, device = first.dtype_and_device()
        return self.base.sample((check_count(n),)).to(dtype=dtype, device=device)  # type: ignore[no-any-return]


def compose(*blocks: CNF, base: Any = None) -> CNFSequence:
    """Compose CNF blocks into a :class:`CNFSequence` (first block applied first)."""
    return CNFSequence(blocks, base=base)
