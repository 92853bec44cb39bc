"""Vector-field plugins: the field contract, closed-form divergences, option errors."""

from __future__ import annotations

import pytest
import torch
from flowkit.plugins.vector_fields import ACTIVATIONS, LinearField, MLPField
from hypothesis import given
from hypothesis import strategies as st
from registry_helpers import suite_registry

from flowkit.interfaces import VectorField
from flowkit.testing import strategies as fst

REGISTRY = suite_registry()
FIELDS = REGISTRY.names("vector_field")
SMALL = {"mlp": {"hidden": (8, 8)}, "concatsquash": {"hidden": (8,)}, "hypernet": {"width": 4}}


def make(name: str, dim: int, **options: object) -> torch.nn.Module:
    opts = {**SMALL.get(name, {}), **options}
    accepted = REGISTRY.get("vector_field", name).options() or []
    return REGISTRY.create(
        "vector_field", name, dim=dim, **{k: v for k, v in opts.items() if k in accepted}
    )


def per_sample_jacobian(field: torch.nn.Module, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``J[b] = d f(t, x)[b] / d x[b]`` from the full autograd Jacobian of the batch."""
    full = torch.autograd.functional.jacobian(lambda y: field(t, y), x)  # (B, d, B, d)
    return torch.stack([full[b, :, b, :] for b in range(x.shape[0])])


@pytest.mark.parametrize("name", FIELDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_and_dtype(name: str, dtype: torch.dtype) -> None:
    field = make(name, 3).to(dtype)
    x = torch.randn(5, 3, dtype=dtype)
    out = field(torch.tensor(0.3, dtype=dtype), x)
    assert out.shape == x.shape and out.dtype == dtype
    assert isinstance(field, VectorField)


@pytest.mark.parametrize("name", FIELDS)
@given(dim=fst.dims(), batch=st.integers(2, 4), seed=fst.seeds())
def test_rows_are_independent(name: str, dim: int, batch: int, seed: int) -> None:
    torch.manual_seed(seed)
    field = make(name, dim)
    x = torch.randn(batch, dim)
    full = torch.autograd.functional.jacobian(lambda y: field(torch.tensor(0.7), y), x)
    for b in range(batch):
        for c in range(batch):
            if b != c:
                assert torch.count_nonzero(full[b, :, c, :]) == 0, (b, c)


DIVERGENCE_CASES = [
    (name, options)
    for name in FIELDS
    if REGISTRY.get("vector_field", name).capabilities["has_divergence"]
    for options in (
        [{}, {"time_dependent": True}]
        if "time_dependent" in (REGISTRY.get("vector_field", name).options() or [])
        else [{}]
    )
]


@pytest.mark.parametrize("name, options", DIVERGENCE_CASES, ids=str)
@given(dim=fst.dims(), seed=fst.seeds(), t=st.floats(-1.0, 1.0))
def test_closed_form_divergence(name: str, options: dict, dim: int, seed: int, t: float) -> None:
    torch.manual_seed(seed)
    field = make(name, dim, **options)
    x = torch.randn(4, dim)
    tt = torch.tensor(t)
    expected = torch.diagonal(per_sample_jacobian(field, tt, x), dim1=1, dim2=2).sum(-1)
    torch.testing.assert_close(field.divergence(tt, x), expected, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("dim, hidden", [(3, (8, 8, 8)), (3, (8,)), (6, (4,)), (6, (4, 5, 3))])
def test_mlp_divergence_every_activation_and_branch(
    activation: str, dim: int, hidden: tuple[int, ...]
) -> None:
    """Both the forward-accumulation (dim <= width) and the cyclic (dim > width) branch."""
    torch.manual_seed(0)
    field = MLPField(dim=dim, hidden=hidden, activation=activation)
    x, t = torch.randn(5, dim), torch.tensor(0.3)
    expected = torch.diagonal(per_sample_jacobian(field, t, x), dim1=1, dim2=2).sum(-1)
    value, div = field.value_and_divergence(t, x)
    torch.testing.assert_close(div, expected, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(value, field(t, x), atol=0, rtol=0)
    field.divergence_chunk_elements = 1  # one row per chunk: the chunked path
    value, div = field.value_and_divergence(t, x)
    torch.testing.assert_close(div, expected, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(value, field(t, x), atol=1e-15, rtol=0)


def test_linear_field_values() -> None:
    a0 = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    a1 = torch.tensor([[0.5, 0.0], [0.0, -1.0]])
    b0, b1 = torch.tensor([1.0, -1.0]), torch.tensor([2.0, 0.0])
    field = LinearField(
        dim=2, matrix=a0, bias=b0, time_dependent=True, time_matrix=a1, time_bias=b1
    )
    x = torch.tensor([[1.0, 1.0]])
    t = torch.tensor(2.0)
    expected = x @ (a0 + 2 * a1).T + b0 + 2 * b1
    torch.testing.assert_close(field(t, x), expected, atol=0, rtol=0)
    torch.testing.assert_close(field.divergence(t, x), torch.tensor([5.0 + 2 * -0.5]))


@pytest.mark.parametrize(
    "name", [n for n in FIELDS if "activation" in (REGISTRY.get("vector_field", n).options() or [])]
)
def test_activation_by_name(name: str) -> None:
    for act in ACTIVATIONS:
        field = make(name, 2, activation=act)
        assert field(torch.tensor(0.0), torch.randn(3, 2)).shape == (3, 2)
    with pytest.raises(ValueError, match=r"Unknown activation 'tanhh'.*tanh"):
        make(name, 2, activation="tanhh")


@pytest.mark.parametrize("name", FIELDS)
def test_unknown_option_is_type_error(name: str) -> None:
    with pytest.raises(TypeError, match="Unknown option"):
        REGISTRY.create("vector_field", name, dim=2, bogus=1)


@pytest.mark.parametrize("name", FIELDS)
@pytest.mark.parametrize("dim", [0, -1, 1.5, True])
def test_bad_dim(name: str, dim: object) -> None:
    with pytest.raises(ValueError, match="dim must be a positive integer"):
        REGISTRY.create("vector_field", name, dim=dim)


@pytest.mark.parametrize("hidden", [(), (0,), (8, -1), "abc"])
def test_bad_widths(hidden: object) -> None:
    with pytest.raises(ValueError, match="hidden"):
        REGISTRY.create("vector_field", "mlp", dim=2, hidden=hidden)


def test_linear_field_errors() -> None:
    with pytest.raises(ValueError, match=r"matrix must have shape \(2, 2\)"):
        LinearField(dim=2, matrix=torch.eye(3))
    with pytest.raises(ValueError, match="time_dependent=True"):
        LinearField(dim=2, time_matrix=torch.eye(2))
