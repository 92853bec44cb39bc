"""The CNF model on neural fields: normalisation, change of variables, consistency,
gradients across strategies and estimators, compositions, dtypes and every error path."""

from __future__ import annotations

import math

import pytest
import torch
from registry_helpers import suite_registry

from flowkit import (
    CNF,
    IncompatibleComponentsError,
    InvalidInputError,
    UnknownComponentError,
    compose,
)
from flowkit.errors import PluginContractError
from flowkit.testing import cnf_problems as P
from flowkit.testing.tolerances import statistical_bound

REGISTRY = suite_registry()
TRACE_CAPS = {s.name: s.capabilities for s in REGISTRY.specs("trace_estimator")}
FIELD_EXACT = [
    n for n, c in TRACE_CAPS.items() if not c["stochastic"] and not c["requires_divergence"]
]
TIGHT = {"rtol": 1e-9, "atol": 1e-9}


def neural_cnf(trace: str = "exact", gradient: str = "backprop", **kw: object) -> CNF:
    """A 2-D CNF on a small random MLP field (float64, tight tolerance by default)."""
    torch.manual_seed(kw.pop("torch_seed", 0))  # type: ignore[call-overload]
    integrator = kw.pop("integrator", "dopri5")
    options: dict[str, object] = {
        "integrator_options": TIGHT,
        "field_options": {"hidden": (16, 16)},
    }
    options.update(kw)
    return CNF("mlp", integrator, trace, gradient, dim=2, **options)  # type: ignore[arg-type]


def test_density_integrates_to_one_on_a_grid() -> None:
    """Midpoint rule on [-L, L]^2 at two resolutions; bound = tail + quadrature + solver."""
    model = neural_cnf()
    out = model.field.net[-1]
    # |f| <= |W| 1 + |b| row-wise (tanh hidden units are bounded by 1), so no point moves
    # farther than M (t1 - t0): the mass outside the box is at most the base's mass
    # outside the box shrunk by M.
    m = float(((out.weight.abs().sum(1) + out.bias.abs()) ** 2).sum().sqrt().detach())
    half = 8.0
    tail = 1.0 - math.erf((half - m) / math.sqrt(2)) ** 2
    assert half - m > 3.0, "box too small for a meaningful tail bound"

    def integral(n: int) -> float:
        h = 2 * half / n
        centres = -half + h * (torch.arange(n, dtype=torch.float64) + 0.5)
        grid = torch.cartesian_prod(centres, centres)
        with torch.no_grad():
            return float(model.log_prob(grid).exp().sum()) * h * h

    coarse, fine = integral(60), integral(120)
    solver = 100 * (TIGHT["rtol"] + TIGHT["atol"]) * 20  # log-density error, |z| <= 20 on the box
    bound = tail + abs(fine - coarse) + solver
    assert abs(fine - 1.0) <= bound, (fine, coarse, bound)
    assert bound < 1e-3, f"the check is only meaningful with a small bound, got {bound}"


@pytest.mark.parametrize("trace", FIELD_EXACT)
def test_log_prob_matches_slogdet_of_the_flow_map(trace: str) -> None:
    model = neural_cnf(trace, torch_seed=1)
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(3))
    # Rows are independent, so the Jacobian of the summed inverse map holds each sample's.
    jac = torch.autograd.functional.jacobian(lambda y: model.inverse(y).sum(0), x)  # (d, B, d)
    per_sample = jac.permute(1, 0, 2)
    z = model.inverse(x).detach()
    expected = P.standard_normal_log_prob(z) + torch.linalg.slogdet(per_sample).logabsdet
    torch.testing.assert_close(model.log_prob(x).detach(), expected, atol=1e-6, rtol=1e-6)


def test_sample_and_log_prob_are_consistent() -> None:
    model = neural_cnf(seed=7)
    x, logp = model.sample_with_log_prob(6)
    torch.testing.assert_close(model.log_prob(x.detach()), logp, atol=1e-6, rtol=1e-6)
    model.manual_seed(7)
    torch.testing.assert_close(model.sample(6), x, atol=1e-6, rtol=1e-6)  # same base draws


