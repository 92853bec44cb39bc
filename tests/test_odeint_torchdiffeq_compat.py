"""``flowkit.odeint`` / ``odeint_adjoint`` against torchdiffeq on the same calls.

Each case runs the same call through torchdiffeq and flowkit (torchdiffeq is
a dependency) and compares values and gradients, for tensor and tuple states,
forward and reverse time where it applies. Float64 throughout, except where
the dtype itself is the point.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torchdiffeq
from torch import Tensor, nn

import flowkit
from flowkit import odeint, odeint_adjoint
from flowkit.odeint_methods import resolve_method
from flowkit.solve import solve as solve_path

D = torch.float64
TIGHT = {"rtol": 1e-10, "atol": 1e-12}


class Linear(nn.Module):
    """``y' = (A + t B) y`` with parameters ``A`` and ``B``, on a tensor state."""

    def __init__(self) -> None:
        super().__init__()
        self.A = nn.Parameter(torch.tensor([[-0.3, 1.0], [-1.0, -0.2]], dtype=D))
        self.B = nn.Parameter(torch.tensor([[0.1, 0.0], [0.2, -0.1]], dtype=D))

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return y @ (self.A + t * self.B).T


class Pair(nn.Module):
    """The same system split into a tuple ``(u, v)``, with a cross term."""

    def __init__(self) -> None:
        super().__init__()
        self.k = nn.Parameter(torch.tensor([0.7, -0.4], dtype=D))

    def forward(self, t: Tensor, y: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        u, v = y
        return (self.k[0] * v - 0.1 * u * t, -self.k[1] * u * torch.cos(t) - v)


def _y0(kind: str) -> Any:
    if kind == "tensor":
        return torch.tensor([[1.0, 0.5], [-0.3, 0.8]], dtype=D)
    return (torch.tensor([1.0, -0.5], dtype=D), torch.tensor([0.2, 0.4], dtype=D))


def _field(kind: str) -> nn.Module:
    return Linear() if kind == "tensor" else Pair()


def _times(reverse: bool) -> Tensor:
    t = torch.tensor([0.0, 0.4, 1.1], dtype=D)
    return t.flip(0) if reverse else t


def _leaves(y: Any) -> tuple[Tensor, ...]:
    return y if isinstance(y, tuple) else (y,)


def _loss(ys: Any) -> Tensor:
    return sum(
        (leaf * torch.linspace(0.5, 1.5, leaf.numel(), dtype=D).view_as(leaf)).sum()
        for leaf in _leaves(ys)
    )


def _grads(
    solve: Callable[..., Any], kind: str, reverse: bool, **kw: Any
) -> tuple[tuple[Tensor, ...], list[Tensor]]:
    """Values and gradients (y0, parameters, t) of one solve on a fresh field."""
    torch.manual_seed(0)
    field = _field(kind)
    y0 = tuple(leaf.clone().requires_grad_(True) for leaf in _leaves(_y0(kind)))
    t = _times(reverse).requires_grad_(True)
    ys = solve(field, y0 if kind == "tuple" else y0[0], t, **kw)
    inputs = [*y0, *field.parameters(), t]
    grads = torch.autograd.grad(_loss(ys), inputs)
    return tuple(leaf.detach() for leaf in _leaves(ys)), list(grads)


def _close(a: Any, b: Any, rtol: float, atol: float) -> None:
    a = a if isinstance(a, list) else _leaves(a)
    b = b if isinstance(b, list) else _leaves(b)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=rtol, atol=atol)


CASES = [(k, r) for k in ("tensor", "tuple") for r in (False, True)]


# -- silent cases ---------------------------------------------------------------
@pytest.mark.parametrize(("kind", "reverse"), CASES)
def test_backprop_values_and_gradients_including_t_match_torchdiffeq(
    kind: str, reverse: bool
) -> None:
    ours = _grads(odeint, kind, reverse, method="dopri5", **TIGHT)
    theirs = _grads(torchdiffeq.odeint, kind, reverse, method="dopri5", **TIGHT)
    _close(ours[0], theirs[0], 1e-9, 1e-10)
    _close(ours[1], theirs[1], 1e-7, 1e-8)  # the last one is t.grad


