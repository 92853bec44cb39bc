"""Conditional CNFs: a context per sample reaches the field through every component.

The closed form (``flowkit.testing.cnf_problems.conditional_affine_log_prob``)
is checked against an independent Gaussian here; every combination is checked
against it in ``tests/test_combinations.py``.
"""

from __future__ import annotations

import pytest
import torch
from flowkit.plugins.objectives import MaximumLikelihood
from flowkit.plugins.vector_fields import MLPField
from registry_helpers import OpaqueField, suite_registry
from torch import Tensor, nn

import flowkit
from flowkit.data import TOY_CLASSES, load_dataset, one_hot, sample_toy
from flowkit.dynamics import BoundContext
from flowkit.errors import InvalidInputError
from flowkit.interfaces import VectorField
from flowkit.testing.cnf_problems import (
    conditional_affine_field,
    conditional_affine_log_prob,
    conditional_affine_pull_back,
)
from flowkit.testing.conformance import ConformanceError, check_vector_field

D = torch.float64
TIGHT = {"rtol": 1e-10, "atol": 1e-10}
BUILTIN_FIELDS = ("mlp", "concatsquash", "hypernet", "linear")


def _problem(seed: int = 0, batch: int = 5, dim: int = 2, width: int = 3):
    g = torch.Generator().manual_seed(seed)
    matrix = 0.4 * torch.randn(dim, dim, generator=g, dtype=D)
    context_matrix = torch.randn(dim, width, generator=g, dtype=D)
    bias = torch.randn(dim, generator=g, dtype=D)
    x = torch.randn(batch, dim, generator=g, dtype=D)
    context = torch.randn(batch, width, generator=g, dtype=D)
    return matrix, context_matrix, bias, x, context


def _cnf(field: nn.Module | str, gradient: str = "backprop", **kwargs) -> flowkit.CNF:
    options = {"integrator_options": TIGHT, "dim": 2}
    options.update(kwargs)
    return flowkit.CNF(field, "dopri5", kwargs.pop("trace", "exact"), gradient, **options)


# -- the closed form -------------------------------------------------------------------------


def test_conditional_closed_form_is_the_gaussian_it_should_be() -> None:
    """x | c = expm(S M) z + (expm(S M) - I) M^-1 (b + C c), z ~ N(0, I)."""
    matrix, context_matrix, bias, x, context = _problem()
    t0, t1 = 0.2, 1.1
    expm = torch.linalg.matrix_exp((t1 - t0) * matrix)
    for row in range(x.shape[0]):
        shift = bias + context_matrix @ context[row]
        mean = (expm - torch.eye(2, dtype=D)) @ torch.linalg.solve(matrix, shift)
        gaussian = torch.distributions.MultivariateNormal(mean, expm @ expm.T)
        got = conditional_affine_log_prob(
            x[row : row + 1], context[row], matrix, context_matrix, bias, t0=t0, t1=t1
        )
        torch.testing.assert_close(got[0], gaussian.log_prob(x[row]), rtol=0, atol=1e-12)


def test_conditional_cnf_matches_the_closed_form_and_depends_on_the_context() -> None:
    matrix, context_matrix, bias, x, context = _problem()
    model = _cnf(conditional_affine_field(matrix, context_matrix, bias), t0=0.2, t1=1.1)
    got = model.log_prob(x, context)
    exact = conditional_affine_log_prob(x, context, matrix, context_matrix, bias, t0=0.2, t1=1.1)
    torch.testing.assert_close(got, exact, rtol=0, atol=1e-8)
    other = model.log_prob(x, context.flip(0))
    assert (other - got).abs().max() > 1e-2  # the context matters


def test_sample_with_log_prob_and_round_trip_with_context() -> None:
    matrix, context_matrix, bias, _, context = _problem()
    model = _cnf(conditional_affine_field(matrix, context_matrix, bias), seed=3)
    x, logp = model.sample_with_log_prob(5, context)
    exact = conditional_affine_log_prob(x, context, matrix, context_matrix, bias)
    torch.testing.assert_close(logp, exact, rtol=0, atol=1e-8)
    z = model.sample_base(5)
    torch.testing.assert_close(model.inverse(model.transform(z, context), context), z)