def test_inverse_of_transform_recovers_z() -> None:
    model = neural_cnf()
    z = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(model.inverse(model.transform(z)), z, atol=1e-6, rtol=1e-6)


def _compatible_integrator(gradient: str) -> str | None:
    """An integrator the strategy accepts (adaptive, order near 5 first), as compat says."""
    specs = sorted(
        REGISTRY.specs("integrator"),
        key=lambda s: (not s.capabilities["adaptive"], abs(s.capabilities["order"] - 5), s.name),
    )
    gspec = REGISTRY.get("gradient_strategy", gradient)
    for spec in specs:
        if REGISTRY_compat(spec, gspec):
            return spec.name
    return None


def REGISTRY_compat(integrator: object, gradient: object) -> bool:
    from flowkit.compat import check_compatibility

    return check_compatibility(integrator=integrator, gradient=gradient).ok


def _param_grad(model: CNF, x: torch.Tensor) -> torch.Tensor:
    loss = model.log_prob(x).mean()
    grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
    return torch.cat(
        [
            (torch.zeros_like(p) if g is None else g).flatten()
            for g, p in zip(grads, model.parameters(), strict=True)
        ]
    )


@pytest.fixture
def reference_gradient() -> torch.Tensor:
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(9))
    return _param_grad(neural_cnf("exact_loop", "backprop", torch_seed=4), x)


@pytest.mark.parametrize("trace", FIELD_EXACT)
@pytest.mark.parametrize("gradient", REGISTRY.names("gradient_strategy"))
def test_gradients_agree_across_strategies_and_estimators(
    reference_gradient: torch.Tensor, gradient: str, trace: str
) -> None:
    integrator = _compatible_integrator(gradient)
    if integrator is None:
        pytest.skip(f"no installed integrator is compatible with {gradient!r}")
    spec = REGISTRY.get("integrator", integrator)
    options, tol = P.solver_options(spec, target=1e-9, max_steps=400)
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(9))
    model = neural_cnf(
        trace, gradient, torch_seed=4, integrator=integrator, integrator_options=options
    )
    grad = _param_grad(model, x)
    scale = float(reference_gradient.abs().max())
    # Both solves are within the solver's tolerance of the exact flow; their
    # gradients (of a smooth unit-scale loss) within that tolerance times a
    # Lipschitz factor of 10, relative to the gradient's size.
    bound = 10 * max(tol.atol, 1e-8) * max(scale, 1.0)
    torch.testing.assert_close(grad, reference_gradient, atol=bound, rtol=0)


@pytest.mark.parametrize(
    "gradient",
    [
        g
        for g in ("adjoint", "torchdiffeq_adjoint", "checkpoint")
        if ("gradient_strategy", g) in REGISTRY
    ],
)
def test_hutchinson_fixed_seed_gradient_matches_backprop(gradient: str) -> None:
    integrator = _compatible_integrator(gradient)
    assert integrator is not None
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(9))
    options = P.solver_options(REGISTRY.get("integrator", integrator), target=1e-9)[0]
    grads = []
    for strategy in ("backprop", gradient):
        model = neural_cnf(
            "hutchinson",
            strategy,
            torch_seed=4,
            seed=123,
            integrator=integrator,
            integrator_options=options,
        )
        grads.append(_param_grad(model, x))
    scale = float(grads[0].abs().max())
    torch.testing.assert_close(grads[1], grads[0], atol=1e-6 * max(scale, 1.0), rtol=0)


def test_hutchinson_log_prob_is_unbiased() -> None:
    """Mean over seeded solves of the Hutchinson log-density is the exact one."""
    x = torch.randn(3, 2, generator=torch.Generator().manual_seed(2))
    exact = neural_cnf("exact", torch_seed=5).log_prob(x).detach()
    model = neural_cnf("hutchinson", torch_seed=5, seed=0)
    with torch.no_grad():
        draws = torch.stack([model.log_prob(x.repeat(200, 1)).reshape(200, 3)]).reshape(200, 3)
    err = (draws.mean(0) - exact).abs()
    se = draws.std(0) / draws.shape[0] ** 0.5
    assert bool((se > 0).all())
    assert bool((err <= torch.tensor([statistical_bound(float(s)) for s in se])).all()), (err, se)