def test_adjoint_with_a_closure_asks_for_adjoint_params_like_torchdiffeq() -> None:
    A = torch.tensor([[0.0, 1.0], [-1.0, 0.0]], dtype=D, requires_grad=True)

    def func(t: Tensor, y: Tensor) -> Tensor:
        return A @ y

    y0, t = torch.ones(2, dtype=D), _times(False)
    with pytest.raises(ValueError) as theirs:
        torchdiffeq.odeint_adjoint(func, y0, t)
    for call in (
        lambda: odeint(func, y0, t, gradient="adjoint"),
        lambda: odeint_adjoint(func, y0, t),
    ):
        with pytest.raises(ValueError) as ours:
            call()
        assert str(ours.value) == str(theirs.value)
    grads = []
    for solve in (
        lambda: odeint(func, y0, t, gradient="adjoint", adjoint_params=(A,), **TIGHT),
        lambda: torchdiffeq.odeint_adjoint(func, y0, t, adjoint_params=(A,), **TIGHT),
    ):
        (g,) = torch.autograd.grad(solve()[-1].sum(), A)
        grads.append(g)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-7, atol=1e-8)
    assert grads[0].abs().sum() > 0.1
    # backprop needs no parameter list: gradients flow through the graph
    (g,) = torch.autograd.grad(odeint(func, y0, t, **TIGHT)[-1].sum(), A)
    torch.testing.assert_close(g, grads[1], rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize(("kind", "reverse"), CASES)
@pytest.mark.parametrize("norm", [None, "seminorm"])
def test_odeint_adjoint_gradients_match_torchdiffeq(kind: str, reverse: bool, norm: Any) -> None:
    kw: dict[str, Any] = {"method": "dopri5", **TIGHT}
    if norm is not None:
        kw["adjoint_options"] = {"norm": norm}
    ours = _grads(odeint_adjoint, kind, reverse, **kw)
    theirs = _grads(torchdiffeq.odeint_adjoint, kind, reverse, **kw)
    _close(ours[0], theirs[0], 1e-9, 1e-10)
    _close(ours[1], theirs[1], 1e-6, 1e-8)


def test_odeint_adjoint_with_other_backward_method_and_tolerances() -> None:
    kw = {
        "method": "dopri5",
        "adjoint_method": "bosh3",
        "adjoint_rtol": 1e-9,
        "adjoint_atol": 1e-11,
        **TIGHT,
    }
    ours = _grads(odeint_adjoint, "tensor", False, **kw)
    theirs = _grads(torchdiffeq.odeint_adjoint, "tensor", False, **kw)
    _close(ours[1], theirs[1], 1e-6, 1e-7)
    with pytest.raises(ValueError, match="adjoint_options"):
        odeint_adjoint(
            Linear(),
            _y0("tensor"),
            _times(False),
            method="dopri5",
            adjoint_method="bosh3",
            options={"first_step": 0.1},
        )
    with pytest.raises(ValueError, match="'seminorm' or a callable"):
        odeint_adjoint(Linear(), _y0("tensor"), _times(False), adjoint_options={"norm": "l2"})


@pytest.mark.parametrize("kind", ["tensor", "tuple"])
def test_a_callable_adjoint_norm_is_called_with_torchdiffeq_structure(kind: str) -> None:
    def recorder(calls: list[list[tuple[int, ...]]]) -> Callable[[Any], Tensor]:
        def norm(state: Any) -> Tensor:
            calls.append([tuple(x.shape) for x in state])
            return max(x.abs().pow(2).mean().sqrt() for x in state)

        return norm

    structures: list[list[list[tuple[int, ...]]]] = [[], []]
    for solve, calls in zip((odeint_adjoint, torchdiffeq.odeint_adjoint), structures, strict=True):
        field = _field(kind)
        y0 = tuple(x.clone().requires_grad_(True) for x in _leaves(_y0(kind)))
        ys = solve(
            field,
            y0 if kind == "tuple" else y0[0],
            _times(False),
            adjoint_options={"norm": recorder(calls)},
            **TIGHT,
        )
        _loss(ys).backward()
    assert structures[0] and structures[1]
    assert structures[0][-1] == structures[1][-1]  # (t, y..., adj_y..., *adj_params)


def test_a_norm_given_for_the_adjoint_backward_solve_is_called() -> None:
    calls: list[int] = []

    def norm(leaves: tuple[Tensor, ...]) -> Tensor:
        calls.append(len(leaves))
        return max(x.abs().pow(2).mean().sqrt() for x in leaves)

    field = Linear()
    y0 = _y0("tensor").requires_grad_(True)
    strategy = flowkit.get_registry().create(
        "gradient_strategy",
        "adjoint",
        backward_options={"norm": norm, **TIGHT},
        registry=flowkit.get_registry(),
    )
    ys = solve_path(field, y0, _times(False), gradient=strategy, integrator_options=TIGHT).ys
    assert not calls
    ys[-1].sum().backward()
    assert calls and set(calls) == {4}  # (y, a_y, a_A, a_B)
    with pytest.raises(ValueError, match="seminorm"):
        bad = flowkit.get_registry().create(
            "gradient_strategy",
            "adjoint",
            backward_options={"norm": norm},
            seminorm=True,
            registry=flowkit.get_registry(),
        )
        solve_path(field, y0, _times(False), gradient=bad)


@pytest.mark.parametrize("kind", ["tensor", "tuple"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("euler", None),
        ("midpoint", None),
        ("heun2", None),
        ("rk4", None),
        ("midpoint", {"step_size": 0.3}),
        ("heun2", {"step_size": 0.25, "interp": "cubic"}),
        ("heun3", None),
        ("rk4", {"step_size": 0.1}),
        ("euler", {"perturb": True}),
        ("rk4", {"grid_constructor": lambda f, y0, t: t}),
    ],
)
def test_fixed_step_grids_match_torchdiffeq(
    kind: str, reverse: bool, method: str, options: Any
) -> None:
    ours = _grads(odeint, kind, reverse, method=method, options=options)
    theirs = _grads(torchdiffeq.odeint, kind, reverse, method=method, options=options)
    _close(ours[0], theirs[0], 1e-12, 1e-13)
    _close(ours[1][:-1], theirs[1][:-1], 1e-10, 1e-12)  # t.grad: continuous, see odeint docs


def test_the_issue_numbers_for_fixed_steps() -> None:
    f = lambda t, y: -y  # noqa: E731
    y0 = torch.tensor([1.0], dtype=D)
    assert float(odeint(f, y0, torch.tensor([0.0, 1.0], dtype=D), method="euler")[-1]) == 0.0
    t = torch.tensor([0.0, 0.3, 1.0], dtype=D)
    ours = odeint(f, y0, t, method="euler", options={"step_size": 0.5})
    assert float(ours[-1]) == 0.25
    torch.testing.assert_close(
        ours, torchdiffeq.odeint(f, y0, t, method="euler", options={"step_size": 0.5})
    )
    # flowkit's n_steps keeps flowkit's meaning (torchdiffeq has no such option)
    many = odeint(f, y0, t, method="euler", options={"n_steps": 1000})
    assert abs(float(many[-1]) - 0.36788) < 2e-4


@pytest.mark.parametrize("kind", ["tensor", "tuple"])
def test_float32_state_with_float64_times_is_solved_in_float32(kind: str) -> None:
    seen: list[torch.dtype] = []
    field = _field(kind).float()

    def func(t: Tensor, y: Any) -> Any:
        seen.append(t.dtype)
        return field(t, y)

    y0 = tuple(x.float() for x in _leaves(_y0(kind)))
    y0 = y0 if kind == "tuple" else y0[0]
    t = _times(False)
    ours = odeint(func, y0, t)
    theirs = torchdiffeq.odeint(func, y0, t)
    assert set(seen) == {torch.float32}
    for a, b in zip(_leaves(ours), _leaves(theirs), strict=True):
        assert a.dtype == b.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


# -- options as torchdiffeq takes them -----------------------------------------------
@pytest.mark.parametrize("kind", ["tensor", "tuple"])
@pytest.mark.parametrize(
    "options",
    [
        {"jump_t": torch.tensor([0.5], dtype=D)},
        {"step_t": torch.tensor([0.3, 0.7], dtype=D)},
        {"safety": 0.8, "ifactor": 5.0, "dfactor": 0.3},
        {"dtype": torch.float32},
        {"first_step": 0.01},
        {"max_step": 0.1},
        {"min_step": 0.05},
    ],
    ids=lambda o: "-".join(o),
)
def test_adaptive_options_match_torchdiffeq(kind: str, options: dict[str, Any]) -> None:
    field = _field(kind)
    y0, t = _y0(kind), _times(False)
    with torch.no_grad():
        ours = odeint(field, y0, t, method="dopri5", options=options, rtol=1e-6, atol=1e-8)
        theirs = torchdiffeq.odeint(
            field, y0, t, method="dopri5", options=options, rtol=1e-6, atol=1e-8
        )
    _close(ours, theirs, 1e-6, 1e-8)


@pytest.mark.parametrize("kind", ["tensor", "tuple"])
@pytest.mark.parametrize("method", ["dopri5", "bosh3"])
def test_norm_is_called_as_torchdiffeq_calls_it(kind: str, method: str) -> None:
    kinds: list[list[str]] = [[], []]
    for solve, seen in zip((odeint, torchdiffeq.odeint), kinds, strict=True):

        def norm(x: Any, seen: list[str] = seen) -> Tensor:
            seen.append(type(x).__name__ + str(len(x) if isinstance(x, tuple) else ""))
            return max(v.abs().max() for v in _leaves(x))

        with torch.no_grad():
            solve(_field(kind), _y0(kind), _times(False), method=method, options={"norm": norm})
    assert set(kinds[0]) == set(kinds[1]) == {"Tensor" if kind == "tensor" else "tuple2"}


def test_max_num_steps_raises_like_a_step_budget() -> None:
    with pytest.raises(flowkit.MaxStepsExceededError):
        odeint(Linear(), _y0("tensor"), _times(False), options={"max_num_steps": 2}, **TIGHT)


def test_unknown_options_raise_where_torchdiffeq_warns() -> None:
    with pytest.warns(UserWarning, match="Unexpected arguments"):
        torchdiffeq.odeint(Linear(), _y0("tensor"), _times(False), options={"bogus": 1})
    for method in ("dopri5", "euler", "dopri8"):
        with pytest.raises(TypeError, match=r"Unknown option.*bogus"):
            odeint(Linear(), _y0("tensor"), _times(False), method=method, options={"bogus": 1})


def test_perturb_enum_is_torchdiffeqs() -> None:
    from torchdiffeq._impl.misc import Perturb

    assert flowkit.Perturb is Perturb
    assert {p.name for p in flowkit.Perturb} == {"NONE", "PREV", "NEXT"}


# -- callbacks -------------------------------------------------------------------
class Logged(Linear):
    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, float, float]] = []

    def callback_step(self, t0: Tensor, y0: Any, dt: Tensor) -> None:
        self.log.append(("step", float(t0), float(dt)))

    def callback_accept_step(self, t0: Tensor, y0: Any, dt: Tensor) -> None:
        self.log.append(("accept", float(t0), float(dt)))

    def callback_reject_step(self, t0: Tensor, y0: Any, dt: Tensor) -> None:
        self.log.append(("reject", float(t0), float(dt)))


