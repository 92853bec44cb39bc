"""The vector-field checker: shapes, independent rows, divergence, gradients.

See :func:`check_vector_field`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

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
    context_dim: int | None = None,
) -> list[str]:
    """Check a vector field's contract.

    Properties: ``contract`` (output shape and dtype equal the input's, in
    float32 and float64), ``rows independent`` (the Jacobian across a batch is
    block diagonal), ``divergence`` (when declared, equals the autograd trace)
    and ``differentiable`` (gradients reach every parameter). A conditional
    field is called as ``forward(t, x, context=...)`` throughout, and also
    checked for ``rows independent given context`` (row ``b`` of the output
    depends on row ``b`` of the context only) and ``context used`` (the
    output depends on the context).

    Arguments:
        field: a registered name or class (built with ``dim=dim`` and
            ``options``), or an instance.
        context_dim: the width of the field's context (default: the field's
            ``context_dim`` attribute, else 0, unconditional).
    """
    label = target_label(field)
    opts = dict(options or {})
    if isinstance(field, str | type):
        opts.setdefault("dim", dim)
    module: nn.Module = build_target("vector_field", field, opts, registry)
    if context_dim is None:
        context_dim = getattr(module, "context_dim", 0)
        context_dim = context_dim if isinstance(context_dim, int) else 0
    conditional = context_dim > 0

    def call(m: nn.Module, t: Tensor, x: Tensor, context: Tensor | None) -> Tensor:
        return m(t, x) if context is None else m(t, x, context=context)  # type: ignore[no-any-return]

    def contexts(batch: int, dtype: torch.dtype) -> Tensor | None:
        return torch.randn(batch, context_dim, dtype=dtype) if conditional else None

    checked = []
    t = torch.tensor(0.4, dtype=torch.float64)
    for dtype in (torch.float32, torch.float64):
        m = module.to(dtype)
        x = torch.randn(5, dim, dtype=dtype)
        out = call(m, t.to(dtype), x, contexts(5, dtype))
        if out.shape != x.shape or out.dtype != dtype:
            raise ConformanceError(
                label,
                "contract",
                f"output {tuple(out.shape)} {out.dtype} for input {tuple(x.shape)} {dtype}",
            )
    module = module.to(torch.float64)
    checked.append("contract")

    x = torch.randn(4, dim, dtype=torch.float64)
    context = contexts(4, torch.float64)
    jac = torch.autograd.functional.jacobian(lambda z: call(module, t, z, context), x)
    for b in range(4):
        for c in range(4):
            if b != c and float(jac[b, :, c, :].abs().max()) > 0:
                raise ConformanceError(
                    label, "rows independent", f"output row {b} depends on input row {c}"
                )
    checked.append("rows independent")

    if context is not None:
        jac_c = torch.autograd.functional.jacobian(lambda c: call(module, t, x, c), context)
        for b in range(4):
            for c in range(4):
                if b != c and float(jac_c[b, :, c, :].abs().max()) > 0:
                    raise ConformanceError(
                        label,
                        "rows independent given context",
                        f"output row {b} depends on context row {c}",
                    )
        checked.append("rows independent given context")
        if not any(float(jac_c[b, :, b, :].abs().max()) > 0 for b in range(4)):
            raise ConformanceError(label, "context used", "the output does not depend on it")
        checked.append("context used")

    if capabilities_of(module, "vector_field")["has_divergence"]:
        exact = torch.stack([torch.diagonal(jac[b, :, b, :]).sum() for b in range(4)])
        got = (
            module.divergence(t, x) if context is None else module.divergence(t, x, context=context)
        )
        if max_error(got, exact) > roundoff(torch.float64).atol:
            raise ConformanceError(label, "divergence", "closed-form divergence is wrong")
        checked.append("divergence")

    params = [p for p in module.parameters() if p.requires_grad]
    if params:
        value = call(module, t, x, context).pow(2).sum()
        grads = torch.autograd.grad(value, params, allow_unused=True)
        missing = [i for i, g in enumerate(grads) if g is None]
        if missing:
            raise ConformanceError(label, "differentiable", f"parameters {missing} get no gradient")
        checked.append("differentiable")
    return checked