def test_stats_of_the_last_solve() -> None:
    gradient = "adjoint" if ("gradient_strategy", "adjoint") in REGISTRY else "backprop"
    model = neural_cnf("exact", gradient)
    logp = model.log_prob(torch.randn(3, 2))
    stats = model.last_stats
    assert stats is not None and stats.nfe > 0 and stats.n_accepted > 0
    logp.sum().backward()
    if gradient == "adjoint":
        assert model.last_stats.backward_nfe > 0


def test_regularization_closed_form_and_steer_end_time() -> None:
    """Constant field f = b: kinetic energy integrates to |b|^2 (t1 - t0)."""
    if ("regularizer", "kinetic_energy") not in REGISTRY:
        pytest.skip("the kinetic_energy regularizer is not installed")
    b = torch.tensor([0.3, -0.4], dtype=torch.float64)
    field = P.affine_field(torch.zeros(2, 2, dtype=torch.float64), b)
    model = CNF(
        field,
        "rk4",
        "exact",
        "backprop",
        dim=2,
        regularizers=["kinetic_energy"],
        integrator_options={"step_size": 0.25},
    )
    x = torch.randn(4, 2)
    logp, reg = model.log_prob_and_regularization(x)
    assert reg.shape == (4, 1)
    torch.testing.assert_close(reg[:, 0], torch.full((4,), 0.25), atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(logp, model.log_prob(x), atol=1e-12, rtol=1e-12)
    _, reg_steer = model.log_prob_and_regularization(x, t1=0.5)
    torch.testing.assert_close(reg_steer[:, 0], torch.full((4,), 0.125), atol=1e-12, rtol=1e-12)


def test_composition_matches_closed_form() -> None:
    """Two blocks of f = A x compose to expm(2A); log-density with 2 tr A."""
    a = torch.tensor([[0.2, -0.5], [0.4, 0.1]], dtype=torch.float64)
    blocks = [
        CNF(P.affine_field(a), "dopri5", "exact", "backprop", dim=2, integrator_options=TIGHT)
        for _ in range(2)
    ]
    seq = compose(*blocks)
    x = torch.randn(5, 2)
    torch.testing.assert_close(seq.log_prob(x), P.affine_log_prob(x, 2 * a), atol=1e-7, rtol=1e-7)
    torch.testing.assert_close(seq.inverse(seq.transform(x)), x, atol=1e-7, rtol=1e-7)
    samples, logp = seq.sample_with_log_prob(4)
    torch.testing.assert_close(seq.log_prob(samples), logp, atol=1e-7, rtol=1e-7)
    seq.log_prob(x)
    assert seq.last_stats.nfe == sum(b.last_stats.nfe for b in blocks)


def test_float32_follows_the_parameters() -> None:
    model64 = neural_cnf(integrator="rk4", integrator_options={"step_size": 0.1})
    x = torch.randn(5, 2)
    expected = model64.log_prob(x)
    model32 = model64.float()
    logp = model32.log_prob(x.float())
    assert logp.dtype == torch.float32
    torch.testing.assert_close(logp, expected.float(), atol=1e-4, rtol=1e-4)
    assert model32.sample(3).dtype == torch.float32


# -- error paths -------------------------------------------------------------------
BAD_INPUTS = {
    "wrong_dim": (lambda: torch.randn(4, 3), r"shape \(batch, 2\)"),
    "one_dimensional": (lambda: torch.randn(2), r"shape \(batch, 2\)"),
    "empty": (lambda: torch.randn(0, 2), r"shape \(batch, 2\)"),
    "float32": (lambda: torch.randn(4, 2, dtype=torch.float32), "dtype torch.float32"),
    "int64": (
        lambda: torch.ones(4, 2, dtype=torch.int64),
        r"dtype torch.int64, but points must be floating point; convert the data",
    ),
    "device": (lambda: torch.empty(4, 2, device="meta"), "is on meta"),
    "nan": (lambda: torch.tensor([[0.0, float("nan")], [1.0, 1.0]]), r"NaN or Inf in 1 row"),
    "inf": (lambda: torch.tensor([[0.0, float("inf")], [1.0, 1.0]]), r"NaN or Inf in 1 row"),
    "list": (lambda: [[0.0, 1.0]], "must be a torch.Tensor"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_to_log_prob(case: str) -> None:
    make_bad, match = BAD_INPUTS[case]
    model = neural_cnf(integrator="rk4", integrator_options={"step_size": 0.5})
    with pytest.raises(InvalidInputError, match=match):
        model.log_prob(make_bad())
    with pytest.raises(InvalidInputError, match=match):
        model.inverse(make_bad())


@pytest.mark.parametrize("n", [0, -3, 2.5, True])
def test_bad_sample_count(n: object) -> None:
    with pytest.raises(InvalidInputError, match="positive integer"):
        neural_cnf().sample(n)  # type: ignore[arg-type]


def test_every_incompatible_combination_is_refused_with_its_reason() -> None:
    refused = list(REGISTRY.combinations(valid=False))
    assert refused, "the registry has no incompatible combination to check"
    for combo in refused:
        with pytest.raises(IncompatibleComponentsError) as info:
            CNF(
                combo.field.name,
                combo.integrator.name,
                combo.trace.name,
                combo.gradient.name,
                dim=2,
            )
        for reason in combo.compatibility.reasons:
            assert reason in str(info.value), (combo.id, reason)


def test_instances_are_checked_too() -> None:
    with pytest.raises(IncompatibleComponentsError, match="has_divergence"):
        CNF(torch.nn.Linear(2, 2), "rk4", "analytic", "backprop", dim=2)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"field": "mlpp"}, UnknownComponentError, "Unknown vector field 'mlpp'.*mlp"),
        ({"integrator": "dopri55"}, UnknownComponentError, "Did you mean"),
        ({"trace": "hutch", "trace_options": {"n_probe": 2}}, TypeError, "Unknown option"),
        ({"field_options": {"hidden": (4,), "widths": 3}}, TypeError, "Unknown option"),
        (
            {"field": torch.nn.Linear(2, 2), "field_options": {"hidden": (4,)}},
            TypeError,
            "field_options were given with a field instance",
        ),
        ({"field": 3}, TypeError, "field must be a registered name or an nn.Module"),
        ({"t0": 1.0, "t1": 1.0}, ValueError, "t0 and t1 must differ"),
        ({"t1": float("nan")}, ValueError, "t1 must be finite"),
        ({"dim": 0}, ValueError, "dim must be a positive integer"),
        ({"field_options": {"dim": 3}}, ValueError, "differs from dim=2"),
        ({"base": object()}, TypeError, "base must have log_prob"),
        (
            {"regularizers": ["kinetic_energy"], "regularizer_options": {"jacobian": {}}},
            TypeError,
            "regularizer_options for",
        ),
        ({"regularizers": [3]}, TypeError, "registered names or Regularizer instances"),
    ],
)
def test_construction_errors(kwargs: dict[str, object], error: type, match: str) -> None:
    args = {"field": "mlp", "integrator": "rk4", "trace": "exact", "gradient": "backprop", "dim": 2}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        CNF(
            args.pop("field"),
            args.pop("integrator"),
            args.pop("trace"),
            args.pop("gradient"),
            **args,
        )  # type: ignore[arg-type]


