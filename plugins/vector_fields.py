"""Built-in vector fields: ``mlp``, ``concatsquash``, ``hypernet`` and ``linear``.

Every field is an :class:`~flowkit.interfaces.VectorField` computing ``f(t, x)``
for a batch ``x`` of shape ``(batch, dim)`` with independent rows. Constructors
take the dimension ``dim`` and keyword-only options; activations are chosen by
name (see :data:`ACTIVATIONS`). Parameters are created in the default dtype;
move a field with ``.to(...)`` like any module.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from flowkit.hookspecs import Register, hookimpl
from flowkit.interfaces import VectorField

__all__ = [
    "ACTIVATIONS",
    "ACTIVATION_DERIVATIVES",
    "ConcatSquashField",
    "ConcatSquashLinear",
    "HyperNetField",
    "LinearField",
    "MLPField",
    "make_activation",
    "flowkit_register_vector_fields",
]

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
}
"""Activation names accepted by the fields' ``activation`` option."""


def _sigmoid_derivative(a: Tensor) -> Tensor:
    s = torch.sigmoid(a)
    return s * (1 - s)


def _silu_derivative(a: Tensor) -> Tensor:
    s = torch.sigmoid(a)
    return s * (1 + a * (1 - s))


def _gelu_derivative(a: Tensor) -> Tensor:
    cdf = 0.5 * (1 + torch.erf(a / math.sqrt(2)))
    return cdf + a * torch.exp(-0.5 * a * a) / math.sqrt(2 * math.pi)


ACTIVATION_DERIVATIVES: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": lambda a: 1 - torch.tanh(a).pow(2),
    "softplus": torch.sigmoid,
    "relu": lambda a: (a > 0).to(a.dtype),
    "elu": lambda a: torch.where(a > 0, torch.ones_like(a), torch.exp(a)),
    "silu": _silu_derivative,
    "swish": _silu_derivative,
    "sigmoid": _sigmoid_derivative,
    "gelu": _gelu_derivative,
}
"""The derivative of each activation of :data:`ACTIVATIONS` (default parameters)."""


def make_activation(name: str) -> nn.Module:
    """Build the activation module called ``name``.

    Raises:
        ValueError: for an unknown name, listing the valid ones.
    """
    if not isinstance(name, str) or name.lower() not in ACTIVATIONS:
        raise ValueError(
            f"Unknown activation {name!r}; choose one of: {', '.join(sorted(ACTIVATIONS))}."
        )
    return ACTIVATIONS[name.lower()]()


def _check_dim(dim: object) -> int:
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim!r}.")
    return dim


def _check_widths(hidden: object, what: str = "hidden") -> tuple[int, ...]:
    if isinstance(hidden, int):
        hidden = (hidden,)
    try:
        widths = tuple(hidden)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"{what} must be a sequence of positive widths, got {hidden!r}.") from None
    if not widths or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
        raise ValueError(f"{what} must be a non-empty sequence of positive ints, got {hidden!r}.")
    return widths


def _time_column(t: Tensor, x: Tensor) -> Tensor:
    """``t`` as a ``(batch, 1)`` column in ``x``'s dtype and device."""
    return torch.as_tensor(t, dtype=x.dtype, device=x.device).reshape(1, 1).expand(x.shape[0], 1)


