"""The built wheel ships every module, plugin and data file of the source tree.

An editable install hides a package missing from the wheel (the way
``flowkit/rk`` once was); this test builds the wheel and compares its contents
with the source tree. ``.ci/run`` also installs that wheel in a fresh
environment and runs flowkit from it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _source_files() -> set[str]:
    """The files the wheel must contain, as paths inside the installed package."""
    expected = {"flowkit/py.typed"}
    for path in (ROOT / "flowkit").rglob("*"):
        if path.suffix in {".py", ".pt", ".json"} and "__pycache__" not in path.parts:
            expected.add(path.relative_to(ROOT).as_posix())
    for path in (ROOT / "plugins").rglob("*.py"):
        relative = path.relative_to(ROOT / "plugins")
        if relative.parts[0] in {"example_plugin"} or "__pycache__" in relative.parts:
            continue
        expected.add(f"flowkit/plugins/{relative.as_posix()}")
    return expected


@pytest.mark.slow
def test_wheel_contains_every_source_file(tmp_path: Path) -> None:
    # Build from a fresh copy: setuptools reuses a stale build/ folder in the tree.
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".venv*")
    for name in ("flowkit", "plugins"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "setup.py", "README.md"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, source / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("flowkit-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(_source_files() - shipped)
    assert not missing, f"files missing from the wheel: {missing}"
    assert not any("example_plugin" in name for name in shipped), "the example plugin is separate"
    entry_points = next(n for n in shipped if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[flowkit]" in text and "flowkit.plugins.native_integrators" in text
