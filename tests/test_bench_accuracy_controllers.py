"""The accuracy suite compares step control: native adaptive methods run with their default
(integral) controller and with Hairer's PI one, both checked against the closed form."""

from __future__ import annotations

from registry_helpers import suite_registry

from flowkit.bench.selection import Selection
from flowkit.bench.suites.accuracy import PI_CONTROLLER, AccuracySuite
from flowkit.bench.suites.base import PlanContext


def _tasks() -> dict[str, object]:
    ctx = PlanContext(
        suite_registry(),
        Selection(integrators=("dopri5", "rk4"), traces=("exact",), gradients=("backprop",)),
    )
    return {task.key: task for task in AccuracySuite().plan(ctx).tasks}


def test_adaptive_native_methods_are_planned_with_both_controllers() -> None:
    tasks = _tasks()
    combo = "linear-dopri5-exact-backprop"
    for tol in ("0.001", "1e-05", "1e-07"):
        default = tasks[f"accuracy/{combo}/tol{tol}"]
        pi = tasks[f"accuracy/{combo}/tol{tol}-pi"]
        assert default.params["control"] == {}
        assert pi.params["control"] == PI_CONTROLLER
        assert pi.params["label"].endswith("pi)")
    fixed = [k for k in tasks if "-rk4-" in k]
    assert fixed and not any(k.endswith("-pi") for k in fixed)


def test_both_controllers_converge_to_the_closed_form_as_the_tolerance_tightens() -> None:
    """Errors against the closed form fall by at least 10x from tolerance 1e-3 to 1e-7."""
    tasks = _tasks()
    suite = AccuracySuite()
    for suffix in ("", "-pi"):
        loose, tight = (
            suite.run(tasks[f"accuracy/linear-dopri5-exact-backprop/tol{tol}{suffix}"], seed=0)  # type: ignore[arg-type]
            for tol in ("0.001", "1e-07")
        )
        assert tight["logp_error"] * 10 < loose["logp_error"]
        assert tight["grad_error"] * 10 < loose["grad_error"]
        assert tight["nfe"] > loose["nfe"]