@pytest.mark.parametrize("method", ["dopri5", "euler"])
@pytest.mark.parametrize("reverse", [False, True])
def test_callbacks_are_called_as_in_torchdiffeq(method: str, reverse: bool) -> None:
    logs, messages = [], []
    for solve in (odeint, torchdiffeq.odeint):
        field = Logged()
        kw: dict[str, Any] = {}
        if method == "dopri5":  # a first step far too long: rejected steps too
            kw = {"rtol": 1e-6, "atol": 1e-8, "options": {"first_step": 1.0}}
        with warnings.catch_warnings(record=True) as caught, torch.no_grad():
            warnings.simplefilter("always")
            solve(field, _y0("tensor"), _times(reverse), method=method, **kw)
        logs.append(field.log)
        messages.append(sorted(str(w.message) for w in caught if "callbacks" in str(w.message)))
    assert logs[0] == logs[1] and len(logs[0]) >= 2
    assert ("reject" in {e[0] for e in logs[0]}) or method == "euler"
    assert len(messages[0]) == len(messages[1]) == (1 if method == "euler" else 0)


class LoggedAdjoint(Linear):
    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, float, int]] = []

    def callback_step_adjoint(self, t0: Tensor, y: Any, dt: Tensor) -> None:
        self.log.append(("step", float(t0), len(y)))

    def callback_accept_step_adjoint(self, t0: Tensor, y: Any, dt: Tensor) -> None:
        self.log.append(("accept", float(t0), len(y)))

    def callback_reject_step_adjoint(self, t0: Tensor, y: Any, dt: Tensor) -> None:
        self.log.append(("reject", float(t0), len(y)))


