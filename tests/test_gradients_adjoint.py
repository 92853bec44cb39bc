"""The solver-agnostic adjoint on integrators defined only in this test.

The two integrators below (a fixed-step RK4 and an adaptive Heun-Euler pair
taking a ``norm`` option) are written the way a third party would write a
plugin: nothing in flowkit knows about them, yet the ``adjoint`` strategy gives
them correct gradients. Closed form: ``y' = A y`` with ``y(t) = expm(A t) y0``,
whose gradient with respect to ``A`` comes from the Fréchet derivative of the
matrix exponential (the block-matrix identity).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from flowkit.plugins.gradients import Adjoint
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor, nn

from flowkit import hookimpl
from flowkit.errors import IncompatibleComponentsError
from flowkit.interfaces import AdaptiveIntegrator, Integrator
from flowkit.registry import Registry, build_registry
from flowkit.solution import Solution, SolverStats
from flowkit.solve import solve
from flowkit.state import Dynamics, State, as_tuple, like
from flowkit.testing import strategies as fst
from flowkit.testing.problems import LinearDynamics, expm_frechet
from flowkit.testing.tolerances import integrator_tolerance, roundoff

__all__: list[str] = []


# -- integrators written only for this test ------------------------------------------
def _stack(states: list[tuple[Tensor, ...]], template: State) -> State:
    return like(template, tuple(torch.stack(leaf) for leaf in zip(*states, strict=True)))


def _axpy(y: tuple[Tensor, ...], h: Tensor, k: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    return tuple(a + h * b for a, b in zip(y, k, strict=True))


class ThirdPartyRK4(Integrator):
    """Classic RK4 with ``steps_per_interval`` equal steps per output interval.

    Deliberately not a :class:`~flowkit.interfaces.FixedStepIntegrator`: a
    third-party integrator with its own option, named for its own meaning
    (``n_steps`` means equal steps across the whole span everywhere in flowkit).
    """

    order = 4

    def __init__(self, *, steps_per_interval: int = 40) -> None:
        self.steps_per_interval = steps_per_interval

    def integrate(self, func: Dynamics, y0: State, t: Tensor) -> Solution:
        stats = SolverStats()
        y = as_tuple(y0)
        out = [y]

        def f(s: Tensor, z: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
            return as_tuple(func(s, like(y0, z)))

        for i in range(t.shape[0] - 1):
            h = (t[i + 1] - t[i]) / self.steps_per_interval
            for j in range(self.steps_per_interval):
                s = t[i] + j * h
                k1 = f(s, y)
                k2 = f(s + h / 2, _axpy(y, h / 2, k1))
                k3 = f(s + h / 2, _axpy(y, h / 2, k2))
                k4 = f(s + h, _axpy(y, h, k3))
                y = tuple(
                    a + h / 6 * (b + 2 * c + 2 * d + e)
                    for a, b, c, d, e in zip(y, k1, k2, k3, k4, strict=True)
                )
                stats.nfe += 4
                stats.n_accepted += 1
            out.append(y)
        stats.t_reached = float(t[-1].detach())
        return Solution(t, _stack(out, y0), stats)


def _rms(leaves: tuple[Tensor, ...]) -> Tensor:
    total = sum(leaf.numel() for leaf in leaves)
    return (sum(leaf.square().sum() for leaf in leaves) / total).sqrt()  # type: ignore[return-value]


class ThirdPartyHeunEuler(AdaptiveIntegrator):
    """Adaptive Heun-Euler (orders 2/1) declaring tolerances and a custom error ``norm``."""

    order = 2

    def __init__(
        self,
        *,
        rtol: float = 1e-6,
        atol: float = 1e-8,
        norm: Callable[[tuple[Tensor, ...]], Tensor] | None = None,
    ) -> None:
        super().__init__(rtol=rtol, atol=atol, norm=norm or _rms)

    def integrate(self, func: Dynamics, y0: State, t: Tensor) -> Solution:
        norm = self.norm
        stats = SolverStats()
        y = as_tuple(y0)
        out = [y]
        s = t[0]
        h = 0.01 * float(t[-1] - t[0])

        def f(s: Tensor, z: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
            stats.nfe += 1
            return as_tuple(func(s, like(y0, z)))

        for i in range(1, t.shape[0]):
            while float((t[i] - s) * math.copysign(1.0, h)) > 0:
                last = abs(h) >= abs(float(t[i] - s))
                step = (t[i] - s) if last else s.new_tensor(h)
                k1 = f(s, y)
                euler = _axpy(y, step, k1)
                k2 = f(s + step, euler)
                new = tuple(a + step / 2 * (b + c) for a, b, c in zip(y, k1, k2, strict=True))
                with torch.no_grad():
                    scaled = tuple(
                        (n - e) / (self.atol + self.rtol * torch.maximum(a.abs(), n.abs()))
                        for a, n, e in zip(y, new, euler, strict=True)
                    )
                    err = float(norm(scaled))
                if err <= 1.0:
                    y, s = new, (t[i] if last else s + step)
                    stats.n_accepted += 1
                else:
                    stats.n_rejected += 1
                h = float(step) * min(5.0, max(0.2, 0.9 * max(err, 1e-10) ** -0.5))
            out.append(y)
        stats.t_reached = float(t[-1].detach())
        return Solution(t, _stack(out, y0), stats)


class _TestPlugin:
    @hookimpl
    def flowkit_register_integrators(self, register: Callable[..., None]) -> None:
        register("test_rk4", ThirdPartyRK4)
        register("test_heun_euler", ThirdPartyHeunEuler)


@pytest.fixture(scope="module")
def registry() -> Registry:
    return build_registry(autoload=False, plugins=[("test_plugin", _TestPlugin())])


# -- the closed form ------------------------------------------------------------------
def analytic_gradients(
    a: Tensor, y0: Tensor, t: Tensor, weights: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of ``L = sum_i <w_i, y(t_i)>`` for ``y' = y A^T``: (y0, A, t)."""
    g_y0 = torch.zeros_like(y0)
    g_a = torch.zeros_like(a)
    g_t = torch.zeros_like(t)
    for i in range(t.shape[0]):
        span = float(t[i] - t[0])
        e = torch.linalg.matrix_exp(a * span)
        g_y0 += weights[i] @ e
        g_a += span * expm_frechet(a.T * span, weights[i].T @ y0)
        rate = (weights[i] * ((y0 @ e.T) @ a.T)).sum()
        g_t[i] += rate
        g_t[0] -= rate
    return g_y0, g_a, g_t


