"""The ``accuracy`` suite: how accurate are log-densities and gradients, at what cost?

Work: a CNF on the affine field ``f(t, x) = A x + b`` (the registry's
``linear`` field, float64, d = 4) whose flow is known in closed form. With
base ``N(0, I)`` at ``t0 = 0`` and data at ``t1 = 1``, the inverse flow is
``x0 = E [x; 1]`` with ``E`` the top rows of ``expm([[-A, -b], [0, 0]])``, and

    log p(x) = log N(x0; 0, I) - tr(A).

The reference gradient of ``mean log p`` with respect to ``A`` and ``b`` is
that of this expression (autograd through ``torch.linalg.matrix_exp``).
Measured per combination and tolerance (or step count): the largest
log-density error, the relative gradient error, the time of ``log_prob`` with
its backward pass (after one unmeasured warm-up), and function evaluations.
Stochastic traces' errors include their variance (one probe set per solve).

Step control: every native adaptive method (an
:class:`~flowkit.rk.AdaptiveRungeKutta`) runs with its default controller
(the integral controller, as torchdiffeq) and again with Hairer's PI
controller (``controller_beta=0.04``), labelled ``pi``, at each tolerance
(not in ``--quick`` runs), so that errors against evaluations of the two can
be read side by side.
"""

from __future__ import annotations

import itertools
import math
from typing import ClassVar

import torch
from torch import Tensor

from flowkit.bench.selection import select_combinations
from flowkit.bench.subjects import integrator_options
from flowkit.bench.suites.base import Plan, PlanContext, Suite
from flowkit.bench.suites.common import combination_params, seed_everything
from flowkit.bench.tasks import Metric, Task
from flowkit.bench.timing import stopwatch
from flowkit.registry import get_registry
from flowkit.rk import AdaptiveRungeKutta
from flowkit.rk.adaptive import PI_CONTROLLER_BETA
from flowkit.testing.cnf_problems import affine_log_prob

__all__ = ["AccuracySuite", "closed_form_log_prob"]

PI_CONTROLLER = {"controller_beta": PI_CONTROLLER_BETA}
"""Hairer's PI step control, run beside the default integral controller."""

CLOSED_FORM_FIELDS = ("linear",)
"""Fields whose CNF log-density is known in closed form (see :func:`closed_form_log_prob`)."""


def closed_form_log_prob(matrix: Tensor, bias: Tensor, x: Tensor) -> Tensor:
    """``log p(x)`` of the CNF with field ``A x + b`` on ``[0, 1]`` and base ``N(0, I)``.

    The affine closed form of :func:`flowkit.testing.cnf_problems.affine_log_prob`
    (its one home), in the argument order of this suite.

    Arguments:
        matrix: ``A``, shape ``(d, d)``.
        bias: ``b``, shape ``(d,)``.
        x: data points at ``t1 = 1``, shape ``(batch, d)``.

    Returns:
        ``log N(x0; 0, I) - tr(A)`` per point, differentiable in ``A`` and ``b``.
    """
    return affine_log_prob(x, matrix, bias)