def test_adjoint_callbacks_are_called_by_the_backward_solve() -> None:
    logs = []
    for solve in (odeint_adjoint, torchdiffeq.odeint_adjoint):
        field = LoggedAdjoint()
        ys = solve(field, _y0("tensor").requires_grad_(True), _times(False), rtol=1e-6, atol=1e-8)
        assert not field.log  # nothing in the forward solve
        ys.sum().backward()
        logs.append(field.log)
    ours, theirs = logs
    # the same backward steps to the step controller's precision (torchdiffeq's augmented
    # state also carries the time adjoint, one leaf more: (t, y, a_y, a_A, a_B))
    assert [e[0] for e in ours] == [e[0] for e in theirs]
    assert {e[2] for e in ours} == {4} and {e[2] for e in theirs} == {5}
    for a, b in zip(ours, theirs, strict=True):
        assert abs(a[1] - b[1]) < 0.02
    assert ours[0][1] == 1.1 and 0.0 < ours[-1][1] < 0.4


# -- shapes, names, complex ---------------------------------------------------------
@pytest.mark.parametrize("kind", ["tensor", "tuple"])
def test_a_single_time_returns_the_initial_state(kind: str) -> None:
    y0 = tuple(x.clone().requires_grad_(True) for x in _leaves(_y0(kind)))
    y0 = y0 if kind == "tuple" else y0[0]
    t = torch.tensor([0.3], dtype=D)
    ours, theirs = odeint(_field(kind), y0, t), torchdiffeq.odeint(_field(kind), y0, t)
    for a, b in zip(_leaves(ours), _leaves(theirs), strict=True):
        assert a.shape == b.shape and a.shape[0] == 1
        torch.testing.assert_close(a, b)
    (g,) = torch.autograd.grad(_leaves(ours)[0].sum(), _leaves(y0)[0])
    torch.testing.assert_close(g, torch.ones_like(g))


