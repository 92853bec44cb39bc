"""Tests of :mod:`flowkit.adapters`: networks trained elsewhere as flowkit fields.

The main test trains a small network with plain conditional flow matching written
here (not with flowkit), in the torchcfm / Meta ``flow_matching`` convention
``net(x, t)`` with one time per sample, wraps it with :func:`flowkit.as_field` and
checks flowkit's ``log_prob`` of it: it integrates to one over a grid and fits
the data. The other tests check that every adapter mode computes exactly what a
hand-written wrapper computes, the time reversal, and every error path.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

import flowkit
from flowkit.adapters import SIGNATURES, TIME_MODES, ExternalField, as_field
from flowkit.errors import InvalidInputError, PluginContractError
from flowkit.testing.conformance import check_vector_field

# -- a network trained elsewhere ---------------------------------------------

CENTERS = torch.tensor([[-1.5, 0.0], [1.5, 0.0]], dtype=torch.float64)
DATA_STD = 0.5


def sample_data(n: int, generator: torch.Generator) -> Tensor:
    """Samples of the equal mixture of N(c, 0.5^2 I) over the two CENTERS."""
    component = torch.randint(0, len(CENTERS), (n,), generator=generator)
    noise = torch.randn(n, 2, generator=generator, dtype=torch.float64)
    return CENTERS[component] + DATA_STD * noise


def data_log_prob(x: Tensor) -> Tensor:
    """The exact log-density of the mixture sampled by :func:`sample_data`."""
    diff = x[:, None, :] - CENTERS[None]
    log_normal = (
        -0.5 * diff.pow(2).sum(-1) / DATA_STD**2 - 2 * math.log(DATA_STD) - math.log(2 * math.pi)
    )
    return torch.logsumexp(log_normal, dim=1) - math.log(len(CENTERS))


class TorchCFMStyleNet(nn.Module):
    """A velocity network called as ``net(x, t)`` with ``t`` of shape ``(batch,)``."""

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(3, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, 2),
        )

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.mlp(torch.cat([x, t[:, None]], dim=-1))


@pytest.fixture(scope="module")
def trained_net() -> TorchCFMStyleNet:
    """Plain conditional flow matching, written out (no flowkit objective)."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    net = TorchCFMStyleNet().double()
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(600):
        x1 = sample_data(256, generator)
        x0 = torch.randn(256, 2, generator=generator, dtype=torch.float64)
        t = torch.rand(256, generator=generator, dtype=torch.float64)
        xt = (1 - t[:, None]) * x0 + t[:, None] * x1
        loss = (net(xt, t) - (x1 - x0)).pow(2).sum(-1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return net.requires_grad_(False)


def accurate_cnf(field: nn.Module) -> flowkit.CNF:
    return flowkit.CNF(
        field,
        "dopri5",
        "exact",
        "backprop",
        dim=2,
        integrator_options=dict(rtol=1e-7, atol=1e-7),
    )


def test_log_prob_of_network_trained_elsewhere_integrates_to_one(
    trained_net: TorchCFMStyleNet,
) -> None:
    # The density is smooth and, like its derivatives, negligible at the edge of
    # [-6, 6]^2 (the data lie within |x| < 4, the base's tail beyond 6 holds
    # ~1e-9), so the trapezoid rule converges faster than any power of the
    # spacing: its error is far below the ODE's (rtol = atol = 1e-7, which moves
    # log p, hence Z, by ~1e-7..1e-6). 1e-5 leaves that room ten times over,
    # while a wrong sign or a missing term in the change of log-density moves Z
    # by orders of magnitude more.
    field = as_field(trained_net, signature="x, t", time="vector", dim=2)
    model = accurate_cnf(field)
    grid = torch.linspace(-6.0, 6.0, 120)
    gx, gy = torch.meshgrid(grid, grid, indexing="ij")
    points = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=-1)
    with torch.no_grad():
        density = model.log_prob(points).exp().reshape(len(grid), len(grid))
    total = torch.trapezoid(torch.trapezoid(density, grid, dim=1), grid)
    assert abs(total.item() - 1.0) < 1e-5


