"""A plugin installed with pip appears in ``flowkit list`` with no change to flowkit.

The example plugin under ``plugins/example_plugin`` is a separate distribution
with its own ``pyproject.toml``; this test installs it with pip into a
temporary directory and runs flowkit in a fresh interpreter that sees it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "plugins" / "example_plugin"


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    # Build from a copy: building in place leaves flowkit_example_plugin.egg-info in
    # plugins/example_plugin, which is on sys.path while its own tests run, so every
    # later registry of the test session would find the example plugin.
    source = build / "example_plugin"
    shutil.copytree(
        EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        cwd=build,
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(target), env.get("PYTHONPATH", "")])
    env.pop("FLOWKIT_DISABLE_PLUGIN_AUTOLOAD", None)
    return env


def test_pip_installed_plugin_is_listed(installed_example: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flowkit", "list", "--json"],
        env=installed_example,
        capture_output=True,
        text=True,
        check=True,
    )
    listing = json.loads(result.stdout)
    assert listing["broken_plugins"] == []
    (row,) = [r for r in listing["components"] if r["name"] == "ssprk3"]
    assert row["kind"] == "integrator"
    assert row["plugin"] == "example_ssprk3"
    assert row["distribution"] == "flowkit-example-plugin"
    assert row["aliases"] == ["shu_osher"]
    assert row["capabilities"]["order"] == 3


def test_pip_installed_plugin_builds_by_name_and_solves(installed_example) -> None:
    code = (
        "import torch, flowkit\n"
        "A = torch.tensor([[0., 1.], [-1., 0.]], dtype=torch.float64)\n"
        "y0 = torch.tensor([1., 0.], dtype=torch.float64)\n"
        "solver = flowkit.get_registry().create('integrator', 'shu_osher', n_steps=200)\n"
        "t = torch.tensor([0., 1.], dtype=torch.float64)\n"
        "y1 = solver.integrate(lambda t, y: A @ y, y0, t).final\n"
        "err = (y1 - torch.linalg.matrix_exp(A) @ y0).abs().max().item()\n"
        "assert err < 1e-6, err\n"
        "print('ok', err)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=installed_example, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")