@pytest.mark.parametrize(
    "method", ["rk4", "dopri8", "fehlberg2", "heun3", "adaptive_heun", "bosh3", "dopri5"]
)
def test_torchdiffeq_names_mean_torchdiffeqs_methods(method: str) -> None:
    field, y0, t = Linear(), _y0("tensor"), _times(False)
    kw = {"rk4": {}, "heun3": {}, "fehlberg2": {}, "adaptive_heun": {"rtol": 1e-6, "atol": 1e-8}}
    kw = kw.get(method, TIGHT)
    with torch.no_grad():
        ours = odeint(field, y0, t, method=method, **kw)
        theirs = torchdiffeq.odeint(field, y0, t, method=method, **kw)
    # the backend runs torchdiffeq itself (round-off); a native twin agrees to the tolerance
    tol = {"rk4": 1e-13, "heun3": 1e-13, "dopri8": 1e-13, "fehlberg2": 1e-13}
    # native bosh3 steps to the output times; torchdiffeq interpolates them with a
    # third-order Hermite polynomial, 6e-8 off here (the native values 7e-11 off)
    tol = tol.get(method, {"adaptive_heun": 1e-5, "bosh3": 1e-7}.get(method, 1e-8))
    torch.testing.assert_close(ours, theirs, rtol=tol, atol=tol)


def test_registry_names_keep_flowkits_meaning() -> None:
    field, y0 = Linear(), _y0("tensor")
    t = torch.tensor([0.0, 1.0], dtype=D)
    with torch.no_grad():
        classic = solve_path(field, y0, t, integrator="rk4", integrator_options={"n_steps": 1}).ys
        three_eighths = odeint(field, y0, t, method="rk4")
        rk4_38 = odeint(field, y0, t, method="rk4_38", options={"n_steps": 1})
    torch.testing.assert_close(three_eighths, rk4_38, rtol=1e-14, atol=1e-14)
    assert (classic - three_eighths).abs().max() > 1e-6  # a different method
    # flowkit's dopri8 (DOP853) is not torchdiffeq's 8(7) pair: at rtol 1e-10 the
    # first is within 1e-11 of a tight reference, torchdiffeq's ~1e-7 off on this field
    with torch.no_grad():
        ref = torchdiffeq.odeint(field, y0, t, rtol=1e-13, atol=1e-14)[-1]
        dop853 = solve_path(field, y0, t, integrator="dopri8", integrator_options=TIGHT).ys[-1]
        td8 = odeint(field, y0, t, method="dopri8", **TIGHT)[-1]
        td8_itself = torchdiffeq.odeint(field, y0, t, method="dopri8", **TIGHT)[-1]
    assert (dop853 - ref).abs().max() < 1e-11
    torch.testing.assert_close(td8, td8_itself, rtol=1e-14, atol=1e-14)
    assert (td8 - ref).abs().max() > 1e-9