def test_log_prob_of_network_trained_elsewhere_fits_the_data(
    trained_net: TorchCFMStyleNet,
) -> None:
    # mean(log p_data - log p_model) over data samples estimates KL(data || model)
    # >= 0. The base N(0, I) scores ~1.04 nats; the trained flow ~0.06 (600 Adam
    # steps, fixed seeds). A flow run in the wrong time direction (the network's
    # noise end treated as data) scores ~3 nats: the convention matters.
    x = sample_data(2000, torch.Generator().manual_seed(1))
    exact = data_log_prob(x)
    with torch.no_grad():
        right = accurate_cnf(as_field(trained_net, signature="x, t", time="vector"))
        wrong = accurate_cnf(
            as_field(trained_net, signature="x, t", time="vector", reverse_time=True)
        )
        kl_right = (exact - right.log_prob(x)).mean().item()
        kl_wrong = (exact - wrong.log_prob(x)).mean().item()
    base = -0.5 * x.pow(2).sum(-1) - math.log(2 * math.pi)
    kl_base = (exact - base).mean().item()
    assert -0.02 < kl_right < 0.15
    assert kl_base > 0.9
    assert kl_wrong > 1.0


# -- every mode computes what a hand-written wrapper computes ----------------


def core(x: Tensor, t_column: Tensor, cond: Tensor | None = None) -> Tensor:
    """A nonlinear field with time, and row-wise conditioning, in one place."""
    out = torch.sin(x * (1 + t_column)) + t_column**2 * x.flip(-1)
    return out if cond is None else out + cond * x


