"""How ``flowkit.odeint`` takes a torchdiffeq call: times, complex states, callbacks, parameters.

The steps every torchdiffeq-shaped entry point (:func:`flowkit.odeint`,
:func:`flowkit.odeint_adjoint`) applies before the solve, each as torchdiffeq
does it:

* ``t`` is cast to the state's real dtype (a float32 state with float64 times
  is solved and returned in float32, the function sees float32 times), except
  to or from half precision (see :func:`cast_times`);
* a complex state is solved as pairs of reals (``torch.view_as_real``) and
  returned complex;
* the function's step callbacks that the method does not call get
  torchdiffeq's warning ("Solver '...' does not support callbacks ...");
* a gradient strategy that differentiates with respect to parameters needs
  to know them: a function that is not an ``nn.Module`` needs
  ``adjoint_params`` (torchdiffeq's ``ValueError``), else its tensors would
  silently get no gradient;
* ``len(t) == 1`` returns the initial state stacked, without solving.

:data:`Perturb` is torchdiffeq's own enum (``flowkit.Perturb``), for functions
that take torchdiffeq's ``perturb`` keyword.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from flowkit.odeint_methods import supported_callbacks, user_callbacks
from flowkit.state import Dynamics, State, as_tuple, like

__all__ = [
    "ADJOINT_PARAMS_MESSAGE",
    "ComplexState",
    "adjoint_norm_adapter",
    "cast_times",
    "initial_only",
    "needs_adjoint_params",
    "perturb_enum",
    "warn_unsupported_callbacks",
]

ADJOINT_PARAMS_MESSAGE = (
    "func must be an instance of nn.Module to specify the adjoint parameters; alternatively they "
    "can be specified explicitly via the `adjoint_params` argument. If there are no parameters "
    "then it is allowable to set `adjoint_params=()`."
)
"""torchdiffeq's message, word for word."""

_HALF = (torch.float16, torch.bfloat16)


def perturb_enum() -> type:
    """torchdiffeq's ``Perturb`` enum (``NONE``, ``PREV``, ``NEXT``)."""
    import torchdiffeq  # noqa: F401
    from torchdiffeq._impl.misc import Perturb

    return Perturb


def needs_adjoint_params(func: object, adjoint_params: Sequence[Tensor] | None) -> None:
    """Refuse a plain function without ``adjoint_params``, as torchdiffeq's ``odeint_adjoint``.

    Raises:
        ValueError: when ``func`` is not an ``nn.Module`` and no ``adjoint_params``
            are given (``adjoint_params=()`` says there are none).
    """
    if adjoint_params is None and not isinstance(func, nn.Module):
        raise ValueError(ADJOINT_PARAMS_MESSAGE)


def cast_times(t: object, y0: State) -> object:
    """``t`` in the state's real dtype, as torchdiffeq calls the function (differentiably).

    Half precision is left alone, unlike torchdiffeq: float16/bfloat16 times
    are refused (:func:`flowkit.solve.check_times`; they cannot hold 0.1), and
    a half-precision state keeps float32 times.
    """
    if not isinstance(t, Tensor) or not t.is_floating_point():
        return t
    leaf = as_tuple(y0)[0]
    if not (leaf.is_floating_point() or leaf.is_complex()):
        return t
    dtype = leaf.abs().dtype if leaf.is_complex() else leaf.dtype
    if t.dtype in _HALF or dtype in _HALF:
        return t  # half-precision times are refused, a half state keeps float32 times
    return t if t.dtype == dtype else t.to(dtype)


def initial_only(y0: State) -> State:
    """The initial state stacked along a new first axis (``len(t) == 1``)."""
    return like(y0, tuple(leaf.clone().unsqueeze(0) for leaf in as_tuple(y0)))


def warn_unsupported_callbacks(func: object, method: str | None) -> None:
    """torchdiffeq's warning for callbacks ``func`` defines that ``method`` never calls."""
    from flowkit.odeint_methods import TORCHDIFFEQ_NAMES

    name = "dopri5" if method is None else method
    if name not in TORCHDIFFEQ_NAMES:
        return
    given = user_callbacks(func)
    invalid = given - supported_callbacks(name) if given else set()
    if invalid:
        warnings.warn(f"Solver '{name}' does not support callbacks {invalid}", stacklevel=3)


class ComplexState:
    """Solves a complex state as pairs of reals, as torchdiffeq does.

    Arguments:
        y0: the initial state; when no leaf is complex nothing changes.

    Example:
        >>> import torch
        >>> c = ComplexState(torch.tensor([1j]))
        >>> c.y0.shape
        torch.Size([1, 2])
    """

    def __init__(self, y0: State) -> None:
        leaves = as_tuple(y0)
        self.template = y0
        self.complex = tuple(leaf.is_complex() for leaf in leaves)
        self.active = any(self.complex)
        self.y0 = like(
            y0, tuple(self._real(leaf, c) for leaf, c in zip(leaves, self.complex, strict=True))
        )

    @staticmethod
    def _real(leaf: Tensor, is_complex: bool) -> Tensor:
        return torch.view_as_real(leaf) if is_complex else leaf

    def _complex(self, leaves: Sequence[Tensor]) -> tuple[Tensor, ...]:
        return tuple(
            torch.view_as_complex(x.contiguous()) if c else x
            for x, c in zip(leaves, self.complex, strict=True)
        )

    def func(self, func: Dynamics) -> Dynamics:
        """``func`` on the real view: complex state in, real pairs out."""
        if not self.active:
            return func

        def real_func(t: Tensor, y: State) -> State:
            out = func(t, like(self.template, self._complex(as_tuple(y))))
            leaves = as_tuple(out)
            return like(
                self.template,
                tuple(self._real(x, c) for x, c in zip(leaves, self.complex, strict=True)),
            )

        for name in user_callbacks(func):  # keep torchdiffeq's step callbacks reachable
            setattr(real_func, name, getattr(func, name))
        return real_func

    def restore(self, ys: State) -> State:
        """The solution in the caller's (complex) dtype."""
        if not self.active:
            return ys
        return like(self.template, self._complex(as_tuple(ys)))


def adjoint_norm_adapter(norm: Callable[[Any], Tensor]) -> Callable[[tuple[Tensor, ...]], Tensor]:
    """A torchdiffeq adjoint norm, called the way torchdiffeq calls it.

    flowkit's adjoint hands the backward integrator's norm the augmented
    leaves ``(*y, *a_y, *a_params)``; torchdiffeq's adjoint norm takes
    ``(t, y, adj_y, *adj_params)`` for a tensor state and ``(t, *y, *adj_y,
    *adj_params)`` for a tuple. flowkit's adjoint integrates no time adjoint
    (time gradients come from the sensitivities at the output times), so the
    ``t`` entry is a zero scalar.
    """

    def adapted(leaves: tuple[Tensor, ...]) -> Tensor:
        zero = torch.zeros((), dtype=leaves[0].dtype, device=leaves[0].device)
        return norm((zero, *leaves))

    return adapted
