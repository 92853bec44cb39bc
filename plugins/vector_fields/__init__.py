"""Built-in vector fields: ``mlp``, ``concatsquash``, ``hypernet``, ``linear`` and
``probability_flow`` (a score network and an SDE, :mod:`flowkit.sde`).

Every field is an :class:`~flowkit.interfaces.VectorField` computing ``f(t, x)``
for a batch ``x`` of shape ``(batch, dim)`` with independent rows. Constructors
take the dimension ``dim`` and keyword-only options; activations are chosen by
name (see :data:`ACTIVATIONS`). Parameters are created in the default dtype;
move a field with ``.to(...)`` like any module.
"""

from __future__ import annotations

from flowkit.plugins.vector_fields.activations import (
    ACTIVATION_DERIVATIVES,
    ACTIVATIONS,
    make_activation,
)
from flowkit.plugins.vector_fields.affine_stack import (
    FUSED_ACTIVATIONS,
    affine_stack_divergence,
)
from flowkit.plugins.vector_fields.concatsquash import ConcatSquashField, ConcatSquashLinear
from flowkit.plugins.vector_fields.hypernet import HyperNetField
from flowkit.plugins.vector_fields.linear import LinearField
from flowkit.plugins.vector_fields.mlp import MLPField
from flowkit.plugins.vector_fields.probability_flow import ProbabilityFlowField

from flowkit.hookspecs import Register, hookimpl

__all__ = [
    "ACTIVATIONS",
    "ACTIVATION_DERIVATIVES",
    "FUSED_ACTIVATIONS",
    "ConcatSquashField",
    "ConcatSquashLinear",
    "HyperNetField",
    "LinearField",
    "MLPField",
    "ProbabilityFlowField",
    "affine_stack_divergence",
    "make_activation",
    "flowkit_register_vector_fields",
]


@hookimpl
def flowkit_register_vector_fields(register: Register) -> None:
    """Register the built-in vector fields."""
    register("mlp", MLPField)
    register("concatsquash", ConcatSquashField, aliases=("concat_squash",))
    register("hypernet", HyperNetField)
    register("linear", LinearField, aliases=("affine",))
    register("probability_flow", ProbabilityFlowField)
