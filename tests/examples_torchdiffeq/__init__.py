"""torchdiffeq's documented examples, re-implemented compactly, parametrised by the solver module.

Each module mirrors one script of torchdiffeq's ``examples/`` folder (same
model, data, loss and optimiser, smaller sizes so that a few iterations run in
a test) and takes the module that provides ``odeint``, ``odeint_adjoint`` and
``odeint_event``: ``torchdiffeq`` or ``flowkit``. A user switching from
torchdiffeq changes exactly that import, so the tests run each example under
both modules with the same seeds and compare the numbers.
"""

from examples_torchdiffeq.common import ExampleRun, SolverModule, solver_function

__all__ = ["ExampleRun", "SolverModule", "solver_function"]
