"""The declared runtime dependencies are exactly what the shipped code imports."""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

REPO = Path(__file__).resolve().parents[2]
NOT_SHIPPED = tuple(
    Path(left)
    for left in re.search(r"^NOT_SHIPPED\s*:=(.*)$", (REPO / "debian/rules").read_text(), re.M)[1].split()  # type: ignore[index]
)
"""debian/rules' NOT_SHIPPED: development tools, which may use the test tools."""


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def shipped_sources() -> list[Path]:
    sources = [*(REPO / "appliance").rglob("*.py"), *(REPO / "twisted/plugins").glob("*.py")]
    return [
        path
        for path in sources
        if not any(left in (relative := path.relative_to(REPO), *relative.parents) for left in NOT_SHIPPED)
    ]


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def distribution_of(module: str, owners: Mapping[str, list[str]]) -> str | None:
    """The distribution that provides ``module`` (None: the standard library or the appliance)."""
    top = module.split(".")[0]
    if top in sys.stdlib_module_names or top == "appliance":
        return None
    candidates = {normalize(owner) for owner in owners.get(top, [])} - {"appliance"}
    if len(candidates) > 1:  # a namespace package such as zope: zope.interface
        candidates &= {normalize(".".join(module.split(".")[:2]))}
    assert len(candidates) == 1, f"{module}: provided by {candidates or 'nothing installed'}"
    return candidates.pop()


def declared() -> set[str]:
    """install_requires of the installed appliance, without the extras."""
    requirements = metadata.requires("appliance") or []
    return {
        normalize(re.split(r"[\s\[<>=;!~]", line, maxsplit=1)[0])
        for line in requirements
        if "extra ==" not in line
    }


class RuntimeDependencyTests(SynchronousTestCase):
    def test_declared_dependencies_are_the_imported_ones(self) -> None:
        owners = metadata.packages_distributions()
        imported = {
            dist
            for path in shipped_sources()
            for module in imported_modules(path)
            if (dist := distribution_of(module, owners)) is not None
        }
        self.assertIn("werkzeug", imported)
        self.assertEqual(sorted(declared()), sorted(imported))

    def test_no_test_tool_is_a_runtime_dependency(self) -> None:
        self.assertFalse(declared() & {"attrs", "pytest", "aiosmtpd", "hypothesis", "radicale"})
