"""Compiled contract artifacts, committed beside this file and loaded by name.

``load_artifact("Market")`` returns the ABI and bytecode built by ``python -m market.build``. In a
source checkout (where ``contracts/`` sits next to the package) each load also checks that the
contract's own sources still hash to what the artifact was built from, so a forgotten rebuild
fails loudly instead of deploying old code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from eth_hash.auto import keccak

from market.errors import ArtifactMissing, ArtifactStale

# The EVM version the contracts are compiled for; anvil is started with the same hardfork.
EVM_VERSION = "prague"
ARTIFACTS_DIR = Path(__file__).resolve().parent
_SOURCE_ROOT = ARTIFACTS_DIR.parent.parent  # the repository root in a source checkout


@dataclass(frozen=True)
class Artifact:
    """One compiled contract."""

    name: str
    source_name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    compiler_version: str
    sources: dict[str, str]  # source unit name -> keccak256 hex


def stale_sources(artifact: Artifact, root: Path = _SOURCE_ROOT) -> list[str]:
    """The repository's own sources of ``artifact`` whose content no longer matches it.

    Only sources under ``contracts/`` below ``root`` are checked; npm dependencies are
    covered by the rebuild test. An empty list means fresh (or not a source checkout).
    """
    changed = []
    for unit, digest in artifact.sources.items():
        path = root / unit
        if not unit.startswith("contracts/") or not (root / "contracts").is_dir():
            continue
        if not path.is_file() or "0x" + keccak(path.read_bytes()).hex() != digest:
            changed.append(unit)
    return changed


@cache
def load_artifact(name: str) -> Artifact:
    """Load the artifact of contract ``name``; raises ArtifactMissing or ArtifactStale."""
    path = ARTIFACTS_DIR / f"{name}.json"
    if not path.is_file():
        raise ArtifactMissing(name, path)
    raw = json.loads(path.read_text(encoding="utf-8"))
    artifact = Artifact(
        name=raw["contractName"],
        source_name=raw["sourceName"],
        abi=raw["abi"],
        bytecode=raw["bytecode"],
        deployed_bytecode=raw["deployedBytecode"],
        compiler_version=raw["compiler"]["version"],
        sources=raw["sources"],
    )
    changed = stale_sources(artifact)
    if changed:
        raise ArtifactStale(name, changed)
    return artifact


def available() -> list[str]:
    """Names of every contract with a committed artifact."""
    return sorted(p.stem for p in ARTIFACTS_DIR.glob("*.json"))


__all__ = [
    "ARTIFACTS_DIR",
    "EVM_VERSION",
    "Artifact",
    "available",
    "load_artifact",
    "stale_sources",
]