def _problem(seed: int = 0, dim: int = 3, batch: int = 2) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(dim, dim, generator=gen, dtype=torch.float64) / dim
    y0 = torch.randn(batch, dim, generator=gen, dtype=torch.float64)
    t = torch.tensor([0.0, 0.4, 1.0], dtype=torch.float64)
    w = torch.randn(t.shape[0], batch, dim, generator=gen, dtype=torch.float64)
    return a, y0, t, w


def _gradients(
    registry: Registry,
    a: Tensor,
    y0: Tensor,
    t: Tensor,
    w: Tensor,
    *,
    integrator: str | Integrator,
    gradient: str = "adjoint",
    integrator_options: dict[str, object] | None = None,
    gradient_options: dict[str, object] | None = None,
) -> tuple[tuple[Tensor, Tensor, Tensor], Solution]:
    field = LinearDynamics(a)
    y0 = y0.clone().requires_grad_(True)
    t = t.clone().requires_grad_(True)
    sol = solve(
        field,
        y0,
        t,
        integrator=integrator,
        gradient=gradient,
        integrator_options=integrator_options,
        gradient_options=gradient_options,
        registry=registry,
    )
    loss = (sol.ys * w).sum()
    g = torch.autograd.grad(loss, (y0, field.a, t))
    return (g[0], g[1], g[2]), sol


def test_frechet_closed_form_matches_finite_differences() -> None:
    """The analytic gradient itself, against central differences of expm."""
    a, y0, t, w = _problem(seed=3)
    _, g_a, _ = analytic_gradients(a, y0, t, w)

    def loss(m: Tensor) -> Tensor:
        return sum(
            (w[i] * (y0 @ torch.linalg.matrix_exp(m * float(t[i])).T)).sum()
            for i in range(t.shape[0])
        )  # type: ignore[return-value]

    eps = 1e-6
    fd = torch.zeros_like(a)
    for idx in range(a.numel()):
        e = torch.zeros_like(a).view(-1)
        e[idx] = eps
        fd.view(-1)[idx] = (loss(a + e.view_as(a)) - loss(a - e.view_as(a))) / (2 * eps)
    torch.testing.assert_close(g_a, fd, atol=1e-8, rtol=1e-8)