def test_one_table_decides_native_or_backend() -> None:
    t = _times(False)  # intervals 0.4 and 0.7

    def pick(method: str | None, options: dict[str, Any], func: Any = None) -> str:
        return resolve_method(method, options, func=func or Linear(), y0=_y0("tensor"), t=t)[0]

    assert pick(None, {}) == "dopri5"
    assert pick("rk4", {}) == pick("rk4", {"step_size": 0.1}) == "rk4_38"
    assert pick("rk4", {"step_size": 0.3}) == "torchdiffeq.rk4"  # torchdiffeq interpolates
    assert pick("heun2", {"n_steps": 10}) == "heun"
    assert pick("dopri5", {"first_step": 0.1, "norm": max}) == "dopri5"
    assert (
        pick("dopri5", {"jump_t": t}) == pick("dopri5", {"min_step": 0.1}) == "torchdiffeq.dopri5"
    )
    assert pick("dopri5", {}, Logged()) == "torchdiffeq.dopri5"  # callbacks
    assert pick("dopri8", {}) == "torchdiffeq.dopri8"
    assert pick("tsit5", {"bogus": 1}) == "tsit5"  # other names pass through (and fail there)


@pytest.mark.parametrize("kind", ["tensor", "tuple"])
@pytest.mark.parametrize("method", ["explicit_adams", "implicit_adams", "fixed_adams"])
def test_unregistered_adams_methods_are_torchdiffeqs_own(kind: str, method: str) -> None:
    ours = _grads(odeint, kind, True, method=method, options={"step_size": 0.05})
    theirs = _grads(torchdiffeq.odeint, kind, True, method=method, options={"step_size": 0.05})
    _close(ours[0], theirs[0], 1e-14, 1e-14)
    _close(ours[1][:-1], theirs[1][:-1], 1e-12, 1e-13)
    with pytest.raises(TypeError, match=r"Unknown option.*'bogus'.*max_order"):
        odeint(Linear(), _y0(kind), _times(False), method=method, options={"bogus": 1})


@pytest.mark.parametrize("kind", ["tensor", "tuple"])
def test_scipy_solver_gets_gradients_through_the_adjoint(kind: str) -> None:
    tol = {"rtol": 1e-10, "atol": 1e-12}
    ours = _grads(odeint, kind, False, method="scipy_solver", **tol)
    theirs = _grads(torchdiffeq.odeint_adjoint, kind, False, method="scipy_solver", **tol)
    _close(ours[0], theirs[0], 1e-9, 1e-10)
    _close(ours[1], theirs[1], 1e-6, 1e-8)
    plain = torchdiffeq.odeint(_field(kind), _y0(kind), _times(False), method="scipy_solver")
    assert not any(x.requires_grad for x in _leaves(plain))  # torchdiffeq: no gradient at all


@pytest.mark.parametrize("reverse", [False, True])
def test_complex_states_are_solved_as_pairs_of_reals(reverse: bool) -> None:
    w = torch.tensor([1.0 + 0.5j, -0.3 + 2.0j], dtype=torch.complex128, requires_grad=True)
    y0 = torch.tensor([1.0 + 1.0j, 0.5 - 0.2j], dtype=torch.complex128)
    t = _times(reverse)
    results = []
    for solve in (odeint, torchdiffeq.odeint):
        ys = solve(lambda t, y: 1j * w * y - 0.1 * y, y0, t, **TIGHT)
        assert ys.dtype == torch.complex128 and ys.shape == (3, 2)
        (g,) = torch.autograd.grad(ys[-1].abs().sum(), w)
        results.append((ys.detach(), g))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-7, atol=1e-8)


def test_complex_state_with_a_module_under_the_adjoint() -> None:
    class Rotor(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.tensor([0.8, -1.3], dtype=D))

        def forward(self, t: Tensor, y: Tensor) -> Tensor:
            return 1j * self.w * y - 0.2 * y

    y0 = torch.tensor([1.0 + 1.0j, 0.5 - 0.2j], dtype=torch.complex128)
    grads = []
    # torchdiffeq's own adjoint fails on complex states; its backprop is the reference
    for solve in (odeint_adjoint, torchdiffeq.odeint):
        field = Rotor()
        ys = solve(field, y0, _times(False), **TIGHT)
        (g,) = torch.autograd.grad((ys[-1].real + 0.5 * ys[-1].imag).sum(), field.w)
        grads.append(g)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-6, atol=1e-8)
    assert grads[0].abs().min() > 0.1
