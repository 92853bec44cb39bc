"""The vector-field checker: shapes, independent rows, divergence, gradients.

See :func:`check_vector_field`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from flowkit.kinds import capabilities_of
from flowkit.registry import Registry
from flowkit.testing.conformance.common import (
    ConformanceError,
    ConformanceTarget,
    build_target,
    max_error,
    target_label,
)
from flowkit.testing.tolerances import (
    roundoff,
)

__all__ = ["check_vector_field"]


def check_vector_field(
    field: ConformanceTarget,
    *,
    dim: int = 3,
    options: dict[str, Any] | None = None,
    registry: Registry | None = None,
) -> list[str]:
    """Check a vector field's contract.

    Properties: ``contract`` (output shape and dtype equal the input's, in
    float32 and float64), ``rows independent`` (the Jacobian across a batch is
    block diagonal), ``divergence`` (when declared, equals the autograd trace)
    and ``differentiable`` (gradients reach every parameter).

    Arguments:
        field: a registered name or class (built with ``dim=dim`` and
            ``options``), or an instance.
    """
    label = target_label(field)
    opts = dict(options or {})
    if isinstance(field, str | type):
        opts.setdefault("dim", dim)
    module: nn.Module = build_target("vector_field", field, opts, registry)
    checked = []
    t = torch.tensor(0.4, dtype=torch.float64)
    for dtype in (torch.float32, torch.float64):
        m = module.to(dtype)
        x = torch.randn(5, dim, dtype=dtype)
        out = m(t.to(dtype), x)
        if out.shape != x.shape or out.dtype != dtype:
            raise ConformanceError(
                label,
                "contract",
                f"output {tuple(out.shape)} {out.dtype} for input {tuple(x.shape)} {dtype}",
            )
    module = module.to(torch.float64)
    checked.append("contract")

    x = torch.randn(4, dim, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda z: module(t, z), x)  # (4, d, 4, d)
    for b in range(4):
        for c in range(4):
            if b != c and float(jac[b, :, c, :].abs().max()) > 0:
                raise ConformanceError(
                    label, "rows independent", f"output row {b} depends on input row {c}"
                )
    checked.append("rows independent")

    if capabilities_of(module, "vector_field")["has_divergence"]:
        exact = torch.stack([torch.diagonal(jac[b, :, b, :]).sum() for b in range(4)])
        got = module.divergence(t, x)
        if max_error(got, exact) > roundoff(torch.float64).atol:
            raise ConformanceError(label, "divergence", "closed-form divergence is wrong")
        checked.append("divergence")

    params = [p for p in module.parameters() if p.requires_grad]
    if params:
        grads = torch.autograd.grad(module(t, x).pow(2).sum(), params, allow_unused=True)
        missing = [i for i, g in enumerate(grads) if g is None]
        if missing:
            raise ConformanceError(label, "differentiable", f"parameters {missing} get no gradient")
        checked.append("differentiable")
    return checked
