"""The examples in ``examples/`` work as documented, and every doctest passes.

Each example is loaded as the plugin module it is, checked with flowkit's
public conformance kit, and compared with the closed form; the hand-written
loop must give the same steps as the tableau of the packaged example plugin.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import pkgutil
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

import flowkit
from flowkit.interfaces import FixedStepIntegrator, SupportsCheckpointing
from flowkit.registry import build_registry
from flowkit.testing.conformance import check_integrator

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def _load(path: Path) -> ModuleType:
    name = f"flowkit_examples_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tableau_example() -> ModuleType:
    return _load(EXAMPLES / "tableau_method.py")


@pytest.fixture(scope="module")
def hand_written_example() -> ModuleType:
    return _load(EXAMPLES / "hand_written_integrator.py")


@pytest.fixture(scope="module")
def packaged_example() -> ModuleType:
    sys.path.insert(0, str(ROOT / "plugins" / "example_plugin"))
    try:
        return importlib.import_module("flowkit_example_plugin")
    finally:
        sys.path.pop(0)


def _rotation() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    a = torch.tensor([[0.0, 1.0], [-1.0, -0.1]], dtype=torch.float64)
    y0 = torch.tensor([[1.0, 0.5], [-0.3, 0.2]], dtype=torch.float64)
    t = torch.tensor([0.0, 0.3, 1.0], dtype=torch.float64)
    return a, y0, t


def test_tableau_example_is_short_and_registers(tableau_example: ModuleType) -> None:
    code = [
        line
        for line in (EXAMPLES / "tableau_method.py").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "    ", '"""', "from", "import", "__all__"))
    ]
    assert len(code) <= 15, code  # the tableau and the registration, not a loop
    registry = build_registry(autoload=False, plugins=[("kutta3", tableau_example)])
    solver = registry.create("integrator", "kutta3", n_steps=64)
    assert isinstance(solver, FixedStepIntegrator) and isinstance(solver, SupportsCheckpointing)
    a, y0, t = _rotation()
    ys = solver.integrate(lambda s, y: y @ a.T, y0, t).ys
    exact = torch.stack([y0 @ torch.linalg.matrix_exp(a * float(s)).T for s in t])
    torch.testing.assert_close(ys, exact, rtol=1e-6, atol=1e-6)


def test_tableau_example_passes_the_conformance_kit(tableau_example: ModuleType) -> None:
    checked = check_integrator(tableau_example.Kutta3, target=1e-6)
    assert {"accuracy", "convergence order", "gradient paths"} <= set(checked)


def test_tableau_example_gets_checkpointing_for_free(tableau_example: ModuleType) -> None:
    a, y0, t = _rotation()
    a.requires_grad_(True)
    grads = {}
    for strategy in ("checkpoint", "backprop"):
        solution = flowkit.solve.solve(
            lambda s, y: y @ a.T,
            y0,
            t,
            integrator=tableau_example.Kutta3(n_steps=20),
            gradient=strategy,
            params=[a],
        )
        (grads[strategy],) = torch.autograd.grad(solution.final.square().sum(), (a,))
    torch.testing.assert_close(grads["checkpoint"], grads["backprop"], rtol=1e-12, atol=1e-12)


def test_hand_written_example_passes_the_conformance_kit(hand_written_example: ModuleType) -> None:
    checked = check_integrator(hand_written_example.HandWrittenSSPRK3, target=1e-6)
    assert {"accuracy", "convergence order"} <= set(checked)


def test_hand_written_loop_takes_the_steps_of_the_tableau(
    hand_written_example: ModuleType, packaged_example: ModuleType
) -> None:
    """Same method, same ``n_steps`` meaning (whole span): equal to round-off."""
    a, y0, t = _rotation()
    for options in ({"n_steps": 10}, {"step_size": 0.25}):
        by_hand = hand_written_example.HandWrittenSSPRK3(**options).integrate(
            lambda s, y: y @ a.T, y0, t
        )
        tableau = packaged_example.SSPRK3(**options).integrate(lambda s, y: y @ a.T, y0, t)
        assert by_hand.stats.n_accepted == tableau.stats.n_accepted
        assert by_hand.stats.nfe == tableau.stats.nfe
        torch.testing.assert_close(by_hand.ys, tableau.ys, rtol=1e-13, atol=1e-13)


def test_hand_written_example_refuses_unsupported_options(
    hand_written_example: ModuleType,
) -> None:
    registry = build_registry(autoload=False, plugins=[("by_hand", hand_written_example)])
    with pytest.raises(TypeError, match="max_steps"):
        registry.create("integrator", "ssprk3_by_hand", max_steps=3)


def test_readme_points_to_the_short_example_first() -> None:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Writing a plugin") :]
    assert section.index("examples/tableau_method.py") < section.index(
        "examples/hand_written_integrator.py"
    )


def _modules() -> list[str]:
    import flowkit.plugins

    names = ["flowkit"]
    names += [m.name for m in pkgutil.walk_packages(flowkit.__path__, "flowkit.")]
    names += [m.name for m in pkgutil.walk_packages(flowkit.plugins.__path__, "flowkit.plugins.")]
    return sorted(set(names))


@pytest.mark.parametrize("name", _modules())
def test_doctests(name: str) -> None:
    """Every docstring example of flowkit runs and shows what it says."""
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in finder.find(module, name, globs=dict(vars(module))):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} doctest example(s) failed in {name}"
