"""Objectives as a plugin kind: registration, the built-ins' mathematics, conformance."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from flowkit.plugins.objectives import FlowMatching, MaximumLikelihood, RectifiedFlow
from torch import Tensor, nn

import flowkit
from flowkit.compat import check_compatibility
from flowkit.data import sample_toy
from flowkit.errors import IncompatibleComponentsError, InvalidInputError
from flowkit.interfaces import Objective, ObjectiveResult
from flowkit.matching import flow_matching_loss, rectified_flow_loss, reflow_pairs
from flowkit.registry import build_registry, get_registry
from flowkit.testing.conformance import ConformanceError
from flowkit.testing.objective_checks import check_objective
from flowkit.train import TrainConfig, Trainer


def _model(trace: str | None = "exact", field: str = "mlp", **kwargs: Any) -> flowkit.CNF:
    torch.manual_seed(0)
    kwargs.setdefault("field_options", {"hidden": (16,)})
    return flowkit.CNF(
        field,
        "rk4",
        trace,
        "backprop",
        dim=2,
        integrator_options={"n_steps": 4},
        **kwargs,
    ).double()


def _batch(n: int = 32) -> Tensor:
    return sample_toy("8gaussians", n, seed=1, dtype=torch.float64)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# Objectives whose construction needs an option without a default, built per model.
REQUIRED_OPTIONS = {"rectified_flow": lambda model: {"teacher": model}}


# -- the kind ------------------------------------------------------------------------------


def _flowkit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowkit", *args], capture_output=True, text=True, check=False
    )


def test_objectives_are_listed_as_a_kind() -> None:
    result = _flowkit("list", "--json", "--kind", "objective")
    assert result.returncode == 0, result.stderr
    components = json.loads(result.stdout)["components"]
    by_name = {c["name"]: c for c in components}
    assert {"maximum_likelihood", "flow_matching", "rectified_flow"} <= set(by_name)
    assert all(c["kind"] == "objective" for c in components)
    assert by_name["maximum_likelihood"]["capabilities"]["requires_trace"] is True
    assert by_name["flow_matching"]["capabilities"]["simulation_free"] is True
    table = _flowkit("list")
    assert table.returncode == 0 and "objectives" in table.stdout


def test_unknown_objective_option_raises_naming_the_valid_ones() -> None:
    with pytest.raises(TypeError, match=r"Unknown option.*'coupling_kind'.*coupling, sigma"):
        get_registry().create("objective", "flow_matching", coupling_kind="ot")


@pytest.mark.parametrize("name", get_registry().names("objective"))
def test_every_objective_passes_check_objective(name: str) -> None:
    spec = get_registry().get("objective", name)
    model = _model()
    if not check_compatibility(objective=spec, field=model.field):  # a score model's objective
        model = _model(
            field_options={"score_field_options": {"hidden": (16,)}}, field="probability_flow"
        )
    options = REQUIRED_OPTIONS.get(name, lambda m: {})(model)
    objective = get_registry().create("objective", name, **options)
    done = check_objective(objective, model, _batch())
    assert "gradients reach the field" in done and "float metrics" in done


# -- maximum likelihood -----------------------------------------------------------------------

TINY: dict[str, Any] = {
    "n_train": 128,
    "n_val": 32,
    "n_test": 32,
    "batch_size": 32,
    "field_options": {"hidden": [8, 8]},
    "integrator": "rk4",
    "integrator_options": {"n_steps": 4},
    "progress": False,
    "plots": False,
    "dtype": "float64",
}


@pytest.mark.parametrize(
    "extra",
    [
        {"trace": "exact"},
        {
            "trace": "hutchinson",
            "regularizers": {"kinetic_energy": 0.01, "jacobian_frobenius": 0.1},
            "steer": 0.2,
        },
    ],
    ids=["plain", "hutchinson-regularized-steer"],
)
def test_maximum_likelihood_equals_the_trainers_loss(tmp_path: Path, extra: dict) -> None:
    trainer = Trainer(TrainConfig(**{**TINY, **extra}), run_dir=tmp_path, write=False)
    config = trainer.config
    objective = get_registry().create(
        "objective",
        "maximum_likelihood",
        regularizers=dict(config.regularizers),
        steer=config.steer,
    )
    x = trainer.next_batch()
    steer_stream = torch.Generator()
    steer_stream.set_state(trainer.steer_generator.get_state())

    torch.manual_seed(7)  # the probes come from the global stream, as in training
    t1 = trainer._end_time()
    expected, expected_metrics = trainer.compute_loss(x, t1)
    torch.manual_seed(7)
    result = objective.loss(trainer.model, x, generator=steer_stream)

    assert torch.equal(result.loss, expected)
    assert result.metrics["nll"] == float(expected_metrics["nll"])
    for name in config.regularizers:
        assert result.metrics[f"reg_{name}"] == float(expected_metrics[f"reg_{name}"])
    if config.steer > 0:
        assert result.metrics["t1"] == t1 != config.t1
    grads = torch.autograd.grad(result.loss, list(trainer.model.parameters()))
    assert all(bool(torch.isfinite(g).all()) for g in grads)


def test_maximum_likelihood_refuses_a_context_for_an_unconditional_field() -> None:
    model = _model()
    with pytest.raises(InvalidInputError, match="built unconditional"):
        MaximumLikelihood().loss(model, _batch(), context=torch.zeros(32, 1, dtype=torch.float64))


def test_maximum_likelihood_weights_must_match_the_models_regularizers() -> None:
    model = _model(regularizers=("kinetic_energy",))
    with pytest.raises(InvalidInputError, match=r"no weight for \['kinetic_energy'\]"):
        MaximumLikelihood().loss(model, _batch())
    with pytest.raises(InvalidInputError, match=r"no regularizer \['jacobian'\] on the model"):
        MaximumLikelihood(regularizers={"kinetic_energy": 1.0, "jacobian": 1.0}).loss(
            model, _batch()
        )
    with pytest.raises(ValueError, match="must be finite and >= 0"):
        MaximumLikelihood(regularizers={"kinetic_energy": -1.0})


def test_maximum_likelihood_steer_must_stay_inside_the_time_span() -> None:
    with pytest.raises(ValueError, match="steer must be finite and >= 0"):
        MaximumLikelihood(steer=-0.1)
    with pytest.raises(InvalidInputError, match=r"steer=1.5 must be smaller than"):
        MaximumLikelihood(steer=1.5).loss(_model(), _batch(), generator=_gen())


def test_maximum_likelihood_needs_a_trace_estimator() -> None:
    model = _model(trace=None)
    with pytest.raises(IncompatibleComponentsError, match=r"requires_trace=True.*has none"):
        MaximumLikelihood().loss(model, _batch())
    # A simulation-free objective trains the same model without a trace estimator.
    assert FlowMatching().loss(model, _batch(), generator=_gen()).loss.requires_grad


def test_compatibility_function_on_each_objective() -> None:
    registry = get_registry()
    for name in registry.names("objective"):
        spec = registry.get("objective", name)
        without = check_compatibility(objective=spec, trace=None)
        with_trace = check_compatibility(
            objective=spec, trace=registry.get("trace_estimator", "exact")
        )
        assert with_trace.ok
        if spec.capabilities["requires_trace"]:
            assert not without.ok and "requires a trace estimator" in without.reasons[0]
        else:
            assert without.ok


def test_wrong_model_type_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match=r"trains a flowkit.CNF, got Linear"):
        FlowMatching().loss(nn.Linear(2, 2), _batch())


# -- flow matching ---------------------------------------------------------------------------


@pytest.mark.parametrize(("coupling", "sigma"), [("independent", 0.0), ("ot", 0.0), ("ot", 0.3)])
def test_flow_matching_is_flowkit_matchings_loss(coupling: str, sigma: float) -> None:
    model, x = _model(), _batch()
    objective = get_registry().create("objective", "fm", coupling=coupling, sigma=sigma)
    result = objective.loss(model, x, generator=_gen(3))
    g = _gen(3)
    x0 = torch.randn(x.shape, generator=g, dtype=x.dtype)  # noise first, from the same stream
    expected = flow_matching_loss(model.field, x0, x, coupling=coupling, sigma=sigma, generator=g)
    assert torch.equal(result.loss, expected)
    assert result.metrics == {"fm_loss": expected.item()}


class _ToPoint(nn.Module):
    """The exact velocity ``(c - x) / (T - t)`` of straight paths ending at ``c`` at time ``T``.

    ``scale`` is a parameter fixed at 1, so the field has something to train.
    """

    def __init__(self, c: Tensor, end: float) -> None:
        super().__init__()
        self.c, self.end = c, end
        self.scale = nn.Parameter(torch.ones((), dtype=torch.float64))

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        return self.scale * (self.c - x) / (self.end - t)


@pytest.mark.parametrize("coupling", ["independent", "ot"])
@pytest.mark.parametrize("t1", [1.0, 2.0])
def test_flow_matching_loss_vanishes_for_the_exact_field(coupling: str, t1: float) -> None:
    """Data at one point ``c``: every path's velocity is the field's, on any time span."""
    c = torch.tensor([1.5, -0.5], dtype=torch.float64)
    field = _ToPoint(c, end=t1)
    model = flowkit.CNF(field, "rk4", "exact", "backprop", dim=2, t1=t1)
    x = c.expand(64, 2).clone()
    exact = FlowMatching(coupling=coupling).loss(model, x, generator=_gen())
    assert exact.loss.item() < 1e-20
    widened = FlowMatching(coupling=coupling, sigma=0.1).loss(model, x, generator=_gen())
    assert widened.loss.item() > 1e-3  # the noisy path is not the field's


def test_flow_matching_options_are_checked() -> None:
    with pytest.raises(ValueError, match=r"Unknown coupling 'sinkhorn'.*independent, ot"):
        FlowMatching(coupling="sinkhorn")
    with pytest.raises(ValueError, match="sigma"):
        FlowMatching(sigma=-1.0)
    with pytest.raises(InvalidInputError, match="one row per sample"):
        FlowMatching().loss(_model(), _batch(), context=torch.zeros(3, 1, dtype=torch.float64))
    with pytest.raises(InvalidInputError, match="batch must have shape"):
        FlowMatching().loss(_model(), torch.zeros(4, 3, dtype=torch.float64))


def test_flow_matching_passes_the_context_to_the_field() -> None:
    class Conditional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(3, 2, dtype=torch.float64)

        def forward(self, t: Tensor, x: Tensor, context: Tensor | None = None) -> Tensor:
            assert context is not None
            return self.lin(torch.cat([x, context], dim=-1))

    model = flowkit.CNF(Conditional(), "rk4", "exact", "backprop", dim=2)
    context = torch.arange(32, dtype=torch.float64).reshape(32, 1)
    result = FlowMatching(coupling="ot").loss(model, _batch(), context=context, generator=_gen())
    assert result.loss.requires_grad and torch.isfinite(result.loss)


def test_flow_matching_training_smoke() -> None:
    """~200 Adam steps on 8 Gaussians: the loss falls and the held-out NLL is finite and better."""
    torch.manual_seed(0)
    model = flowkit.CNF(
        "mlp",
        "rk4",
        "exact",
        "backprop",
        dim=2,
        field_options={"hidden": (64, 64)},
        integrator_options={"n_steps": 20},
    ).double()
    data = sample_toy("8gaussians", 4096, seed=2, dtype=torch.float64)
    held_out = sample_toy("8gaussians", 512, seed=3, dtype=torch.float64)
    with torch.no_grad():
        nll_before = float(-model.log_prob(held_out).mean())
    objective, g = FlowMatching(coupling="ot"), _gen(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(200):
        batch = data[(step * 128) % 4096 :][:128]
        optimizer.zero_grad()
        result = objective.loss(model, batch, generator=g)
        result.loss.backward()
        optimizer.step()
        losses.append(result.metrics["fm_loss"])
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    assert last < 0.7 * first
    with torch.no_grad():
        nll_after = float(-model.log_prob(held_out).mean())
    assert torch.isfinite(torch.tensor(nll_after))
    assert nll_after < nll_before - 1.0


# -- rectified flow --------------------------------------------------------------------------


def test_rectified_flow_trains_on_a_frozen_teachers_pairs() -> None:
    model, x = _model(), _batch()
    objective = RectifiedFlow(teacher=model)
    with torch.no_grad():  # training the model must not move the teacher
        for p in model.parameters():
            p.add_(0.5)
    result = objective.loss(model, x, generator=_gen(4))
    g = _gen(4)
    z = torch.randn(x.shape, generator=g, dtype=x.dtype)
    pairs = reflow_pairs(objective.teacher.transform, z)
    assert not torch.allclose(pairs.x, model.transform(z))  # the teacher is the old model
    assert torch.equal(result.loss, rectified_flow_loss(model.field, pairs, generator=g))
    assert all(not p.requires_grad for p in objective.teacher.parameters())


def test_rectified_flow_with_a_callable_teacher_and_context() -> None:
    seen: list[Tensor] = []

    def teacher(z: Tensor, context: Tensor) -> Tensor:
        seen.append(context)
        return z + context

    class Conditional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 2, dtype=torch.float64)

        def forward(self, t: Tensor, x: Tensor, context: Tensor | None = None) -> Tensor:
            return self.lin(torch.cat([x, context], dim=-1))

    model = flowkit.CNF(Conditional(), "rk4", None, "backprop", dim=2)
    context = torch.ones(32, 2, dtype=torch.float64)
    result = RectifiedFlow(teacher=teacher, batch_size=10).loss(
        model, _batch(), context=context, generator=_gen()
    )
    assert result.loss.requires_grad and len(seen) == 4  # chunks of 10, 10, 10, 2
    # an unconditional CNF teacher refuses a context (conditional ones: test_train_context.py)
    with pytest.raises(InvalidInputError, match="built unconditional"):
        RectifiedFlow(teacher=_model()).loss(model, _batch(), context=context)
    with pytest.raises(TypeError, match=r"teacher must be a flowkit.CNF or a callable"):
        RectifiedFlow(teacher=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        RectifiedFlow(teacher=teacher, batch_size=0)


# -- check_objective on deliberately wrong objectives ------------------------------------------


class _Broken(Objective):
    """An objective with one deliberate flaw, chosen by ``flaw``."""

    accepts_context: ClassVar[bool] = True

    def __init__(self, flaw: str) -> None:
        self.flaw = flaw

    def loss(self, model, batch, *, context=None, generator=None):  # type: ignore[no-untyped-def]
        out = model.field(torch.zeros((), dtype=batch.dtype), batch)
        loss = out.pow(2).mean()
        metrics: dict[str, Any] = {"loss": float(loss.detach())}
        if self.flaw == "tuple":
            return loss
        if self.flaw == "no graph":
            loss = loss.detach()
        elif self.flaw == "vector":
            loss = out.pow(2).mean(dim=1)
        elif self.flaw == "nan":
            loss = loss * float("nan")
        elif self.flaw == "ignores parameters":
            last = list(model.field.parameters())[-1]
            loss = last.pow(2).sum()
        elif self.flaw == "tensor metrics":
            metrics = {"loss": loss.detach()}
        return ObjectiveResult(loss, metrics)


@pytest.mark.parametrize(
    ("flaw", "prop"),
    [
        ("tuple", "contract"),
        ("vector", "scalar loss"),
        ("nan", "finite loss"),
        ("no graph", "differentiable"),
        ("ignores parameters", "gradients reach the field"),
        ("tensor metrics", "float metrics"),
    ],
)
def test_check_objective_names_the_broken_property(flaw: str, prop: str) -> None:
    with pytest.raises(ConformanceError, match=f"breaks '{prop}'") as info:
        check_objective(_Broken(flaw), _model(), _batch())
    assert info.value.property == prop


def test_check_objective_catches_a_context_silently_accepted() -> None:
    class Silent(_Broken):
        accepts_context: ClassVar[bool] = False

    with pytest.raises(ConformanceError, match="breaks 'context'"):
        check_objective(Silent("none"), _model(), _batch())
    # maximum_likelihood accepts a context now (conditional CNFs), so the check is skipped
    assert "context" not in check_objective(MaximumLikelihood(), _model(), _batch())


def test_check_objective_refuses_a_non_objective() -> None:
    with pytest.raises(TypeError, match="takes an Objective instance or a registered"):
        check_objective(object(), _model(), _batch())  # type: ignore[arg-type]


# -- third-party objectives ------------------------------------------------------------------


def _objective_plugin(name: str, factory: Any) -> types.ModuleType:
    module = types.ModuleType(f"{name}_plugin")

    def flowkit_register_objectives(register: Any) -> None:
        register(name, factory)

    module.flowkit_register_objectives = flowkit.hookimpl(flowkit_register_objectives)  # type: ignore[attr-defined]
    return module


def test_a_third_party_objective_registers_through_the_hook() -> None:
    class MeanSquaredVelocity(Objective):
        simulation_free: ClassVar[bool] = True

        def loss(self, model, batch, *, context=None, generator=None):  # type: ignore[no-untyped-def]
            if context is not None:
                raise InvalidInputError("no context")
            value = model.field(torch.zeros((), dtype=batch.dtype), batch).pow(2).sum(-1).mean()
            return ObjectiveResult(value, {"msv": value.item()})

    registry = build_registry(
        autoload=False, plugins=[_objective_plugin("msv", MeanSquaredVelocity)]
    )
    spec = registry.get("objective", "msv")
    assert spec.plugin == "msv_plugin" and spec.capabilities["simulation_free"] is True
    assert "maximum_likelihood" in registry.names("objective")  # built-ins alongside
    assert "context" in check_objective("msv", _model(), _batch(), registry=registry)


def test_a_non_objective_class_is_refused_at_registration() -> None:
    registry = build_registry(
        autoload=False, builtins=False, plugins=[_objective_plugin("bad", nn.Linear)]
    )
    assert "bad" not in registry.names("objective")
    (broken,) = registry.broken
    assert "does not subclass flowkit.interfaces.Objective" in broken.error
