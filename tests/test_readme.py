"""The README's examples run, and its claims hold."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import flowkit

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_python_blocks_run(index: int) -> None:
    exec(compile(BLOCKS[index], f"README.md block {index}", "exec"), {"__name__": "readme"})


def test_incompatible_example_message() -> None:
    with pytest.raises(flowkit.IncompatibleComponentsError) as info:
        flowkit.CNF("mlp", "dopri5", "exact", "reversible", dim=2)
    message = str(info.value)
    assert (
        "gradient strategy 'reversible' requires an integrator with reversible=True; "
        "integrator 'dopri5' declares reversible=False"
    ) in message