class AccuracySuite(Suite):
    """Errors against closed forms, per combination (see the module docstring)."""

    name: ClassVar[str] = "accuracy"
    question: ClassVar[str] = (
        "How far are each combination's log-densities and parameter gradients from the closed "
        "form of an affine CNF, and what does that accuracy cost in time and evaluations?"
    )
    metrics: ClassVar[tuple[Metric, ...]] = (
        Metric("logp_error", "", "lower", "max |log p error|"),
        Metric("grad_error", "", "lower", "rel. grad error"),
        Metric("time", "s", "lower", "log_prob + backward"),
        Metric("nfe", "", None, "nfe fwd"),
        Metric("nfe_backward", "", None, "nfe bwd"),
    )

    def plan(self, ctx: PlanContext) -> Plan:
        """Every compatible combination on a closed-form field, at two accuracies."""
        registry = ctx.registry
        picked = select_combinations(
            registry,
            ctx.selection,
            {
                "vector_field": ("linear",),
                "integrator": ("dopri5", "tsit5", "rk4"),
                "trace_estimator": ("exact", "hutchinson", "analytic"),
                "gradient_strategy": ("backprop", "adjoint"),
            },
            restrict={"vector_field": CLOSED_FORM_FIELDS},
        )
        plan = Plan(excluded=list(picked.excluded))
        tolerances = (1e-4,) if ctx.quick else (1e-3, 1e-5, 1e-7)
        steps_list = (8,) if ctx.quick else (4, 32)
        for combo in picked.combinations:
            adaptive = bool(combo.integrator.capabilities.get("adaptive"))
            factory = combo.integrator.factory
            controllers: list[tuple[str, dict]] = [("", {})]
            native = isinstance(factory, type) and issubclass(factory, AdaptiveRungeKutta)
            if native and not ctx.quick:  # quick smoke runs: the default controller only
                controllers.append((", pi", PI_CONTROLLER))
            settings = (
                [(tol, 0) for tol in tolerances] if adaptive else [(0.0, s) for s in steps_list]
            )
            for (tol, steps), (suffix, control) in itertools.product(
                settings, controllers if adaptive else controllers[:1]
            ):
                acc = f"tol {tol:g}{suffix}" if adaptive else f"{steps} steps"
                params = {
                    **combination_params(combo),
                    "rtol": tol,
                    "atol": tol,
                    "steps": steps,
                    "control": control,
                    "dim": 2 if ctx.quick else 4,
                    "batch": 32 if ctx.quick else 128,
                    "device": ctx.device,
                    "label": f"{combo.id} ({acc})",
                }
                key = f"accuracy/{combo.id}/{acc.replace(' ', '').replace(',', '-')}"
                plan.tasks.append(Task(self.name, key, "flowkit", params, warmup=1))
        return plan

    def run(self, task: Task, seed: int) -> dict[str, float | list[list[float]]]:
        """One solve with gradients, compared with the closed form in float64."""
        from flowkit.cnf import CNF

        p = task.params
        seed_everything(seed)
        device, dtype, d = p["device"], torch.float64, p["dim"]
        gen = torch.Generator().manual_seed(seed)
        matrix = (0.6 * torch.randn(d, d, generator=gen, dtype=dtype)).to(device)
        bias = (0.3 * torch.randn(d, generator=gen, dtype=dtype)).to(device)
        x = torch.randn(p["batch"], d, generator=gen, dtype=dtype).to(device)
        registry = get_registry()  # the task's entry point, in its own process
        field = registry.create(
            "vector_field", p["field"], dim=d, matrix=matrix.clone(), bias=bias.clone()
        ).to(device=device, dtype=dtype)
        options = integrator_options(
            registry, p["integrator"], rtol=p["rtol"], atol=p["atol"], steps=p["steps"]
        ) | dict(p.get("control", {}))
        cnf = CNF(
            field,
            integrator=p["integrator"],
            trace=p["trace"],
            gradient=p["gradient"],
            dim=d,
            integrator_options=options,
            registry=registry,
        )
        with stopwatch(x) as clock:
            logp = cnf.log_prob(x)
            (-logp.mean()).backward()
        stats = cnf.last_stats
        a_ref = matrix.clone().requires_grad_(True)
        b_ref = bias.clone().requires_grad_(True)
        ref = closed_form_log_prob(a_ref, b_ref, x)
        (-ref.mean()).backward()
        grads = [(field.matrix.grad, a_ref.grad), (field.bias.grad, b_ref.grad)]
        grad_error = max(
            float((g - r).norm() / r.norm().clamp_min(1e-300)) if g is not None else math.inf
            for g, r in grads
        )
        return {
            "logp_error": float((logp.detach() - ref.detach()).abs().max()),
            "grad_error": grad_error,
            "time": clock.seconds,
            "nfe": stats.nfe,
            "nfe_backward": stats.backward_nfe,
        }
