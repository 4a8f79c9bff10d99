from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from market.artifacts import ARTIFACTS_DIR, available, load_artifact, stale_sources
from market.errors import ArtifactMissing, ArtifactStale

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]


def test_committed_artifacts_match_their_sources() -> None:
    assert "TestUSD" in available()
    for name in available():
        assert stale_sources(load_artifact(name)) == []


def test_artifact_records_compiler_and_bytecode() -> None:
    art = load_artifact("TestUSD")
    assert art.compiler_version.startswith("0.8.37+commit.")
    assert art.bytecode.startswith("0x6")
    assert len(art.bytecode) > 1000
    assert len(art.deployed_bytecode) < len(art.bytecode)
    assert art.source_name == "contracts/src/TestUSD.sol"
    assert any(s.startswith("@openzeppelin/contracts/") for s in art.sources)


def test_missing_artifact_error_names_the_build_command() -> None:
    with pytest.raises(ArtifactMissing, match=r"python -m market\.build") as info:
        load_artifact("NoSuchContract")
    assert info.value.name == "NoSuchContract"


def test_changed_source_makes_artifact_stale(tmp_path: Path) -> None:
    art = load_artifact("TestUSD")
    copy = tmp_path / "contracts" / "src" / "TestUSD.sol"
    copy.parent.mkdir(parents=True)
    shutil.copy(REPO / art.source_name, copy)
    assert stale_sources(art, root=tmp_path) == []
    copy.write_text(copy.read_text() + "\n// edited\n")
    assert stale_sources(art, root=tmp_path) == ["contracts/src/TestUSD.sol"]


def test_stale_artifact_raises_with_build_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import market.artifacts as artifacts

    fake = tmp_path / "artifacts"
    fake.mkdir()
    raw = json.loads((ARTIFACTS_DIR / "TestUSD.json").read_text())
    raw["sources"]["contracts/src/TestUSD.sol"] = "0x" + "00" * 32
    (fake / "Edited.json").write_text(json.dumps(raw))
    monkeypatch.setattr(artifacts, "ARTIFACTS_DIR", fake)
    load_artifact.cache_clear()
    try:
        with pytest.raises(ArtifactStale, match=r"python -m market\.build") as info:
            load_artifact("Edited")
        assert info.value.changed == ["contracts/src/TestUSD.sol"]
    finally:
        load_artifact.cache_clear()
