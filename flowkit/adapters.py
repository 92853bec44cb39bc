"""Adapters that make networks trained elsewhere into flowkit vector fields.

flowkit calls a field as ``field(t, x)`` with a scalar (0-dim) time ``t`` and a
batch ``x`` of shape ``(batch, dim)``. Networks trained with other libraries
follow other conventions: torchcfm's examples call ``model(x, t)`` or
``model(torch.cat([x, t[:, None]], -1))``, Meta's ``flow_matching`` calls
``model(x=x, t=t, **extras)`` with ``t`` of shape ``(batch,)``. :func:`as_field`
wraps such a network in one line so that every flowkit integrator, trace
estimator and gradient strategy applies to it, and :meth:`flowkit.CNF.log_prob`
gives the likelihood of a model that flowkit never trained.

Time direction: torchcfm and Meta's ``flow_matching`` put the noise (base) at
``t = 0`` and the data at ``t = 1``, as flowkit does, so their networks need no
remapping. The score-SDE literature (Song et al.) puts the data at ``t = 0``;
the adapter never remaps time unless asked with ``reverse_time=True``, which
uses ``f(t, x) = -net(1 - t, x)`` (time span ``[0, 1]``).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch
from torch import Tensor, nn

from flowkit.errors import InvalidInputError, PluginContractError
from flowkit.interfaces import VectorField

__all__ = ["SIGNATURES", "TIME_MODES", "ExternalField", "as_field"]

Signature = Literal["t, x", "x, t", "x"]
TimeMode = Literal["scalar", "vector", "column", "concat"]

#: The argument orders :func:`as_field` understands, and what each means.
SIGNATURES: dict[str, str] = {
    "t, x": "net(t, x) (torchdyn, torchdiffeq, flowkit)",
    "x, t": "net(x, t) (torchcfm models, Meta's flow_matching ModelWrapper)",
    "x": "net(x_and_t): one input, time concatenated to x as its last column (needs time='concat')",
}

#: The ways of handing time to the network, and the shape each gives it.
TIME_MODES: dict[str, str] = {
    "scalar": "t as a 0-dim tensor",
    "vector": "t as a (batch,) tensor, one time per sample",
    "column": "t as a (batch, 1) tensor",
    "concat": "t appended to x as a last column: net(torch.cat([x, t_column], -1)) "
    "(needs signature='x')",
}


def _closest(given: str, valid: Mapping[str, str]) -> str:
    matches = difflib.get_close_matches(given, list(valid), n=1, cutoff=0.5)
    return f" Did you mean {matches[0]!r}?" if matches else ""


def _normalise_signature(signature: object) -> str:
    if not isinstance(signature, str):
        raise TypeError(
            f"signature must be a string, one of {sorted(SIGNATURES)}, got {signature!r}."
        )
    key = ", ".join(
        part.strip() for part in signature.strip().strip("()").split(",") if part.strip()
    )
    if key not in SIGNATURES:
        valid = "; ".join(f"{name!r}: {meaning}" for name, meaning in SIGNATURES.items())
        raise ValueError(
            f"unknown signature {signature!r}; valid signatures are {valid}."
            + _closest(key, SIGNATURES)
        )
    return key


def _check_time_mode(time: object) -> str:
    if not isinstance(time, str) or time not in TIME_MODES:
        valid = "; ".join(f"{name!r}: {meaning}" for name, meaning in TIME_MODES.items())
        hint = _closest(time.lower(), TIME_MODES) if isinstance(time, str) else ""
        raise ValueError(f"unknown time mode {time!r}; valid time modes are {valid}.{hint}")
    return time


class ExternalField(VectorField):
    """A network with another calling convention, seen as a flowkit vector field.

    Build it with :func:`as_field`; the arguments are documented there.
    ``forward(t, x)`` follows the flowkit field contract: ``t`` a scalar time,
    ``x`` of shape ``(batch, dim)``, output of shape ``(batch, dim)``. The
    adapter computes no divergence in closed form (``has_divergence`` is
    False): use a trace estimator such as ``"exact"`` or ``"hutchinson"``.

    Attributes:
        net: the wrapped network (a registered submodule when it is an
            ``nn.Module``, so its parameters belong to the field; for a bound
            method of a module, that module is registered as ``net_owner``).
        signature: the argument order, a key of :data:`SIGNATURES`.
        time: how time is handed to the network, a key of :data:`TIME_MODES`.
        reverse_time: whether the network's time runs from data (0) to noise (1).
        extras: the constant keyword arguments passed on every call (tensors
            among them are non-persistent buffers, moved by ``.to()``).
    """

    def __init__(
        self,
        net: Callable[..., Tensor],
        *,
        signature: str,
        time: str,
        extras: Mapping[str, Any] | None = None,
        reverse_time: bool = False,
    ) -> None:
        super().__init__()
        if not callable(net):
            raise TypeError(f"net must be an nn.Module or a callable, got {type(net).__name__}.")
        self.signature = _normalise_signature(signature)
        self.time = _check_time_mode(time)
        if (self.signature == "x") != (self.time == "concat"):
            raise ValueError(
                f"signature={signature!r} does not fit time={time!r}: a network that takes "
                "time concatenated to x has one input, so use signature='x' with "
                "time='concat'; a network called with separate t and x uses "
                "signature='t, x' or 'x, t' with time='scalar', 'vector' or 'column'."
            )
        if not isinstance(reverse_time, bool):
            raise TypeError(f"reverse_time must be True or False, got {reverse_time!r}.")
        self.reverse_time = reverse_time
        if isinstance(net, nn.Module):
            self.net = net
        else:
            self._net_callable = net
            owner = getattr(net, "__self__", None)  # a bound method such as model.velocity
            if isinstance(owner, nn.Module):
                self.net_owner = owner
        self._extra_values: dict[str, Any] = {}
        for name, value in dict(extras or {}).items():
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(f"extras keys must be keyword argument names, got {name!r}.")
            if name in ("t", "x"):
                raise ValueError(f"extras may not set {name!r}: the adapter passes t and x itself.")
            if isinstance(value, Tensor):
                self.register_buffer(f"extra_{name}", value, persistent=False)
            self._extra_values[name] = value

    @property
    def extras(self) -> dict[str, Any]:
        """The keyword arguments passed to the network on every call."""
        return {
            name: getattr(self, f"extra_{name}") if isinstance(value, Tensor) else value
            for name, value in self._extra_values.items()
        }

    def _call_net(self, t: Tensor, x: Tensor) -> Tensor:
        net = self.net if "net" in self._modules else self._net_callable
        batch = x.shape[0]
        if self.time == "scalar":
            time_arg = t
        elif self.time == "vector":
            time_arg = t.expand(batch).contiguous()
        else:  # "column" and "concat"
            time_arg = t.expand(batch, 1).contiguous()
        extras = self.extras
        if self.signature == "x":
            return net(torch.cat([x, time_arg], dim=-1), **extras)
        if self.signature == "x, t":
            return net(x, time_arg, **extras)
        return net(time_arg, x, **extras)

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        """Evaluate the network at ``(t, x)`` in its own convention; shape ``(batch, dim)``.

        Raises:
            InvalidInputError: if ``t`` is not a single time or ``x`` not 2-dim.
            PluginContractError: if the network returns something other than
                a tensor of ``x``'s shape.
        """
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        if t.numel() != 1:
            raise InvalidInputError(
                f"a flowkit field takes one time for the whole batch, got t of shape "
                f"{tuple(t.shape)}; the adapter builds the per-sample time itself."
            )
        if x.dim() != 2:
            raise InvalidInputError(f"x must have shape (batch, dim), got {tuple(x.shape)}.")
        t = t.reshape(())
        if self.reverse_time:
            out = self._call_net(1 - t, x)
        else:
            out = self._call_net(t, x)
        if not isinstance(out, Tensor) or out.shape != x.shape:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise PluginContractError(
                f"{self._describe_call(x)} returned {got}, expected shape "
                f"{tuple(x.shape)} like x; check signature= and time= against how the "
                "network was called in training.",
                component=self._net_name(),
                contract="forward(t, x) returns a tensor of x's shape",
            )
        return -out if self.reverse_time else out

    def probe(self, dim: int) -> None:
        """Call the network once on a small batch of zeros to check the convention.

        Raises:
            ValueError: for a ``dim`` that is not a positive integer.
            PluginContractError: if the call fails or returns the wrong shape,
                with the call that was made and the original error.
        """
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}.")
        reference = next(
            (p for p in self.parameters() if p.is_floating_point()),
            torch.zeros((), dtype=torch.get_default_dtype()),
        )
        batch = self._probe_batch(dim)
        x = torch.zeros(batch, dim, dtype=reference.dtype, device=reference.device)
        t = torch.full((), 0.5, dtype=reference.dtype, device=reference.device)
        with torch.no_grad():
            try:
                self(t, x)
            except PluginContractError:
                raise
            except Exception as exc:
                raise PluginContractError(
                    f"probe call {self._describe_call(x)} failed with "
                    f"{type(exc).__name__}: {exc}. Check signature= and time= against how "
                    "the network was called in training (and dim= and extras=).",
                    component=self._net_name(),
                    contract="forward(t, x) returns a tensor of x's shape",
                ) from exc

    def _probe_batch(self, dim: int) -> int:
        # Per-sample tensor extras fix the batch size; otherwise one that differs
        # from dim (and from 1), so that transposed or broadcast shapes show.
        rows = {
            value.shape[0]
            for value in self.extras.values()
            if isinstance(value, Tensor) and value.dim() >= 1 and value.shape[0] > 1
        }
        if len(rows) == 1:
            return rows.pop()
        return 3 if dim != 3 else 4

    def _net_name(self) -> str:
        net = self.net if "net" in self._modules else self._net_callable
        return getattr(net, "__name__", type(net).__name__)

    def _describe_call(self, x: Tensor) -> str:
        batch, dim = x.shape
        time_shape = {"scalar": "()", "vector": f"({batch},)", "column": f"({batch}, 1)"}
        extras = "".join(f", {name}=..." for name in self._extra_values)
        if self.signature == "x":
            return f"{self._net_name()}(x_and_t of shape ({batch}, {dim + 1}){extras})"
        args = {
            "x": f"x of shape ({batch}, {dim})",
            "t": f"t of shape {time_shape[self.time]}",
        }
        first, second = (part.strip() for part in self.signature.split(","))
        return f"{self._net_name()}({args[first]}, {args[second]}{extras})"

    def extra_repr(self) -> str:
        extras = ", ".join(self._extra_values)
        return (
            f"signature={self.signature!r}, time={self.time!r}, "
            f"reverse_time={self.reverse_time}" + (f", extras=[{extras}]" if extras else "")
        )


def as_field(
    net: Callable[..., Tensor],
    *,
    signature: Signature | str,
    time: TimeMode | str,
    extras: Mapping[str, Any] | None = None,
    reverse_time: bool = False,
    dim: int | None = None,
) -> ExternalField:
    """Wrap a network trained elsewhere as a flowkit vector field ``f(t, x)``.

    Arguments:
        net: the network: an ``nn.Module`` or a method of one (whose
            parameters then belong to the field), or any callable.
        signature: the order of its arguments: ``"t, x"``, ``"x, t"``, or
            ``"x"`` for a network taking time concatenated to ``x`` (see
            :data:`SIGNATURES`).
        time: how it takes time: ``"scalar"`` (0-dim tensor), ``"vector"``
            (shape ``(batch,)``, torchcfm and Meta's ``flow_matching``),
            ``"column"`` (shape ``(batch, 1)``) or ``"concat"`` (a last column
            of the single input, with ``signature="x"``); see :data:`TIME_MODES`.
        extras: constant keyword arguments passed on every call, e.g.
            ``{"cond": y}`` for a conditional network. A tensor with one row per
            sample fits only batches of that size, in that order.
        reverse_time: for a network whose time runs from data (``t = 0``) to
            noise (``t = 1``), as in score SDEs: evaluate ``-net(1 - t, x)``.
            torchcfm and Meta's ``flow_matching`` already put the noise at 0
            and need the default, ``False``; no time is remapped unless asked.
        dim: if given, the network is called once on zeros of shape
            ``(batch, dim)`` to fail early when the convention is wrong (the
            batch is the number of rows of per-sample tensor extras, if any).

    Returns:
        An :class:`ExternalField`, usable wherever flowkit takes a field.

    Raises:
        ValueError: for an unknown ``signature`` or ``time`` (the message lists
            the valid ones), a pair of them that does not fit, bad ``extras``
            names, or a ``dim`` that is not a positive integer.
        TypeError: for a ``net`` that is not callable or a non-bool ``reverse_time``.
        PluginContractError: if the probe call (with ``dim``) fails or returns
            a shape other than ``(batch, dim)``.

    Example:
        A network in the torchcfm / Meta ``flow_matching`` convention,
        ``net(x, t)`` with one time per sample, becomes a field and a CNF:

        >>> import torch, flowkit
        >>> class Net(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.mlp = torch.nn.Linear(3, 2)
        ...     def forward(self, x, t):
        ...         return self.mlp(torch.cat([x, t[:, None]], dim=-1))
        >>> field = flowkit.as_field(Net(), signature="x, t", time="vector", dim=2)
        >>> field(torch.tensor(0.5), torch.zeros(4, 2)).shape
        torch.Size([4, 2])
        >>> model = flowkit.CNF(field, "rk4", "exact", "backprop", dim=2,
        ...                     integrator_options={"n_steps": 4})
        >>> model.log_prob(torch.zeros(5, 2)).shape
        torch.Size([5])
        >>> flowkit.as_field(Net(), signature="t, x", time="vector", dim=2)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        flowkit.errors.PluginContractError: probe call Net(t of shape (3,), x ...) failed ...
    """
    field = ExternalField(
        net, signature=signature, time=time, extras=extras, reverse_time=reverse_time
    )
    if dim is not None:
        field.probe(dim)
    return field