# -- a third-party integrator gets correct adjoint gradients ------------------------
def test_third_party_integrator_adjoint_matches_closed_form(registry: Registry) -> None:
    a, y0, t, w = _problem()
    per_interval = 40
    (g_y0, g_a, g_t), sol = _gradients(
        registry,
        a,
        y0,
        t,
        w,
        integrator="test_rk4",
        integrator_options={"steps_per_interval": per_interval},
    )
    exact = analytic_gradients(a, y0, t, w)
    h = float(t[1] - t[0]) / per_interval
    tol = integrator_tolerance(torch.float64, order=4, adaptive=False, step_size=h)
    tol.assert_close(g_y0, exact[0], "dL/dy0")
    tol.assert_close(g_a, exact[1], "dL/dA")
    tol.assert_close(g_t, exact[2], "dL/dt")
    # The backward solve ran on the same integrator, interval by interval.
    assert sol.stats.backward_n_accepted == sol.stats.n_accepted
    assert sol.stats.backward_nfe >= sol.stats.nfe


@given(
    dim=fst.dims(3),
    batch=fst.batch_sizes(3),
    data=st.data(),
)
def test_third_party_adjoint_property(dim: int, batch: int, data: st.DataObject) -> None:
    """Random bounded matrices, states and time spans (either direction)."""
    registry = build_registry(autoload=False, plugins=[("test_plugin", _TestPlugin())])
    a = data.draw(fst.well_conditioned_matrices(dim), label="A")
    y0 = data.draw(fst.vectors((batch, dim)), label="y0")
    t0, t1 = data.draw(fst.time_spans(), label="span")
    t = torch.tensor([t0, t1], dtype=torch.float64)
    w = data.draw(fst.vectors((2, batch, dim)), label="weights")
    per_interval = 20
    (g_y0, g_a, g_t), _ = _gradients(
        registry,
        a,
        y0,
        t,
        w,
        integrator="test_rk4",
        integrator_options={"steps_per_interval": per_interval},
    )
    exact = analytic_gradients(a, y0, t, w)
    scale = 1.0 + float(y0.abs().max()) * float(w.abs().max()) * dim * batch
    tol = integrator_tolerance(
        torch.float64, order=4, adaptive=False, step_size=float(t1 - t0) / per_interval
    ).scaled(scale)
    tol.assert_close(g_y0, exact[0], "dL/dy0")
    tol.assert_close(g_a, exact[1], "dL/dA")
    tol.assert_close(g_t, exact[2], "dL/dt")


def test_adjoint_converges_at_the_integrators_order(registry: Registry) -> None:
    """Halving the step divides the adjoint gradient's error by about 2**4 for RK4."""
    a, y0, t, w = _problem(seed=1)
    exact = analytic_gradients(a, y0, t, w)[1]
    errors = []
    for n in (4, 8):
        (_, g_a, _), _ = _gradients(
            registry,
            a,
            y0,
            t,
            w,
            integrator="test_rk4",
            integrator_options={"steps_per_interval": n},
        )
        errors.append(float((g_a - exact).abs().max()))
    slope = math.log2(errors[0] / errors[1])
    assert abs(slope - 4) < 0.3, f"observed order {slope:.2f}, errors {errors}"


def test_adaptive_third_party_and_backward_integrator_by_name(registry: Registry) -> None:
    a, y0, t, w = _problem(seed=2)
    exact = analytic_gradients(a, y0, t, w)
    rtol = atol = 1e-7
    (g_y0, g_a, _), sol = _gradients(
        registry,
        a,
        y0,
        t,
        w,
        integrator="test_rk4",
        integrator_options={"steps_per_interval": 2},
        gradient_options={
            "backward_integrator": "test_heun_euler",
            "backward_options": {"rtol": rtol, "atol": atol},
            "registry": registry,
        },
    )
    # The forward solve is coarse (2 RK4 steps per interval) but the states at the
    # output times are reset from it, so its error enters the gradient too.
    forward_tol = integrator_tolerance(torch.float64, order=4, adaptive=False, step_size=0.3)
    tol = integrator_tolerance(torch.float64, order=2, adaptive=True, rtol=rtol, atol=atol)
    (tol + forward_tol).assert_close(g_a, exact[1], "dL/dA")
    (tol + forward_tol).assert_close(g_y0, exact[0], "dL/dy0")
    assert sol.stats.backward_n_accepted > 0
    assert sol.stats.backward_n_accepted != sol.stats.n_accepted