def test_field_instance_of_another_dimension() -> None:
    with pytest.raises(ValueError, match="field has dim=3"):
        CNF(P.affine_field(torch.eye(3)), "rk4", "exact", "backprop", dim=2)


def test_any_module_with_forward_t_x_is_a_field() -> None:
    class Rotation(torch.nn.Module):
        def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            return torch.stack([-x[:, 1], x[:, 0]], dim=1)

    model = CNF(Rotation(), "dopri5", "exact", "backprop", dim=2, integrator_options=TIGHT)
    x = torch.randn(3, 2)
    # volume preserving: log-density is the base's at the rotated point
    z = P.affine_pull_back(x, torch.tensor([[0.0, -1.0], [1.0, 0.0]]))
    torch.testing.assert_close(
        model.log_prob(x), P.standard_normal_log_prob(z), atol=1e-7, rtol=1e-7
    )


@pytest.mark.parametrize(
    "gradient",
    [g for g in ("adjoint", "torchdiffeq_adjoint") if ("gradient_strategy", g) in REGISTRY],
)
def test_regularized_loss_gradients_match_backprop(gradient: str) -> None:
    """Regularizer states ride along in the adjoint; same seed, same probes, same gradient."""
    regs = [r for r in ("kinetic_energy", "jacobian_frobenius") if ("regularizer", r) in REGISTRY]
    if not regs:
        pytest.skip("no regularizer plugin is installed")
    integrator = _compatible_integrator(gradient)
    assert integrator is not None
    options = P.solver_options(REGISTRY.get("integrator", integrator), target=1e-9)[0]
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(1))
    grads = []
    for strategy in ("backprop", gradient):
        model = neural_cnf(
            "hutchinson",
            strategy,
            torch_seed=2,
            seed=5,
            regularizers=regs,
            integrator=integrator,
            integrator_options=options,
        )
        logp, reg = model.log_prob_and_regularization(x)
        assert reg.shape == (5, len(regs)) and bool((reg >= 0).all())
        loss = -logp.mean() + 0.1 * reg.sum(1).mean()
        grads.append(
            torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(model.parameters()))])
        )
    scale = float(grads[0].abs().max())
    torch.testing.assert_close(grads[1], grads[0], atol=1e-6 * max(scale, 1.0), rtol=0)


