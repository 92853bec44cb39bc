"""The API every flow model shares: :class:`FlowModel` and its :class:`FlowResult`.

A flow model maps base points ``z`` to data ``x`` and tracks the change of
log-density on the way. A subclass says how to flow (:meth:`FlowModel.pull_back`,
:meth:`FlowModel.push_forward`, :meth:`FlowModel.transform`,
:meth:`FlowModel.inverse`) and how to draw base points; the density, sampling
and regularization API is written here once, with the sign of the change of
log-density in one place (GUIDE §1). Every method takes an optional
``context`` for conditional models (``(batch, c)``, or ``(c,)`` for the whole
batch; ``None``: unconditional).
"""

from __future__ import annotations

import abc
from typing import Any, NamedTuple

from torch import Tensor, nn

from flowkit.errors import InvalidInputError

__all__ = ["FlowModel", "FlowResult", "check_count"]


def check_count(n: object) -> int:
    """A number of samples: a positive integer.

    Raises:
        InvalidInputError: for anything else.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidInputError(f"n must be a positive integer number of samples, got {n!r}.")
    return n


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


class FlowModel(nn.Module, metaclass=abc.ABCMeta):
    """A density model that flows base samples to data.

    Attributes:
        dim: the dimension of the data.
        base: the base distribution, with ``log_prob(z) -> (batch,)`` and
            ``sample((n,))``.
    """

    dim: int
    base: Any

    @abc.abstractmethod
    def pull_back(
        self,
        x: Tensor,
        *,
        t1: float | None = None,
        regularize: bool = False,
        context: Tensor | None = None,
    ) -> FlowResult:
        """Flow data ``x`` to the base: ``FlowResult(z, log p_base(z) - log p(x), penalties)``.

        Arguments:
            x: data, shape ``(batch, dim)``.
            t1: the data time for this call, for models that have one.
            regularize: also integrate the model's regularizers.
            context: the context of a conditional model, ``(batch, c)`` or ``(c,)``.

        Raises:
            InvalidInputError: for a wrong shape, dtype or device, or NaN/Inf.
        """

    @abc.abstractmethod
    def push_forward(
        self, z: Tensor, *, regularize: bool = False, context: Tensor | None = None
    ) -> FlowResult:
        """Flow base points ``z`` to data: ``FlowResult(x, log p(x) - log p_base(z), penalties)``.

        Raises:
            InvalidInputError: for a wrong shape, dtype or device, or NaN/Inf.
        """

    @abc.abstractmethod
    def transform(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """Map base points ``z`` to data space (no density tracked)."""

    @abc.abstractmethod
    def inverse(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Map data ``x`` to base space (no density tracked)."""

    @abc.abstractmethod
    def sample_base(self, n: int) -> Tensor:
        """``n`` samples of the base distribution in the model's dtype and device.

        Raises:
            InvalidInputError: for ``n`` that is not a positive integer.
        """

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """The model's log-density at data ``x`` (given ``context``), shape ``(batch,)``.

        Raises:
            InvalidInputError: for a wrong shape, dtype or device, or NaN/Inf,
                of ``x`` or the context.
        """
        z, delta, _ = self.pull_back(x, context=context)
        return self.base.log_prob(z) - delta  # type: ignore[no-any-return]

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Same as :meth:`log_prob`."""
        return self.log_prob(x, context)

    def log_prob_and_regularization(
        self, x: Tensor, *, t1: float | None = None, context: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Log-density and integrated penalties in one backward solve.

        Arguments:
            x: data, shape ``(batch, dim)``.
            t1: the data time for this call (STEER samples it per iteration).
            context: the context of a conditional model, ``(batch, c)`` or ``(c,)``.

        Returns:
            ``(log_prob (batch,), penalties (batch, n_regularizers))``.
        """
        z, delta, reg = self.pull_back(x, t1=t1, regularize=True, context=context)
        return self.base.log_prob(z) - delta, reg

    def sample(self, n: int, context: Tensor | None = None) -> Tensor:
        """``n`` samples of the model, shape ``(n, dim)``, given ``context``
        (``(n, c)``, one row per sample, or ``(c,)`` for all of them)."""
        return self.transform(self.sample_base(n), context)

    def sample_with_log_prob(self, n: int, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``n`` samples and their log-densities from one forward solve."""
        z = self.sample_base(n)
        x, delta, _ = self.push_forward(z, context=context)
        return x, self.base.log_prob(z) + delta
