"""Every third-party package the library and the daemons import is declared in pyproject.toml.

A package that arrives only as another's dependency (``hexbytes`` through web3, ``multidict``
through aiohttp) can vanish or change major version under us when that other package moves; what
the code imports, the project pins.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIRST_PARTY = {"market", "nodes", "bench", "tests"}


def _imported_top_levels() -> dict[str, set[Path]]:
    found: dict[str, set[Path]] = {}
    for package in ("market", "nodes"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in FIRST_PARTY:
                        found.setdefault(top, set()).add(path.relative_to(ROOT))
    return found


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    return {_normalise(re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0]) for r in requirements}


def test_every_imported_package_is_declared() -> None:
    distributions = packages_distributions()
    declared = _declared()
    undeclared: dict[str, set[Path]] = {}
    for module, paths in _imported_top_levels().items():
        owners = {_normalise(d) for d in distributions.get(module, [module])}
        if not owners & declared:
            undeclared[module] = paths
    assert undeclared == {}, "imported but not declared in pyproject.toml"


def test_the_walk_sees_the_imports_it_must() -> None:
    """The walk finds direct, nested and lazy imports (a test that found nothing would pass)."""
    found = _imported_top_levels()
    assert {"web3", "msgspec", "hexbytes", "multidict", "structlog"} <= set(found)
    assert "market" not in found
    assert "os" not in found
