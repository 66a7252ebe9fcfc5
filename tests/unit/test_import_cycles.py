"""No import cycles in ``appliance/``.

A cycle makes the import order matter and ties modules that should stand
alone.  The graph is read from the source (``ast``): each module's
module-level imports, the ones that run when it is imported.  Imports inside
functions and under ``if TYPE_CHECKING:`` do not run then, so they do not
count.  ``from package import name`` points at ``package.name`` when that is
a module, else at ``package``.

A second check counts the imports inside functions too: moving an import
into a function keeps the import order from mattering, but the modules still
depend on each other (the web app and its pages, the prompt builder and the
features' texts did so before).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Every module of ``package`` under ``root``, by dotted name."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _run_at_import(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements that run when the module is imported."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _run_at_import(node.body)
            yield from _run_at_import(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from _run_at_import(block)
        elif isinstance(node, ast.With):
            yield from _run_at_import(node.body)


class _EveryImport(ast.NodeVisitor):
    """Collects every import statement, in functions too, except those for the type checker."""

    def __init__(self) -> None:
        self.found: list[ast.Import | ast.ImportFrom] = []

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for statement in node.orelse:
                self.visit(statement)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        self.found.append(node)

    visit_ImportFrom = visit_Import


def _anywhere(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    collector = _EveryImport()
    for statement in body:
        collector.visit(statement)
    return iter(collector.found)


def imports_of(name: str, path: Path, modules: dict[str, Path], deferred: bool = False) -> set[str]:
    """The modules of ``modules`` that module ``name`` imports at import time
    (or anywhere, with ``deferred``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in (_anywhere if deferred else _run_at_import)(tree.body):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            targets.add(submodule if submodule in modules else base)
    return {target for target in targets if target in modules and target != name}


def import_graph(root: Path, package: str, deferred: bool = False) -> dict[str, set[str]]:
    modules = module_names(root, package)
    return {name: imports_of(name, path, modules, deferred) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        # Recursion depth is bounded by the module count (about a hundred).
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_appliance_has_no_import_cycles() -> None:
    """No group of appliance modules imports itself round at import time."""
    graph = import_graph(ROOT, "appliance")
    assert len(graph) > 50 and graph["appliance.tap"], "the graph missed the package"
    assert cycles(graph) == []


def test_no_cycle_hides_behind_an_import_in_a_function() -> None:
    """Counting the imports inside functions too, appliance modules still form no cycle."""
    assert cycles(import_graph(ROOT, "appliance", deferred=True)) == []


def private_imports(root: Path, package: str) -> list[str]:
    """``from other import _name`` anywhere in ``package``: a private name used by another module."""
    found = []
    for name, path in module_names(root, package).items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        found.append(
                            f"{name}: from {'.' * node.level}{node.module or ''} import {alias.name}"
                        )
    return found


def test_no_module_imports_private_names_of_another() -> None:
    """What one module uses of another is public there (fastagi once took five of agi's private names)."""
    assert private_imports(ROOT, "appliance") == []


def _package(tmp_path: Path, files: dict[str, str]) -> dict[str, set[str]]:
    for relative, text in files.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return import_graph(tmp_path, "pkg")


def test_a_cycle_through_a_package_is_found(tmp_path: Path) -> None:
    """web.app imports web.pages.a, which imports web.app back: one cycle of two,
    found through ``from package import module`` and a relative import."""
    graph = _package(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/web/__init__.py": "",
            "pkg/web/app.py": "from pkg.web.pages import a\n",
            "pkg/web/pages/__init__.py": "",
            "pkg/web/pages/a.py": "from ..app import helper\nimport pkg.other\n",
            "pkg/other.py": "import os\n",
        },
    )
    assert graph["pkg.web.app"] == {"pkg.web.pages.a"}
    assert graph["pkg.web.pages.a"] == {"pkg.web.app", "pkg.other"}
    assert cycles(graph) == [["pkg.web.app", "pkg.web.pages.a"]]


def test_type_checking_and_function_imports_do_not_count(tmp_path: Path) -> None:
    """Imports under ``if TYPE_CHECKING:`` or inside a function do not run at import
    time; one under ``try:`` does."""
    graph = _package(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import b\n",
            "pkg/b.py": "def f():\n    from pkg import a\n",
            "pkg/c.py": "try:\n    from pkg import d\nexcept ImportError:\n    pass\n",
            "pkg/d.py": "import pkg.c\n",
        },
    )
    assert graph["pkg.a"] == set() and graph["pkg.b"] == set()
    assert cycles(graph) == [["pkg.c", "pkg.d"]]
    everywhere = import_graph(tmp_path, "pkg", deferred=True)
    assert everywhere["pkg.a"] == set() and everywhere["pkg.b"] == {"pkg.a"}


def test_private_imports_are_found(tmp_path: Path) -> None:
    """A private name imported from another module is found, in a function too."""
    _package(tmp_path, {"pkg/__init__.py": "", "pkg/a.py": "def f():\n    from .b import _x, y\n"})
    assert private_imports(tmp_path, "pkg") == ["pkg.a: from .b import _x"]