# -- seminorm ------------------------------------------------------------------------
def test_seminorm_takes_fewer_steps_and_stays_accurate(registry: Registry) -> None:
    a, y0, t, w = _problem(seed=4)
    exact = analytic_gradients(a, y0, t, w)
    rtol = atol = 1e-6
    options = {"rtol": rtol, "atol": atol}
    results = {}
    for semi in (False, True):
        (_, g_a, _), sol = _gradients(
            registry,
            a,
            y0,
            t,
            w,
            integrator="test_heun_euler",
            integrator_options=options,
            gradient_options={"seminorm": semi},
        )
        tol = integrator_tolerance(torch.float64, order=2, adaptive=True, rtol=rtol, atol=atol)
        tol.assert_close(g_a, exact[1], f"dL/dA (seminorm={semi})")
        results[semi] = sol.stats.backward_n_accepted + sol.stats.backward_n_rejected
    assert results[True] <= results[False], results


def test_seminorm_needs_an_integrator_that_takes_a_norm(registry: Registry) -> None:
    a, y0, t, w = _problem()
    with pytest.raises(IncompatibleComponentsError, match="seminorm=True needs an adaptive"):
        _gradients(
            registry, a, y0, t, w, integrator="test_rk4", gradient_options={"seminorm": True}
        )


# -- tuple states with a probe fixed for the solve ----------------------------------
class Tanh(nn.Module):
    """A small nonlinear field ``tanh(x W^T + b) * c(t)``."""

    def __init__(self, dim: int, seed: int) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(dim, dim, generator=gen, dtype=torch.float64) / dim)
        self.b = nn.Parameter(torch.randn(dim, generator=gen, dtype=torch.float64) / 4)
        self.unused = nn.Parameter(torch.ones(dim, dtype=torch.float64))

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        return torch.tanh(x @ self.w.T + self.b) * (1 + t)


