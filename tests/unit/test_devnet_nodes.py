"""Which EVM node a devnet runs, and its node-specific methods (no node is started)."""

from __future__ import annotations

from pathlib import Path

import pytest
from web3.exceptions import ContractLogicError

import market.chain.devnet as devnet_mod
from market.chain.devnet import _config_written, default_implementation
from market.chain.tx import revert_data
from market.errors import DevnetError

pytestmark = pytest.mark.unit


def test_default_implementation_is_anvil_unless_gpumarket_evm_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GPUMARKET_EVM", raising=False)
    assert default_implementation() == "anvil"
    monkeypatch.setenv("GPUMARKET_EVM", "hardhat")
    assert default_implementation() == "hardhat"


def test_unknown_gpumarket_evm_is_refused_with_the_known_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GPUMARKET_EVM", "geth")
    with pytest.raises(DevnetError, match=r"'geth' is not one of \('anvil', 'hardhat'\)"):
        default_implementation()


def test_every_node_names_the_same_node_specific_actions() -> None:
    tables = devnet_mod._METHODS
    assert set(tables["anvil"]) == set(tables["hardhat"])
    assert all(method is not None for method in tables["anvil"].values())


def test_revert_data_is_read_from_anvil_strings_and_hardhat_objects() -> None:
    anvil = ContractLogicError("execution reverted", data="0x70ab3790")
    hardhat = ContractLogicError(
        "execution reverted: Error: VM Exception", data={"message": "m", "data": "0x70ab3790"}
    )
    assert revert_data(anvil) == revert_data(hardhat) == bytes.fromhex("70ab3790")
    assert revert_data(ContractLogicError("execution reverted", data=None)) == b""


def test_a_config_file_the_node_is_still_writing_is_not_ready(tmp_path: Path) -> None:
    """anvil creates config.json before it has written it: an empty or partial file once failed
    a whole test worker's session devnet with a JSONDecodeError."""
    config = tmp_path / "config.json"
    assert not _config_written(tmp_path)  # not there yet
    for partial in ("", '{"private_keys": ["0x', '{"private_keys": []}', "[]"):
        config.write_text(partial, encoding="utf-8")
        assert not _config_written(tmp_path), partial
    config.write_text('{"private_keys": ["0x01"]}', encoding="utf-8")
    assert _config_written(tmp_path)