class MLPField(VectorField):
    """A multilayer perceptron on ``[t, x]``: time concatenated to the input.

    Its divergence is known in closed form: the Jacobian is
    ``W_out D_L W_L ... D_1 W_1x`` with ``D_k`` the diagonal matrices of the
    activations' derivatives and ``W_1x`` the first layer without its time
    column, so :meth:`divergence` computes the exact trace from that product
    (forward accumulation over ``min(dim, width_1)`` columns, using
    ``tr(D_1 W_1x W_out ...)`` cyclically when the first hidden layer is
    narrower than ``dim``), with no vector-Jacobian product at all. The cost is
    ``O(batch * sum_k width_k width_(k+1) * min(dim, width_1))``.

    Arguments:
        dim: the dimension of ``x``.
        hidden: widths of the hidden layers.
        activation: the name of the activation between layers (see :data:`ACTIVATIONS`).

    Raises:
        ValueError: for a non-positive ``dim``, bad widths or an unknown activation.
    """

    has_divergence = True

    def __init__(
        self, *, dim: int, hidden: Sequence[int] = (64, 64, 64), activation: str = "tanh"
    ) -> None:
        super().__init__()
        self.dim = _check_dim(dim)
        widths = _check_widths(hidden)
        act = make_activation(activation)
        self._derivative = ACTIVATION_DERIVATIVES[activation.lower()]
        layers: list[nn.Module] = []
        fan_in = self.dim + 1
        for width in widths:
            layers += [nn.Linear(fan_in, width), type(act)()]
            fan_in = width
        layers.append(nn.Linear(fan_in, self.dim))
        self.net = nn.Sequential(*layers)

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        """``f(t, x)`` for ``x`` of shape ``(batch, dim)``."""
        return self.net(torch.cat([_time_column(t, x), x], dim=1))

    divergence_chunk_elements: int = 2**18
    """Batch rows are processed in chunks whose Jacobian block holds about this many
    entries: small enough to stay in cache, large enough to keep the per-chunk
    overhead small. On one CPU thread (64-64-64 tanh field, no grad, a loaded 2-core
    machine) one batch-wide block took 1.75x as long at d=2, batch 65536, and 1.9x
    at d=8, batch 16384 (medians of 10 interleaved calls); compare on your machine
    by timing ``value_and_divergence`` with this attribute set very large."""

    def value_and_divergence(self, t: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(f(t, x), tr(df/dx))`` from one forward pass; see the class docstring."""
        linears = [m for m in self.net if isinstance(m, nn.Linear)]
        columns = min(self.dim, linears[0].out_features)
        width = max(m.out_features for m in linears[:-1])
        chunk = max(1, self.divergence_chunk_elements // (columns * width))
        if x.shape[0] <= chunk:
            return self._value_and_divergence(t, x)
        parts = [self._value_and_divergence(t, xc) for xc in x.split(chunk)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def _value_and_divergence(self, t: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        linears = [m for m in self.net if isinstance(m, nn.Linear)]
        h = torch.cat([_time_column(t, x), x], dim=1)
        slopes = []
        for i, layer in enumerate(linears[:-1]):
            pre = layer(h)
            slopes.append(self._derivative(pre))
            h = self.net[2 * i + 1](pre)
        out = linears[-1](h)
        w_in = linears[0].weight[:, 1:]  # (h1, dim): the x columns
        w_out = linears[-1].weight  # (dim, hL)
        hidden_w = [layer.weight for layer in linears[1:-1]]
        # Jacobian columns are kept as rows, (batch, columns, width), so each layer is one
        # large matrix product (batch * columns, width) @ (width, width').
        if self.dim <= w_in.shape[0]:
            # forward accumulation of the Jacobian's dim columns through the hidden layers
            m = slopes[0].unsqueeze(1) * w_in.T.contiguous()  # (B, dim, h1), row-major
            for w, s in zip(hidden_w, slopes[1:], strict=True):
                m = (m @ w.T) * s.unsqueeze(1)  # (B, dim, h_k)
            div = (m * w_out).sum((1, 2))  # sum_ij W_out[i, j] (D_L ... W_1x)[j, i]
        else:
            # tr(W_out D_L ... W_2 D_1 W_1x) = tr(D_1 (W_1x W_out) D_L W_L ... D_2 W_2)
            c = w_in @ w_out  # (h1, hL)
            if not hidden_w:
                div = (slopes[0] * torch.diagonal(c)).sum(-1)
            else:
                r = slopes[1].unsqueeze(1) * hidden_w[0].T.contiguous()  # (B, h1, h2)
                for w, s in zip(hidden_w[1:], slopes[2:], strict=True):
                    r = (r @ w.T) * s.unsqueeze(1)  # (B, h1, h_k)
                div = ((r * c).sum(-1) * slopes[0]).sum(-1)
        return out, div

    def divergence(self, t: Tensor, x: Tensor) -> Tensor:
        """The exact ``tr(df/dx)`` per sample, shape ``(batch,)``."""
        return self.value_and_divergence(t, x)[1]


class ConcatSquashLinear(nn.Module):
    """A linear map of ``x`` gated and shifted by functions of ``t``.

    ``y = (W x + c) * sigmoid(g t + h) + u t`` (FFJORD's ConcatSquash layer).

    References:
        Grathwohl et al., "FFJORD: Free-form Continuous Dynamics for Scalable
        Reversible Generative Models", ICLR 2019.
    """

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)
        self.gate = nn.Linear(1, dim_out)
        self.shift = nn.Linear(1, dim_out, bias=False)

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        """Apply the layer to ``x`` of shape ``(batch, dim_in)`` at time ``t``."""
        tt = torch.as_tensor(t, dtype=x.dtype, device=x.device).reshape(1, 1)
        return self.linear(x) * torch.sigmoid(self.gate(tt)) + self.shift(tt)


class ConcatSquashField(VectorField):
    """A stack of :class:`ConcatSquashLinear` layers with activations between them.

    Arguments:
        dim: the dimension of ``x``.
        hidden: widths of the hidden layers.
        activation: the name of the activation between layers.

    References:
        Grathwohl et al., "FFJORD", ICLR 2019.
    """

    def __init__(
        self, *, dim: int, hidden: Sequence[int] = (64, 64, 64), activation: str = "tanh"
    ) -> None:
        super().__init__()
        self.dim = _check_dim(dim)
        widths = (*_check_widths(hidden), self.dim)
        fan_ins = (self.dim, *widths[:-1])
        self.layers = nn.ModuleList(
            ConcatSquashLinear(a, b) for a, b in zip(fan_ins, widths, strict=True)
        )
        self.activations = nn.ModuleList(make_activation(activation) for _ in widths[:-1])

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        """``f(t, x)`` for ``x`` of shape ``(batch, dim)``."""
        h = x
        for i, layer in enumerate(self.layers):
            h = layer(t, h)
            if i < len(self.activations):
                h = self.activations[i](h)
        return h


class HyperNetField(VectorField):
    """A one-hidden-layer field whose weights a small network produces from ``t``.

    ``f(t, x) = act(x W(t)^T + b(t)) (U(t) * sigmoid(G(t)))`` with ``W, U, G`` of
    shape ``(width, dim)`` and ``b`` of shape ``(width,)``, all read off the
    output of the hypernetwork ``t -> R^(3 width dim + width)``.

    Arguments:
        dim: the dimension of ``x``.
        width: the number of hidden units of the produced layer.
        hyper_hidden: widths of the hypernetwork's hidden layers.
        activation: the activation of the produced layer and of the hypernetwork.

    References:
        Ha, Dai and Le, "HyperNetworks", ICLR 2017; Chen et al., "Neural Ordinary
        Differential Equations", NeurIPS 2018 (the CNF of their examples).
    """

    def __init__(
        self,
        *,
        dim: int,
        width: int = 64,
        hyper_hidden: Sequence[int] = (32, 32),
        activation: str = "tanh",
    ) -> None:
        super().__init__()
        self.dim = _check_dim(dim)
        (self.width,) = _check_widths(width, "width")
        layers: list[nn.Module] = []
        fan_in = 1
        for w in _check_widths(hyper_hidden, "hyper_hidden"):
            layers += [nn.Linear(fan_in, w), make_activation(activation)]
            fan_in = w
        layers.append(nn.Linear(fan_in, 3 * self.width * self.dim + self.width))
        self.hyper = nn.Sequential(*layers)
        self.act = make_activation(activation)

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        """``f(t, x)`` for ``x`` of shape ``(batch, dim)``."""
        tt = torch.as_tensor(t, dtype=x.dtype, device=x.device).reshape(1, 1)
        params = self.hyper(tt).reshape(-1)
        n = self.width * self.dim
        w = params[:n].reshape(self.width, self.dim)
        u = params[n : 2 * n].reshape(self.width, self.dim)
        g = params[2 * n : 3 * n].reshape(self.width, self.dim)
        b = params[3 * n :]
        return self.act(x @ w.T + b) @ (u * torch.sigmoid(g))


def _init_tensor(value: Tensor | None, shape: tuple[int, ...], name: str, scale: float) -> Tensor:
    if value is None:
        return scale * torch.randn(shape)
    value = torch.as_tensor(value, dtype=torch.get_default_dtype())
    if tuple(value.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(value.shape)}.")
    return value.clone()


class LinearField(VectorField):
    """An affine field ``f(t, x) = A(t) x + b(t)`` with its exact divergence ``tr A(t)``.

    ``A(t) = A0 + t A1`` and ``b(t) = b0 + t b1`` when ``time_dependent`` is True,
    else ``A(t) = A0`` and ``b(t) = b0``. The flow of a constant ``A`` is
    ``x(t) = expm(A t) x(0)`` (plus the bias term), which makes this field the
    reference for closed-form tests.

    Arguments:
        dim: the dimension of ``x``.
        matrix: the initial ``A0``, shape ``(dim, dim)`` (default: random, scaled by ``scale``).
        bias: the initial ``b0``, shape ``(dim,)`` (default: zeros).
        time_dependent: whether ``A`` and ``b`` vary linearly in ``t``.
        time_matrix: the initial ``A1`` (only with ``time_dependent``; default random).
        time_bias: the initial ``b1`` (only with ``time_dependent``; default zeros).
        scale: the standard deviation of random initial matrix entries.

    Raises:
        ValueError: for shapes that do not match ``dim``, or time terms given
            without ``time_dependent=True``.
    """

    has_divergence = True

    def __init__(
        self,
        *,
        dim: int,
        matrix: Tensor | None = None,
        bias: Tensor | None = None,
        time_dependent: bool = False,
        time_matrix: Tensor | None = None,
        time_bias: Tensor | None = None,
        scale: float = 0.1,
    ) -> None:
        super().__init__()
        self.dim = _check_dim(dim)
        self.time_dependent = bool(time_dependent)
        if not self.time_dependent and (time_matrix is not None or time_bias is not None):
            raise ValueError(
                "time_matrix/time_bias were given but time_dependent=False; "
                "pass time_dependent=True to use them."
            )
        square = (self.dim, self.dim)
        scaled = scale / self.dim**0.5
        self.matrix = nn.Parameter(_init_tensor(matrix, square, "matrix", scaled))
        zeros = torch.zeros(self.dim) if bias is None else bias
        self.bias = nn.Parameter(_init_tensor(zeros, (self.dim,), "bias", 0.0))
        if self.time_dependent:
            a1 = _init_tensor(time_matrix, square, "time_matrix", scaled)
            self.time_matrix = nn.Parameter(a1)
            tz = torch.zeros(self.dim) if time_bias is None else time_bias
            self.time_bias = nn.Parameter(_init_tensor(tz, (self.dim,), "time_bias", 0.0))

    def coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(A(t), b(t))``."""
        if not self.time_dependent:
            return self.matrix, self.bias
        tt = torch.as_tensor(t, dtype=self.matrix.dtype, device=self.matrix.device)
        return self.matrix + tt * self.time_matrix, self.bias + tt * self.time_bias

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        """``A(t) x + b(t)`` for ``x`` of shape ``(batch, dim)``."""
        a, b = self.coefficients(t)
        return x @ a.T + b

    def divergence(self, t: Tensor, x: Tensor) -> Tensor:
        """``tr A(t)`` for every row of ``x``, shape ``(batch,)``."""
        a, _ = self.coefficients(t)
        return torch.diagonal(a).sum().expand(x.shape[0])


@hookimpl
def flowkit_register_vector_fields(register: Register) -> None:
    """Register the built-in vector fields."""
    register("mlp", MLPField)
    register("concatsquash", ConcatSquashField, aliases=("concat_squash",))
    register("hypernet", HyperNetField)
    register("linear", LinearField, aliases=("affine",))
