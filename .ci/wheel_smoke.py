"""Smoke check of an installed (non-editable) flowkit wheel.

Run by ``.ci/run`` from outside the source tree, in a virtual environment that
has only the built wheel installed. It proves that the wheel ships every
package and plugin: flowkit is imported from site-packages, every plugin of the
``flowkit`` distribution loads, and a small CNF computes ``log_prob`` and its
gradient with every built-in integrator name.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

import flowkit

location = Path(flowkit.__file__).resolve()
if "site-packages" not in location.parts:
    sys.exit(f"flowkit was imported from {location}, not from an installed wheel")

registry = flowkit.get_registry()
if registry.broken:
    sys.exit(f"broken plugins in the installed wheel: {registry.broken}")

names = [spec.name for spec in registry.specs("integrator") if spec.distribution == "flowkit"]
if len(names) < 10:
    sys.exit(f"only {len(names)} built-in integrators registered: {names}")

torch.manual_seed(0)
x = torch.randn(4, 2)
for name in names:
    model = flowkit.CNF("mlp", name, "exact", "backprop", dim=2)
    log_prob = model.log_prob(x)
    log_prob.sum().backward()
    grads = [p.grad for p in model.parameters()]
    if log_prob.shape != (4,) or not torch.isfinite(log_prob).all():
        sys.exit(f"{name}: log_prob {log_prob}")
    if any(g is None or not torch.isfinite(g).all() for g in grads):
        sys.exit(f"{name}: parameter gradients missing or not finite")
    print(f"ok  {name:28s} log_prob mean {log_prob.mean().item():+.4f}")
print(f"wheel at {location.parent}: {len(names)} built-in integrators work")
