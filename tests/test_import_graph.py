"""flowkit's modules import each other without a cycle, deferred imports included.

A cycle makes the result of an import depend on which module was imported
first (the CLI used to register a subcommand by importing its module, which
imported the app back). The graph is read from the source: every ``import``
of a flowkit module, at module level or inside a function; imports under
``if TYPE_CHECKING:`` are for annotations only, never executed, and are left
out.
"""

from __future__ import annotations

import ast
from pathlib import Path

import flowkit

PACKAGE = Path(flowkit.__file__).parent


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The flowkit modules ``name`` imports (a submodule when one is named, else the module)."""
    found = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and _is_type_checking(node.test)
        for statement in node.body
        for inner in ast.walk(statement)
    }
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if full in modules:
                    found.add(full)
                elif node.module in modules:
                    found.add(node.module)
    found.discard(name)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    """Whether an ``if`` test is ``TYPE_CHECKING`` or ``typing.TYPE_CHECKING``."""
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_type_only_imports_are_not_edges(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\nimport flowkit.cnf\n"
        "if TYPE_CHECKING:\n    from flowkit.compat import check_compatibility\n"
    )
    modules = {"flowkit.cnf": source, "flowkit.compat": source}
    assert _imports("m", source, modules) == {"flowkit.cnf"}


def test_flowkit_has_no_import_cycle() -> None:
    modules = _modules()
    assert "flowkit.cli.app" in modules and "flowkit.registry.building" in modules
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert _cycles(graph) == []


def test_subcommand_modules_do_not_know_the_app() -> None:
    """The app gets its subcommands from one function, not from import side effects."""
    modules = _modules()
    for name in ("flowkit.cli.list_cmd", "flowkit.cli.bench_cmd", "flowkit.cli.train_cmd"):
        assert "flowkit.cli.app" not in _imports(name, modules[name], modules), name