class HutchinsonDynamics(nn.Module):
    """``(x, logp)' = (f, -eps^T (df/dx) eps)`` with a probe fixed for the solve."""

    def __init__(self, field: nn.Module, probe: Tensor) -> None:
        super().__init__()
        self.field = field
        self.probe = probe

    def forward(self, t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        x, _ = state
        with torch.enable_grad():
            x_ = x if x.requires_grad else x.detach().requires_grad_(True)
            f = self.field(t, x_)
            (vjp,) = torch.autograd.grad(
                f, x_, self.probe, create_graph=torch.is_grad_enabled() and x.requires_grad
            )
        div = (vjp * self.probe).sum(-1)
        if not torch.is_grad_enabled():
            f, div = f.detach(), div.detach()
        return f, -div


def _tuple_gradients(
    registry: Registry, gradient: str, dynamics: HutchinsonDynamics, x0: Tensor, t: Tensor
) -> list[Tensor]:
    x0 = x0.clone().requires_grad_(True)
    logp0 = torch.zeros(x0.shape[0], dtype=x0.dtype)
    sol = solve(
        dynamics,
        (x0, logp0),
        t,
        integrator="test_rk4",
        gradient=gradient,
        integrator_options={"steps_per_interval": 30},
        registry=registry,
    )
    xs, logps = sol.ys
    loss = (xs[-1] ** 2).sum() + logps[-1].sum() + 0.5 * logps[1].sum()
    params = [dynamics.field.w, dynamics.field.b, dynamics.field.unused]
    return list(torch.autograd.grad(loss, [x0, *params], allow_unused=True))


def test_tuple_state_with_fixed_probe_adjoint_equals_backprop(registry: Registry) -> None:
    gen = torch.Generator().manual_seed(5)
    dim, batch = 3, 4
    probe = torch.randn(batch, dim, generator=gen, dtype=torch.float64)
    dynamics = HutchinsonDynamics(Tanh(dim, seed=6), probe)
    x0 = torch.randn(batch, dim, generator=gen, dtype=torch.float64)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    adj = _tuple_gradients(registry, "adjoint", dynamics, x0, t)
    bp = _tuple_gradients(registry, "backprop", dynamics, x0, t)
    # Both converge at order 4 to the gradient of the exact flow.
    tol = integrator_tolerance(torch.float64, order=4, adaptive=False, step_size=0.5 / 30)
    for name, ga, gb in zip(("x0", "w", "b"), adj, bp, strict=False):
        tol.assert_close(ga, gb, f"dL/d{name}")
    # A parameter the field does not use gets a zero gradient, not an error.
    assert bp[3] is None
    torch.testing.assert_close(adj[3], torch.zeros(dim, dtype=torch.float64), atol=0, rtol=0)


# -- gradients with respect to the times -------------------------------------------
def test_time_gradients_against_finite_differences(registry: Registry) -> None:
    dim = 2
    field = Tanh(dim, seed=7)
    gen = torch.Generator().manual_seed(8)
    y0 = torch.randn(3, dim, generator=gen, dtype=torch.float64)
    w = torch.randn(3, 3, dim, generator=gen, dtype=torch.float64)
    t = torch.tensor([0.1, 0.6, 1.2], dtype=torch.float64)
    options = {"steps_per_interval": 50}

    def loss(times: Tensor, gradient: str) -> Tensor:
        sol = solve(
            field,
            y0,
            times,
            integrator="test_rk4",
            gradient=gradient,
            integrator_options=options,
            registry=registry,
        )
        return (sol.ys * w).sum()

    t_ = t.clone().requires_grad_(True)
    (g_t,) = torch.autograd.grad(loss(t_, "adjoint"), t_)
    eps = 1e-5
    fd = torch.zeros_like(t)
    with torch.no_grad():
        for i in range(t.shape[0]):
            e = torch.zeros_like(t)
            e[i] = eps
            fd[i] = (loss(t + e, "backprop") - loss(t - e, "backprop")) / (2 * eps)
    # Finite differences of the discrete solve: the adjoint differs by the RK4
    # truncation error of the adjoint system (steps of 0.5/50 over the span).
    tol = integrator_tolerance(torch.float64, order=4, adaptive=False, step_size=0.6 / 50, span=1.1)
    tol.assert_close(g_t, fd, "dL/dt")


# -- statistics, options and error paths --------------------------------------------
def test_backward_statistics_land_in_the_forward_stats_object(registry: Registry) -> None:
    a, y0, t, w = _problem()
    field = LinearDynamics(a)
    sol = solve(field, y0, t, integrator="test_rk4", gradient="adjoint", registry=registry)
    stats = sol.stats
    assert (stats.backward_nfe, stats.backward_n_accepted) == (0, 0)
    (sol.ys * w).sum().backward()
    assert sol.stats is stats
    n_intervals = t.shape[0] - 1
    assert stats.backward_n_accepted == 40 * n_intervals
    assert stats.backward_nfe == 4 * 40 * n_intervals
    assert stats.backward_n_rejected == 0


def test_params_restriction_and_frozen_parameters(registry: Registry) -> None:
    dim = 3
    field = Tanh(dim, seed=9)
    field.b.requires_grad_(False)
    y0 = torch.randn(2, dim, dtype=torch.float64)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    sol = solve(
        field,
        y0,
        t,
        integrator="test_rk4",
        gradient="adjoint",
        gradient_options={"params": [field.w]},
        registry=registry,
    )
    loss = sol.ys.square().sum()
    (g_w,) = torch.autograd.grad(loss, [field.w])
    assert field.unused.grad is None
    with pytest.raises(RuntimeError, match=r"does not require grad|not have been used"):
        torch.autograd.grad(
            solve(
                field,
                y0,
                t,
                integrator="test_rk4",
                gradient="adjoint",
                gradient_options={"params": [field.w]},
                registry=registry,
            ).ys.sum(),
            [field.unused],
        )
    bp = solve(field, y0, t, integrator="test_rk4", gradient="backprop", registry=registry)
    (g_w_bp,) = torch.autograd.grad(bp.ys.square().sum(), [field.w])
    tol = integrator_tolerance(torch.float64, order=4, adaptive=False, step_size=1 / 40)
    tol.assert_close(g_w, g_w_bp, "dL/dw")


def test_y0_without_grad_still_gives_parameter_gradients(registry: Registry) -> None:
    a, y0, t, w = _problem()
    field = LinearDynamics(a)
    sol = solve(field, y0, t, integrator="test_rk4", gradient="adjoint", registry=registry)
    (g_a,) = torch.autograd.grad((sol.ys * w).sum(), [field.a])
    tol = integrator_tolerance(torch.float64, order=4, adaptive=False, step_size=0.6 / 40)
    tol.assert_close(g_a, analytic_gradients(a, y0, t, w)[1], "dL/dA")


def test_plain_function_with_explicit_params(registry: Registry) -> None:
    a, y0, t, w = _problem()
    a = a.clone().requires_grad_(True)

    def func(s: Tensor, y: Tensor) -> Tensor:
        return y @ a.T

    sol = solve(
        func, y0, t, integrator="test_rk4", gradient="adjoint", params=[a], registry=registry
    )
    (g_a,) = torch.autograd.grad((sol.ys * w).sum(), [a])
    tol = integrator_tolerance(torch.float64, order=4, adaptive=False, step_size=0.6 / 40)
    tol.assert_close(g_a, analytic_gradients(a.detach(), y0, t, w)[1], "dL/dA")


def test_round_off_agreement_with_backprop_for_linear_fields(registry: Registry) -> None:
    """For y' = A y and RK4, the continuous adjoint solved with the same steps is
    the exact discrete adjoint: RK4's adjoint scheme on a linear system is RK4."""
    a, y0, t, w = _problem(seed=10)
    adj, _ = _gradients(registry, a, y0, t, w, integrator="test_rk4")
    bp, _ = _gradients(registry, a, y0, t, w, integrator="test_rk4", gradient="backprop")
    roundoff(torch.float64).assert_close(adj[0], bp[0], "dL/dy0")


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"bogus": 1}, TypeError, "Unknown option"),
        ({"backward_integrator": 3}, TypeError, "backward_integrator must be"),
        (
            {"backward_integrator": ThirdPartyRK4(), "backward_options": {"steps_per_interval": 3}},
            TypeError,
            "backward_options were given with a backward_integrator instance",
        ),
        ({"seminorm": "yes"}, TypeError, "seminorm must be True or False"),
        ({"params": [torch.ones(2, dtype=torch.int64)]}, TypeError, "only floating-point"),
        ({"params": ["w"]}, TypeError, "must be a torch.Tensor"),
    ],
)
def test_option_errors(
    registry: Registry, options: dict[str, object], error: type[Exception], match: str
) -> None:
    a, y0, t, _ = _problem()
    with pytest.raises(error, match=match):
        solve(
            LinearDynamics(a),
            y0,
            t,
            integrator="test_rk4",
            gradient="adjoint",
            gradient_options=options,
            registry=registry,
        )


