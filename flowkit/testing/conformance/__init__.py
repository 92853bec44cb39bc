"""Conformance checks: the contract every plugin of a kind must meet.

Plugin authors call these on a component given by registered name, by class
or by instance; the built-ins are held to exactly the same checks. Each check
raises :class:`ConformanceError` naming the property that broke, and returns
the list of properties it verified.

Example:
    >>> from flowkit.testing.conformance import check_integrator
    >>> check_integrator("rk4")  # doctest: +ELLIPSIS
    ['contract', 'accuracy', 'backward in time', 'tuple state', 'differentiable', ...]

One module per checker: :mod:`.integrator`, :mod:`.trace_estimator`,
:mod:`.gradient_strategy`, :mod:`.vector_field`; what they share (the error,
building the component under test) is :mod:`.common`. The public names are
re-exported here, where plugin authors import them.
"""

from __future__ import annotations

from flowkit.testing.conformance.common import ConformanceError
from flowkit.testing.conformance.common import ConformanceTarget as ConformanceTarget
from flowkit.testing.conformance.gradient_strategy import (
    check_gradient_strategy,
    expm_frechet_adjoint,
)
from flowkit.testing.conformance.integrator import check_integrator
from flowkit.testing.conformance.trace_estimator import check_trace_estimator
from flowkit.testing.conformance.vector_field import check_vector_field
from flowkit.testing.tolerances import accuracy_options as accuracy_options  # used to be here

__all__ = [
    "ConformanceError",
    "check_integrator",
    "check_trace_estimator",
    "check_gradient_strategy",
    "check_vector_field",
    "expm_frechet_adjoint",
]