def test_a_sequence_passes_the_context_to_every_block() -> None:
    """Two blocks M1 then M2: z -> expm(M2) (expm(M1) z + s1) + s2 is Gaussian given c."""
    matrix, context_matrix, bias, x, context = _problem()
    blocks = [
        _cnf(conditional_affine_field(matrix, context_matrix, bias)),
        _cnf(conditional_affine_field(-0.5 * matrix.T, 2 * context_matrix)),
    ]
    sequence = flowkit.compose(*blocks)
    got = sequence.log_prob(x, context)
    # pull back through block 2 in closed form (log|det| of its forward map: tr M2), then block 1
    matrix_2 = -0.5 * matrix.T
    middle = conditional_affine_pull_back(x, context, matrix_2, 2 * context_matrix)
    exact = conditional_affine_log_prob(
        middle, context, matrix, context_matrix, bias
    ) - torch.trace(matrix_2)
    torch.testing.assert_close(got, exact, rtol=0, atol=1e-8)
    z = sequence.sample_base(5)
    torch.testing.assert_close(sequence.inverse(sequence.transform(z, context), context), z)


# -- batch-constant context ---------------------------------------------------------------------


@pytest.mark.parametrize("field", BUILTIN_FIELDS)
def test_a_batch_constant_context_equals_the_broadcast_one(field: str) -> None:
    torch.manual_seed(0)
    model = flowkit.CNF(
        field,
        "rk4",
        "exact",
        "backprop",
        dim=2,
        seed=1,
        field_options={"context_dim": 3},
        integrator_options={"n_steps": 4},
    ).to(D)
    x = torch.randn(6, 2, dtype=D)
    vector = torch.randn(3, dtype=D)
    assert torch.equal(model.log_prob(x, vector), model.log_prob(x, vector.expand(6, 3)))
    model.manual_seed(5)
    sampled = model.sample(6, vector)
    model.manual_seed(5)
    assert torch.equal(sampled, model.sample(6, vector.expand(6, 3).clone()))


# -- the context reaches every trace estimator and regularizer ---------------------------------


class RecordingField(VectorField):
    """``A x + C context``, with its divergence, recording every context it is given."""

    has_divergence = True

    def __init__(self, matrix: Tensor, context_matrix: Tensor) -> None:
        super().__init__()
        self.dim = matrix.shape[0]
        self.matrix = nn.Parameter(matrix.clone())
        self.context_matrix = nn.Parameter(context_matrix.clone())
        self.seen: list[Tensor | None] = []

    def forward(self, t: Tensor, x: Tensor, context: Tensor | None = None) -> Tensor:
        self.seen.append(context)
        out = x @ self.matrix.T
        return out if context is None else out + context @ self.context_matrix.T

    def divergence(self, t: Tensor, x: Tensor, context: Tensor | None = None) -> Tensor:
        self.seen.append(context)
        return torch.trace(self.matrix).expand(x.shape[0])


@pytest.mark.parametrize("trace", suite_registry().names("trace_estimator"))
def test_the_context_reaches_every_trace_estimator_and_regularizer(trace: str) -> None:
    matrix, context_matrix, _, x, context = _problem()
    field = RecordingField(matrix, context_matrix)
    registry = suite_registry()
    model = flowkit.CNF(
        field,
        "rk4",
        trace,
        "backprop",
        dim=2,
        seed=0,
        integrator_options={"n_steps": 8},
        regularizers=registry.names("regularizer"),
        registry=registry,
    )
    logp, penalties = model.log_prob_and_regularization(x, context=context)
    assert penalties.shape == (5, len(registry.names("regularizer")))
    assert field.seen, "the field was never called"
    for seen in field.seen:
        assert seen is not None and torch.equal(seen, context)
    exact = conditional_affine_log_prob(x, context, matrix, context_matrix)
    if not registry.get("trace_estimator", trace).capabilities["stochastic"]:
        torch.testing.assert_close(logp, exact, rtol=0, atol=1e-5)  # rk4, 8 steps: ~3e-6


def test_unconditional_solves_call_the_field_without_a_context() -> None:
    field = RecordingField(*_problem()[:2])
    flowkit.CNF(field, "rk4", "exact", "backprop", dim=2).log_prob(torch.zeros(2, 2, dtype=D))
    assert field.seen and all(seen is None for seen in field.seen)


def test_bound_context_carries_has_divergence_and_parameters() -> None:
    field = RecordingField(*_problem()[:2])
    bound = BoundContext(field, torch.ones(4, 3, dtype=D))
    assert bound.has_divergence is True
    assert list(bound.parameters()) == list(field.parameters())
    assert bound.divergence(torch.tensor(0.0), torch.zeros(4, 2, dtype=D)).shape == (4,)
    unbound = BoundContext(MLPField(dim=2, hidden=(4,), context_dim=1).to(D), torch.ones(1, 1))
    assert unbound.has_divergence is True
    plain = BoundContext(OpaqueField(dim=2), torch.ones(1, 1))
    assert plain.has_divergence is False
    with pytest.raises(TypeError, match="no closed-form divergence"):
        plain.divergence(torch.tensor(0.0), torch.zeros(1, 2))


