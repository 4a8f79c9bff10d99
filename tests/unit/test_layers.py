"""The rooms of the tree import only what their layer allows, read from the source (ast):
``market`` never imports ``nodes``; the daemons (relay, provider, lab) stand side by side over
the shared room ``nodes.daemon``, which imports none of them, and none imports another's."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DAEMONS = ("nodes.relay", "nodes.provider", "nodes.lab")
SHARED = "nodes.daemon"


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """Every module ``path`` imports (absolute), with its line; ``from a import b`` yields both
    ``a`` and ``a.b`` (``b`` may be a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def module_of(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def forbidden(importer: str, imported: str) -> str | None:
    """Why ``importer`` may not import ``imported`` (None: it may)."""
    if within(importer, "market") and within(imported, "nodes"):
        return "market is the protocol and chain client: it never imports the daemons"
    if within(importer, SHARED) and any(within(imported, d) for d in DAEMONS):
        return f"{SHARED} is the daemons' shared room: it imports none of them"
    for room in DAEMONS:
        if within(importer, room):
            other = next((d for d in DAEMONS if d != room and within(imported, d)), None)
            if other is not None:
                return f"{room} stands beside {other}: share through {SHARED}, not each other"
    return None


def violations(package: str) -> list[str]:
    found = []
    for path in sorted((ROOT / package.replace(".", "/")).rglob("*.py")):
        importer = module_of(path).removesuffix(".__init__")
        for line, imported in imports(path):
            reason = forbidden(importer, imported)
            if reason is not None:
                found.append(f"{path.relative_to(ROOT)}:{line} imports {imported}: {reason}")
    return found


@pytest.mark.parametrize("package", ["market", SHARED, *DAEMONS])
def test_room_imports_only_what_its_layer_allows(package: str) -> None:
    assert violations(package) == []


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("market.chain.client", "nodes.errors"),
        ("nodes.lab.agent", "nodes.provider.config"),
        ("nodes.lab.checks", "nodes.provider.runtime.die_with_parent"),
        ("nodes.provider.agent", "nodes.lab.config"),
        ("nodes.provider.service", "nodes.relay.server"),
        ("nodes.relay.gossip", "nodes.provider"),
        ("nodes.daemon.config", "nodes.lab.config"),
        ("nodes.lab.ticks", "nodes.relay.reads"),
    ],
)
def test_an_import_across_rooms_is_refused(importer: str, imported: str) -> None:
    assert forbidden(importer, imported) is not None


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("nodes.lab.agent", "nodes.daemon.startup"),
        ("nodes.lab.ticks", "nodes.wire.relay_client"),
        ("nodes.provider.service", "nodes.wire.answers"),
        ("nodes.relay.relay", "nodes.wire"),
        ("nodes.lab.config", "market.matching"),
    ],
)
def test_imports_within_the_layers_are_allowed(importer: str, imported: str) -> None:
    assert forbidden(importer, imported) is None


def test_the_import_reader_sees_plain_and_from_imports(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("import os.path\nfrom nodes.provider import config\nfrom . import x\n")
    assert list(imports(source)) == [
        (1, "os.path"),
        (2, "nodes.provider"),
        (2, "nodes.provider.config"),
    ]