def make_net(signature: str, time: str) -> Callable[..., Tensor]:
    """A network in the given convention, evaluating :func:`core`."""

    def as_column(t: Tensor, x: Tensor) -> Tensor:
        if time == "scalar":
            assert t.dim() == 0
            return t.expand(x.shape[0], 1)
        if time == "vector":
            assert t.shape == (x.shape[0],)
            return t[:, None]
        assert t.shape == (x.shape[0], 1)
        return t

    if signature == "x":

        def net_concat(xt: Tensor, cond: Tensor | None = None) -> Tensor:
            return core(xt[:, :-1], xt[:, -1:], cond)

        return net_concat
    if signature == "x, t":

        def net_xt(x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
            return core(x, as_column(t, x), cond)

        return net_xt

    def net_tx(t: Tensor, x: Tensor, cond: Tensor | None = None) -> Tensor:
        return core(x, as_column(t, x), cond)

    return net_tx


MODES = [
    ("t, x", "scalar"),
    ("t, x", "vector"),
    ("t, x", "column"),
    ("x, t", "scalar"),
    ("x, t", "vector"),
    ("x, t", "column"),
    ("x", "concat"),
]


def test_modes_cover_every_signature_and_time() -> None:
    assert {s for s, _ in MODES} == set(SIGNATURES)
    assert {t for _, t in MODES} == set(TIME_MODES)


@pytest.mark.parametrize(("signature", "time"), MODES)
@pytest.mark.parametrize("with_cond", [False, True], ids=["plain", "cond"])
@pytest.mark.parametrize("reverse_time", [False, True], ids=["forward", "reversed"])
def test_mode_matches_hand_written_wrapper(
    signature: str, time: str, with_cond: bool, reverse_time: bool
) -> None:
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(5, 3, generator=generator)
    t = torch.tensor(0.3)
    cond = torch.randn(5, 1, generator=generator) if with_cond else None
    extras = {"cond": cond} if with_cond else None
    field = as_field(
        make_net(signature, time),
        signature=signature,
        time=time,
        extras=extras,
        reverse_time=reverse_time,
        dim=3,
    )
    # The hand-written equivalent: the network's time is 1 - t and its output
    # negated when its time runs from data to noise.
    net_time = 1 - t if reverse_time else t
    expected = core(x, net_time.expand(5, 1), cond)
    expected = -expected if reverse_time else expected
    assert torch.equal(field(t, x), expected)


class ConventionNet(nn.Module):
    """A learnable network taking ``(x, t)`` in any of the supported conventions."""

    def __init__(self, signature: str, time: str, dim: int) -> None:
        super().__init__()
        self.signature, self.time = signature, time
        self.linear = nn.Linear(dim + 1, dim)

    def forward(self, *args: Tensor) -> Tensor:
        if self.signature == "x":
            (xt,) = args
        else:
            x, t = args if self.signature == "x, t" else reversed(args)
            column = {"scalar": lambda: t.expand(x.shape[0], 1), "vector": lambda: t[:, None]}
            xt = torch.cat([x, column.get(self.time, lambda: t)()], dim=-1)
        return torch.tanh(self.linear(xt))


@pytest.mark.parametrize(("signature", "time"), MODES)
def test_adapted_network_passes_the_public_vector_field_conformance(
    signature: str, time: str
) -> None:
    # Output shape and dtype (float32 and float64), rows independent, gradients
    # reach every parameter: the checks a third-party field plugin must pass.
    net = ConventionNet(signature, time, dim=3)
    field = as_field(net, signature=signature, time=time, dim=3)
    assert check_vector_field(field, dim=3) == ["contract", "rows independent", "differentiable"]


def test_adapted_network_trains_with_hutchinson_and_adjoint() -> None:
    net = ConventionNet("x, t", "vector", dim=2)
    model = flowkit.CNF(
        as_field(net, signature="x, t", time="vector", extras=None, dim=2),
        "dopri5",
        "hutchinson",
        "adjoint",
        dim=2,
        seed=0,
    )
    model.log_prob(torch.randn(8, 2)).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_signature_spellings_are_normalised() -> None:
    for spelling in ("x,t", " x ,  t ", "(x, t)"):
        field = as_field(make_net("x, t", "vector"), signature=spelling, time="vector")
        assert field.signature == "x, t"


def test_module_parameters_belong_to_the_field_and_train() -> None:
    net = TorchCFMStyleNet(hidden=8)
    field = as_field(net, signature="x, t", time="vector", dim=2)
    assert {id(p) for p in field.parameters()} == {id(p) for p in net.parameters()}
    model = flowkit.CNF(field, "rk4", "exact", "backprop", dim=2, integrator_options={"n_steps": 2})
    model.log_prob(torch.randn(4, 2)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_bound_method_registers_its_module() -> None:
    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(3, 2)

        def velocity(self, x: Tensor, t: Tensor) -> Tensor:
            return self.linear(torch.cat([x, t[:, None]], dim=-1))

    model = Model()
    field = as_field(model.velocity, signature="x, t", time="vector", dim=2)
    assert {id(p) for p in field.parameters()} == {id(p) for p in model.parameters()}
    field.to(torch.float32)
    assert model.linear.weight.dtype == torch.float32


def test_tensor_extras_move_with_the_field() -> None:
    net = make_net("x, t", "vector")
    cond = torch.ones(4, 1, dtype=torch.float32)
    field = as_field(net, signature="x, t", time="vector", extras={"cond": cond, "unused": 2})
    field.to(torch.float64)
    assert field.extras["cond"].dtype == torch.float64
    assert field.extras["unused"] == 2
    assert "extra_cond" not in field.state_dict()  # constants, not learned state


def test_no_probe_call_without_dim() -> None:
    calls = []

    def net(x: Tensor, t: Tensor) -> Tensor:
        calls.append(x.shape)
        return x

    as_field(net, signature="x, t", time="vector")
    assert calls == []
    as_field(net, signature="x, t", time="vector", dim=2)
    assert len(calls) == 1


# -- reverse_time: a network whose time runs from data (0) to noise (1) ------


class FlowkitLinearField(nn.Module):
    """``f(t, x) = (1 + 2 t) A x`` in flowkit's convention (base at 0, data at 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("A", torch.tensor([[-0.3, 0.8], [-0.5, 0.2]]))

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        return (1 + 2 * t) * x @ self.A.T


def test_reverse_time_gives_the_flowkit_convention() -> None:
    # A network in the score-SDE convention (data at s = 0, noise at s = 1)
    # describing the same flow has v(s, x) = -f(1 - s, x). With reverse_time the
    # adapter recovers f, so flowkit's likelihoods agree; without it they differ.
    forward_field = FlowkitLinearField()

    def score_sde_net(x: Tensor, s: Tensor) -> Tensor:
        return -forward_field(1 - s, x)

    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(4))
    reference = accurate_cnf(forward_field).log_prob(x)
    adapted = accurate_cnf(
        as_field(score_sde_net, signature="x, t", time="scalar", reverse_time=True)
    ).log_prob(x)
    unadapted = accurate_cnf(as_field(score_sde_net, signature="x, t", time="scalar")).log_prob(x)
    torch.testing.assert_close(adapted, reference, rtol=0, atol=1e-10)
    assert (unadapted - reference).abs().max() > 0.1


# -- error paths -------------------------------------------------------------


@pytest.mark.parametrize("signature", ["x t", "t, x, y", "(t)", "input, time", ""])
def test_unknown_signature_lists_the_valid_ones(signature: str) -> None:
    with pytest.raises(ValueError, match="unknown signature") as info:
        as_field(make_net("x, t", "vector"), signature=signature, time="vector")
    for valid in SIGNATURES:
        assert repr(valid) in str(info.value)


@pytest.mark.parametrize(
    ("argument", "value", "suggestion"),
    [
        ("signature", "x, time", "'x, t'"),
        ("time", "Vector", "'vector'"),
        ("time", "col", "'column'"),
        ("time", "per_sample", None),
    ],
)
def test_unknown_value_suggests_the_closest(
    argument: str, value: str, suggestion: str | None
) -> None:
    arguments = {"signature": "x, t", "time": "vector", argument: value}
    with pytest.raises(ValueError, match="unknown") as info:
        as_field(make_net("x, t", "vector"), **arguments)
    if suggestion is None:
        assert "Did you mean" not in str(info.value)
    else:
        assert f"Did you mean {suggestion}?" in str(info.value)


def test_signature_must_be_a_string() -> None:
    with pytest.raises(TypeError, match="signature must be a string"):
        as_field(make_net("x, t", "vector"), signature=("x", "t"), time="vector")  # type: ignore[arg-type]


@pytest.mark.parametrize("time", ["batch", "Vector", "", None])
def test_unknown_time_mode_lists_the_valid_ones(time: object) -> None:
    with pytest.raises(ValueError, match="unknown time mode") as info:
        as_field(make_net("x, t", "vector"), signature="x, t", time=time)  # type: ignore[arg-type]
    for valid in TIME_MODES:
        assert repr(valid) in str(info.value)


@pytest.mark.parametrize(("signature", "time"), [("x", "vector"), ("x, t", "concat")])
def test_concat_needs_the_one_input_signature(signature: str, time: str) -> None:
    with pytest.raises(ValueError, match="signature='x' with time='concat'"):
        as_field(make_net("x", "concat"), signature=signature, time=time)


def test_net_must_be_callable() -> None:
    with pytest.raises(TypeError, match=r"net must be an nn\.Module or a callable"):
        as_field(42, signature="x, t", time="vector")  # type: ignore[arg-type]


def test_reverse_time_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="reverse_time must be True or False"):
        as_field(make_net("x, t", "vector"), signature="x, t", time="vector", reverse_time=1)  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "match"), [("t", "may not set 't'"), ("not a name", "keyword")])
def test_bad_extras_names(name: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        as_field(make_net("x, t", "vector"), signature="x, t", time="vector", extras={name: 1})


@pytest.mark.parametrize("dim", [0, -1, 2.0, True])
def test_bad_dim(dim: object) -> None:
    with pytest.raises(ValueError, match="dim must be a positive integer"):
        as_field(make_net("x, t", "vector"), signature="x, t", time="vector", dim=dim)  # type: ignore[arg-type]


def test_probe_reports_a_call_in_the_wrong_convention() -> None:
    # The network takes (x, t) with a vector t; declaring "t, x" swaps them.
    with pytest.raises(
        PluginContractError, match=r"probe call TorchCFMStyleNet\(t of shape"
    ) as info:
        as_field(TorchCFMStyleNet(), signature="t, x", time="vector", dim=2)
    assert "signature= and time=" in str(info.value)
    assert info.value.__cause__ is not None


def test_probe_reports_the_wrong_output_shape() -> None:
    def net_predicting_time_too(xt: Tensor) -> Tensor:
        return xt  # (batch, dim + 1): the time column was not dropped

    with pytest.raises(PluginContractError, match=r"returned \(3, 3\), expected shape \(3, 2\)"):
        as_field(net_predicting_time_too, signature="x", time="concat", dim=2)


def test_wrong_output_shape_without_probe_fails_at_the_first_call() -> None:
    field = as_field(lambda x, t: x.sum(-1), signature="x, t", time="vector")
    with pytest.raises(PluginContractError, match=r"returned \(4,\), expected shape \(4, 2\)"):
        field(torch.tensor(0.5), torch.zeros(4, 2))


def test_non_scalar_time_is_refused() -> None:
    field = as_field(make_net("x, t", "vector"), signature="x, t", time="vector")
    with pytest.raises(InvalidInputError, match="one time for the whole batch"):
        field(torch.zeros(4), torch.zeros(4, 2))


def test_field_is_a_vector_field_without_closed_form_divergence() -> None:
    field = as_field(make_net("t, x", "scalar"), signature="t, x", time="scalar")
    assert isinstance(field, ExternalField)
    assert isinstance(field, flowkit.VectorField)
    assert field.has_divergence is False