# -- gradients with respect to the context --------------------------------------------------------


def _context_gradients(gradient: str, context: Tensor, model_field: nn.Module, x: Tensor):
    model = _cnf(model_field, gradient)
    leaf = context.clone().requires_grad_(True)
    model.log_prob(x, leaf).sum().backward()
    params = [p.grad.clone() for p in model_field.parameters()]
    model_field.zero_grad()
    return leaf.grad, params


@pytest.mark.parametrize("shape", ["per row", "batch constant"])
def test_context_gradient_of_every_strategy_equals_backprop_and_the_closed_form(
    shape: str,
) -> None:
    matrix, context_matrix, bias, x, context = _problem()
    if shape == "batch constant":
        context = context[0]
    field = conditional_affine_field(matrix, context_matrix, bias)
    leaf = context.clone().requires_grad_(True)
    exact = conditional_affine_log_prob(x, leaf, matrix, context_matrix, bias).sum()
    (want,) = torch.autograd.grad(exact, leaf)
    backprop, backprop_params = _context_gradients("backprop", context, field, x)
    torch.testing.assert_close(backprop, want, rtol=0, atol=1e-8)
    for strategy in ("adjoint", "checkpoint"):
        got, params = _context_gradients(strategy, context, field, x)
        assert got is not None, strategy
        torch.testing.assert_close(got, backprop, rtol=0, atol=1e-8)
        for g, w in zip(params, backprop_params, strict=True):
            torch.testing.assert_close(g, w, rtol=0, atol=1e-8)


@pytest.mark.parametrize("strategy", ["adjoint", "checkpoint"])
def test_the_gradient_flows_through_the_context_into_an_embedding(strategy: str) -> None:
    """A context computed from labels by a module: its weights get backprop's gradient."""
    torch.manual_seed(0)
    field = MLPField(dim=2, hidden=(8,), context_dim=2).to(D)
    embedding = nn.Linear(4, 2).to(D)
    x = torch.randn(6, 2, dtype=D)
    labels = one_hot(torch.tensor([0, 1, 2, 3, 0, 1]), 4, dtype=D)
    grads = {}
    for name in ("backprop", strategy):
        embedding.zero_grad()
        _cnf(field, name).log_prob(x, embedding(labels)).sum().backward()
        grads[name] = embedding.weight.grad.clone()
    assert grads["backprop"].abs().max() > 0
    torch.testing.assert_close(grads[strategy], grads["backprop"], rtol=0, atol=1e-7)


# -- built-in fields ------------------------------------------------------------------------------


@pytest.mark.parametrize("field", BUILTIN_FIELDS)
def test_builtin_conditional_fields_keep_rows_independent_given_their_context(field: str) -> None:
    checked = check_vector_field(field, options={"context_dim": 2})
    assert "rows independent given context" in checked and "context used" in checked


def test_the_conformance_kit_catches_a_field_mixing_contexts_across_rows() -> None:
    class Leaky(VectorField):
        def __init__(self, *, dim: int) -> None:
            super().__init__()
            self.dim = dim
            self.context_dim = 2
            self.weight = nn.Parameter(torch.ones(dim, 2))

        def forward(self, t: Tensor, x: Tensor, context: Tensor | None = None) -> Tensor:
            assert context is not None
            return x + context.mean(0, keepdim=True) @ self.weight.T  # every row's context

    with pytest.raises(ConformanceError, match="rows independent given context"):
        check_vector_field(Leaky(dim=3))


@pytest.mark.parametrize("hidden", [(8, 5), (1, 6)])  # dim <= width_1, and dim > width_1
@pytest.mark.parametrize("chunk", [2**18, 8])  # one block, and chunked rows (contexts split too)
def test_mlp_closed_form_divergence_stays_exact_with_a_context(hidden, chunk) -> None:
    torch.manual_seed(0)
    field = MLPField(dim=3, hidden=hidden, context_dim=2).to(D)
    field.divergence_chunk_elements = chunk
    x = torch.randn(7, 3, dtype=D)
    context = torch.randn(7, 2, dtype=D)
    t = torch.tensor(0.3, dtype=D)
    value, div = field.value_and_divergence(t, x, context)
    torch.testing.assert_close(value, field(t, x, context=context), rtol=0, atol=1e-14)
    jac = torch.autograd.functional.jacobian(lambda z: field(t, z, context=context), x)
    exact = torch.stack([torch.trace(jac[b, :, b, :]) for b in range(7)])
    torch.testing.assert_close(div, exact, rtol=0, atol=1e-12)