def test_integer_data_is_converted_not_the_model() -> None:
    model = neural_cnf(integrator="rk4", integrator_options={"step_size": 0.5})
    with pytest.raises(InvalidInputError) as info:
        model.log_prob(torch.ones(4, 2, dtype=torch.int64))
    message = str(info.value)
    assert "x.to(torch.float64)" in message and "x.float()" in message
    assert "model.to(torch.int64)" not in message


class _ScalarField(torch.nn.Module):
    """Breaks the field contract: returns one number for the whole batch."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones((), dtype=torch.float64))

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return (self.scale * x).sum()


class _Float32Field(torch.nn.Module):
    """Breaks the field contract: answers float64 points in float32."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones((), dtype=torch.float64))

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return (self.scale * x).float()


class _NoTimeField(torch.nn.Module):
    """Breaks the field contract: forward(x) without the time."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -x


FIELD_TRACES = [n for n, c in TRACE_CAPS.items() if not c["requires_divergence"]]


@pytest.mark.parametrize("trace", FIELD_TRACES)
@pytest.mark.parametrize(
    "field, match",
    [(_ScalarField, r"returned shape \(\) for x of shape \(3, 2\)"), (_Float32Field, "dtype")],
)
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # 'exact' first tries torch.func
def test_field_breaking_its_contract_is_named(trace: str, field: type, match: str) -> None:
    model = CNF(field(), "rk4", trace, "backprop", dim=2, integrator_options={"n_steps": 2})
    x = torch.zeros(3, 2, dtype=torch.float64)
    for call in (model.log_prob, model.inverse):
        with pytest.raises(PluginContractError, match=match) as info:
            call(x)
        assert f"vector field {field.__name__}" in str(info.value)
        assert "forward(t, x)" in str(info.value) and "(batch, dim)" in str(info.value)


def test_field_without_time_argument_is_refused_at_construction() -> None:
    with pytest.raises(
        PluginContractError,
        match=r"_NoTimeField has forward\(x.*cannot be called as forward\(t, x\)",
    ):
        CNF(_NoTimeField(), "rk4", "exact", "backprop", dim=2)


def test_half_precision_model_solves_at_exact_float32_times() -> None:
    seen: list[torch.Tensor] = []

    class Recording(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rate = torch.nn.Parameter(torch.ones(()))

        def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            seen.append(t.detach())
            return -self.rate * x

    model = CNF(
        Recording(), "rk4", "exact", "backprop", dim=2, t1=0.1, integrator_options={"n_steps": 2}
    ).half()
    x = model.transform(torch.ones(3, 2, dtype=torch.float16))
    assert x.dtype == torch.float16
    assert {t.dtype for t in seen} == {torch.float32}
    assert max(float(t) for t in seen) == float(torch.tensor(0.1, dtype=torch.float32))