def test_backward_options_need_a_named_forward_integrator(registry: Registry) -> None:
    a, y0, t, _ = _problem()
    with pytest.raises(TypeError, match="backward_options need a backward_integrator name"):
        solve(
            LinearDynamics(a),
            y0,
            t,
            integrator=ThirdPartyRK4(),
            gradient="adjoint",
            gradient_options={"backward_options": {"steps_per_interval": 3}},
            registry=registry,
        )


def test_wrong_output_structure_is_reported(registry: Registry) -> None:
    a, y0, t, _ = _problem()
    field = LinearDynamics(a)
    calls = {"n": 0}

    def func(s: Tensor, y: State) -> State:
        calls["n"] += 1
        x = as_tuple(y)[0]
        out = field(s, x)
        return (out, out) if torch.is_grad_enabled() else out

    sol = solve(
        func, y0, t, integrator="test_rk4", gradient="adjoint", params=[field.a], registry=registry
    )
    with pytest.raises(TypeError, match="returned 2 leaves for a state of 1"):
        sol.ys.sum().backward()


def test_non_float_state_is_rejected(registry: Registry) -> None:
    a, _, t, _ = _problem()
    with pytest.raises(TypeError, match="floating point"):
        Adjoint().solve(ThirdPartyRK4(), LinearDynamics(a), torch.ones(2, 3, dtype=torch.int64), t)


@pytest.mark.parametrize("gradient", ["checkpoint", "reversible", "torchdiffeq_adjoint"])
def test_strategies_needing_capabilities_reject_a_plain_integrator(
    registry: Registry, gradient: str
) -> None:
    a, y0, t, _ = _problem()
    needed = registry.get("gradient_strategy", gradient).capabilities["requires"][0]
    with pytest.raises(IncompatibleComponentsError, match=f"requires an integrator with {needed}"):
        solve(LinearDynamics(a), y0, t, integrator="test_rk4", gradient=gradient, registry=registry)


def test_per_component_tolerances_need_a_separate_backward_integrator(registry: Registry) -> None:
    a, y0, t, _ = _problem()
    integrator = ThirdPartyHeunEuler(rtol=1e-6, atol=torch.full((3,), 1e-8))
    with pytest.raises(ValueError, match="scalar rtol and atol"):
        solve(
            LinearDynamics(a), y0, t, integrator=integrator, gradient="adjoint", registry=registry
        )
    sol = solve(
        LinearDynamics(a),
        y0,
        t,
        integrator=integrator,
        gradient="adjoint",
        gradient_options={"backward_integrator": ThirdPartyHeunEuler(rtol=1e-6, atol=1e-8)},
        registry=registry,
    )
    assert sol.ys.shape == (3, *y0.shape)