def test_builtin_unconditional_fields_keep_their_parameter_shapes() -> None:
    assert MLPField(dim=2, hidden=(8,)).net[0].weight.shape == (8, 3)
    assert MLPField(dim=2, hidden=(8,), context_dim=4).net[0].weight.shape == (8, 7)


@pytest.mark.parametrize("field", BUILTIN_FIELDS)
def test_builtin_fields_refuse_a_missing_or_unexpected_context(field: str) -> None:
    registry = suite_registry()
    t, x = torch.tensor(0.0), torch.zeros(3, 2)
    conditional = registry.create("vector_field", field, dim=2, context_dim=2)
    with pytest.raises(ValueError, match=r"is conditional \(context_dim=2\)"):
        conditional(t, x)
    with pytest.raises(ValueError, match=r"expects a context of shape \(3, 2\)"):
        conditional(t, x, context=torch.zeros(3, 5))
    plain = registry.create("vector_field", field, dim=2)
    with pytest.raises(ValueError, match="built unconditional"):
        plain(t, x, context=torch.zeros(3, 2))
    with pytest.raises(ValueError, match="context_dim must be a non-negative integer"):
        registry.create("vector_field", field, dim=2, context_dim=-1)


# -- error paths at the CNF boundary -------------------------------------------------------------


def _conditional_model() -> flowkit.CNF:
    torch.manual_seed(0)
    return flowkit.CNF(
        "mlp",
        "rk4",
        "exact",
        "backprop",
        dim=2,
        field_options={"hidden": (8,), "context_dim": 3},
        integrator_options={"n_steps": 2},
    )


@pytest.mark.parametrize(
    ("context", "message"),
    [
        (torch.zeros(4, 3), r"one row per sample \(5 rows\)"),
        (torch.zeros(5, 3, 1), r"got \(5, 3, 1\)"),
        (torch.zeros(()), r"got \(\)"),
        (torch.zeros(5, 2), "width 2, but the vector field 'mlp' was built with context_dim=3"),
        (torch.zeros(5, 3, dtype=torch.float16), r"convert with context.to\(torch.float64\)"),
        (torch.zeros(5, 3, dtype=torch.int64), "flowkit.data.one_hot"),
        (torch.zeros(5, 3, dtype=D, device="meta"), "context is on meta"),
        (torch.tensor([[0.0, float("nan"), 0.0]] * 5, dtype=D), r"NaN or Inf in 5 row\(s\)"),
        ([[0.0] * 3] * 5, "must be a torch.Tensor, got list"),
    ],
)
def test_a_bad_context_raises_a_clear_error(context: object, message: str) -> None:
    model = _conditional_model()
    x = torch.zeros(5, 2)
    for call in (
        lambda: model.log_prob(x, context),
        lambda: model.sample(5, context),
        lambda: model.inverse(x, context),
        lambda: model.log_prob_and_regularization(x, context=context),
    ):
        with pytest.raises(InvalidInputError, match=message):
            call()


def test_a_conditional_field_without_a_context_raises() -> None:
    with pytest.raises(InvalidInputError, match=r"conditional \(context_dim=3\): pass context="):
        _conditional_model().log_prob(torch.zeros(5, 2))


def test_a_context_given_to_a_field_that_takes_none_raises_naming_it() -> None:
    class Plain(nn.Module):
        def forward(self, t: Tensor, x: Tensor) -> Tensor:
            return -x

    model = flowkit.CNF(Plain(), "rk4", "exact", "backprop", dim=2)
    model.log_prob(torch.zeros(3, 2))  # fields that ignore contexts keep working
    with pytest.raises(InvalidInputError, match="vector field Plain takes none"):
        model.log_prob(torch.zeros(3, 2), torch.zeros(3, 1))
    builtin = flowkit.CNF("mlp", "rk4", "exact", "backprop", dim=2)
    with pytest.raises(InvalidInputError, match="'mlp' was built unconditional"):
        builtin.log_prob(torch.zeros(3, 2), torch.zeros(3, 1))


def test_a_closed_form_divergence_without_a_context_parameter_raises() -> None:
    class HalfConditional(VectorField):
        has_divergence = True

        def forward(self, t: Tensor, x: Tensor, context: Tensor | None = None) -> Tensor:
            return -x

        def divergence(self, t: Tensor, x: Tensor) -> Tensor:  # type: ignore[override]
            return torch.full(x.shape[:1], -float(x.shape[1]))

    model = flowkit.CNF(HalfConditional(), "rk4", "analytic", "backprop", dim=2)
    with pytest.raises(InvalidInputError, match="closed-form divergence of the vector field"):
        model.log_prob(torch.zeros(3, 2), torch.zeros(3, 1))


