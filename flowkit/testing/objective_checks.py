"""Conformance check for objectives: the contract every objective plugin must meet.

:func:`check_objective` evaluates an objective's loss on a model and a batch
and checks the properties of :class:`flowkit.interfaces.Objective`'s
contract, raising :class:`~flowkit.testing.conformance.ConformanceError`
naming the first property that broke; it returns the properties it verified.

Example:
    >>> import torch, flowkit
    >>> from flowkit.testing.objective_checks import check_objective
    >>> model = flowkit.CNF("mlp", "rk4", "exact", "backprop", dim=2,
    ...                     field_options={"hidden": (8,)},
    ...                     integrator_options={"n_steps": 2})
    >>> check_objective("flow_matching", model, torch.randn(16, 2))[-2:]
    ['gradients reach the field', 'float metrics']
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from flowkit.errors import InvalidInputError
from flowkit.interfaces import Objective
from flowkit.registry import Registry, get_registry
from flowkit.testing.conformance import ConformanceError

__all__ = ["check_objective"]


def _resolve(objective: str | Objective, registry: Registry | None) -> Objective:
    if isinstance(objective, str):
        return (registry or get_registry()).create("objective", objective)  # type: ignore[no-any-return]
    if not isinstance(objective, Objective):
        raise TypeError(
            f"check_objective takes an Objective instance or a registered objective name, "
            f"got {type(objective).__name__}; build the objective with its options first."
        )
    return objective


def check_objective(
    objective: str | Objective,
    model: nn.Module,
    batch: Tensor,
    *,
    context: Tensor | None = None,
    seed: int = 0,
    registry: Registry | None = None,
) -> list[str]:
    """Check that ``objective.loss(model, batch)`` meets the objective contract.

    Properties, in order:
        * ``contract``: ``loss`` returns a pair ``(loss, metrics)`` (an
          :class:`~flowkit.interfaces.ObjectiveResult`);
        * ``scalar loss``: the loss is a 0-d floating-point tensor;
        * ``finite loss``: it is finite;
        * ``differentiable``: it carries a graph (``requires_grad``);
        * ``gradients reach the field``: every parameter of ``model.field``
          that requires grad receives a finite gradient;
        * ``float metrics``: ``metrics`` is a dict of str to Python floats;
        * ``context``: an objective declaring ``accepts_context = False``
          raises :class:`~flowkit.errors.InvalidInputError` when given a
          context (checked with a zero context; skipped otherwise).

    Arguments:
        objective: an objective instance, or a registered name (built with
            default options).
        model: the model, a :class:`flowkit.CNF` for the built-ins.
        batch: a batch of data, shape ``(batch, dim)``.
        context: passed to ``loss`` (``None``: no context).
        seed: seeds the generator handed to ``loss``.
        registry: where to resolve a name (default: the global registry).

    Returns:
        The names of the properties verified.

    Raises:
        ConformanceError: naming the broken property.
        TypeError: if ``objective`` is neither an instance nor a name.
    """
    obj = _resolve(objective, registry)
    name = str(getattr(obj, "registry_name", type(obj).__name__))
    done: list[str] = []

    def fail(prop: str, detail: str) -> ConformanceError:
        return ConformanceError(f"objective {name!r}", prop, detail)

    generator = torch.Generator().manual_seed(seed)
    result: Any = obj.loss(model, batch, context=context, generator=generator)
    if not (isinstance(result, tuple) and len(result) == 2):
        raise fail(
            "contract",
            f"loss() returned {type(result).__name__}; it must return "
            "ObjectiveResult(loss, metrics)",
        )
    loss, metrics = result
    done.append("contract")

    if not isinstance(loss, Tensor) or loss.ndim != 0 or not loss.is_floating_point():
        got = (
            f"a {loss.dtype} tensor of shape {tuple(loss.shape)}"
            if isinstance(loss, Tensor)
            else type(loss).__name__
        )
        raise fail("scalar loss", f"the loss must be a 0-d floating-point tensor, got {got}")
    done.append("scalar loss")

    if not bool(torch.isfinite(loss)):
        raise fail("finite loss", f"the loss is {loss.item()}")
    done.append("finite loss")

    if not loss.requires_grad:
        raise fail(
            "differentiable",
            "the loss carries no graph (requires_grad=False); do not detach it or compute "
            "it under torch.no_grad()",
        )
    done.append("differentiable")

    field = getattr(model, "field", model)
    named = [(n, p) for n, p in field.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
    unreached = [n for (n, _), g in zip(named, grads, strict=True) if g is None]
    if unreached:
        raise fail(
            "gradients reach the field",
            f"no gradient reaches the field's parameter(s) {', '.join(unreached)}",
        )
    nonfinite = [
        n for (n, _), g in zip(named, grads, strict=True) if not bool(torch.isfinite(g).all())
    ]
    if nonfinite:
        raise fail(
            "gradients reach the field",
            f"the gradient of parameter(s) {', '.join(nonfinite)} is NaN or Inf",
        )
    done.append("gradients reach the field")

    if not isinstance(metrics, dict):
        raise fail("float metrics", f"metrics must be a dict, got {type(metrics).__name__}")
    bad = {
        k: type(v).__name__
        for k, v in metrics.items()
        if not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, float)
    }
    if bad:
        raise fail(
            "float metrics",
            f"metrics must map names to Python floats (use float(t.detach())); got {bad}",
        )
    done.append("float metrics")

    if not getattr(obj, "accepts_context", False) and context is None:
        zeros = torch.zeros(batch.shape[0], 1, dtype=batch.dtype, device=batch.device)
        try:
            obj.loss(model, batch, context=zeros, generator=torch.Generator().manual_seed(seed))
        except InvalidInputError:
            pass
        else:
            raise fail(
                "context",
                "it declares accepts_context=False but accepted a context; raise "
                "flowkit.errors.InvalidInputError when a context is given",
            )
        done.append("context")
    return done
