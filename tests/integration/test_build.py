"""The committed artifacts are exactly what the pinned compiler makes of today's sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from market.artifacts import ARTIFACTS_DIR
from market.build import ERRORS_MODULE, build

pytestmark = pytest.mark.integration


def test_rebuilt_artifacts_equal_committed_ones(tmp_path: Path) -> None:
    written = build(tmp_path / "artifacts", errors_module=tmp_path / "contract_errors.py")
    errors_module = written.pop("contract_errors")
    committed = sorted(p.name for p in ARTIFACTS_DIR.glob("*.json"))
    assert sorted(p.name for p in written.values()) == committed, "run `python -m market.build`"
    for path in written.values():
        assert path.read_text() == (ARTIFACTS_DIR / path.name).read_text(), (
            f"{path.name} is stale: run `python -m market.build` and commit the artifacts"
        )
    assert errors_module.read_text() == ERRORS_MODULE.read_text(), (
        "market/chain/contract_errors.py is stale: run `python -m market.build`"
    )