# -- the maximum-likelihood objective -------------------------------------------------------------


def test_maximum_likelihood_with_a_context_is_the_mean_conditional_nll() -> None:
    matrix, context_matrix, bias, x, context = _problem(batch=8)
    model = _cnf(conditional_affine_field(matrix, context_matrix, bias))
    assert MaximumLikelihood.accepts_context is True
    result = MaximumLikelihood().loss(model, x, context=context)
    expected = -model.log_prob(x, context).mean()
    torch.testing.assert_close(result.loss, expected, rtol=0, atol=1e-12)
    exact = -conditional_affine_log_prob(x, context, matrix, context_matrix, bias).mean()
    torch.testing.assert_close(result.loss, exact, rtol=0, atol=1e-8)
    with pytest.raises(InvalidInputError, match=r"one row per sample \(8 rows\)"):
        MaximumLikelihood().loss(model, x, context=context[:3])


# -- labelled data --------------------------------------------------------------------------------


def test_8gaussians_labels_are_the_component_of_each_point() -> None:
    x, labels = sample_toy("8gaussians", 4000, seed=2, labels=True, dtype=D)
    assert labels.dtype == torch.int64 and labels.shape == (4000,)
    assert torch.equal(x, sample_toy("8gaussians", 4000, seed=2, dtype=D))  # same points
    angles = torch.arange(8, dtype=D) * (torch.pi / 4)
    centres = 4.0 / 2**0.5 * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    nearest = torch.cdist(x, centres).argmin(dim=1)
    assert float((nearest == labels).double().mean()) > 0.99  # components barely overlap
    assert labels.bincount(minlength=8).min() > 400


@pytest.mark.parametrize("name", sorted(TOY_CLASSES))
def test_toy_labels_are_class_indices_and_leave_the_points_unchanged(name: str) -> None:
    x, labels = sample_toy(name, 500, seed=1, labels=True)
    assert torch.equal(x, sample_toy(name, 500, seed=1))
    assert labels.min() >= 0 and labels.max() < TOY_CLASSES[name]
    assert len(labels.unique()) == TOY_CLASSES[name]


def test_an_unlabelled_toy_density_refuses_labels() -> None:
    with pytest.raises(ValueError, match="'swissroll' has no class labels"):
        sample_toy("swissroll", 10, labels=True)
    with pytest.raises(InvalidInputError, match="'swissroll' has no class labels"):
        load_dataset("swissroll", labels=True)


def test_load_dataset_gives_toy_labels_for_each_split() -> None:
    splits = load_dataset("8gaussians", n_train=50, n_val=20, n_test=30, labels=True)
    plain = load_dataset("8gaussians", n_train=50, n_val=20, n_test=30)
    assert torch.equal(splits.train, plain.train) and plain.train_labels is None
    assert splits.n_classes == 8
    assert [len(s) for s in (splits.train_labels, splits.val_labels, splits.test_labels)] == [
        50,
        20,
        30,
    ]
    _, labels = sample_toy("8gaussians", 100, seed=0, labels=True)
    assert torch.equal(splits.test_labels, labels[70:])


def test_digits_labels_belong_to_their_images() -> None:
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits

    splits = load_dataset("digits", labels=True)
    bunch = load_digits()
    pixels = torch.from_numpy(bunch.data).to(torch.float64)
    assert splits.n_classes == 10 and set(splits.train_labels.tolist()) == set(range(10))
    total = sum(len(s) for s in (splits.train_labels, splits.val_labels, splits.test_labels))
    assert total == len(pixels)
    for i in range(25):  # each training image's label is the label of that image
        rows = (pixels == splits.train_levels[i].to(torch.float64)).all(dim=1).nonzero()
        assert int(splits.train_labels[i]) in set(bunch.target[rows.flatten().numpy()].tolist())


def test_one_hot_makes_a_context_and_checks_its_labels() -> None:
    context = one_hot(torch.tensor([2, 0]), 3, dtype=D)
    assert torch.equal(context, torch.tensor([[0, 0, 1], [1, 0, 0]], dtype=D))
    with pytest.raises(InvalidInputError, match=r"labels must lie in \[0, 3\)"):
        one_hot(torch.tensor([3]), 3)
    with pytest.raises(InvalidInputError, match="integer class indices"):
        one_hot(torch.tensor([1.0]), 3)
    with pytest.raises(InvalidInputError, match="n_classes must be a positive integer"):
        one_hot(torch.tensor([0]), 0)
