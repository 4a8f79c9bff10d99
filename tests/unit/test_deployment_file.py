from __future__ import annotations

from pathlib import Path

import pytest

from market.chain.deploy import Deployment
from market.errors import DeploymentError

pytestmark = pytest.mark.unit

ADDR = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def test_deployment_file_round_trips(tmp_path: Path) -> None:
    d = Deployment(
        chain_id=31337, rpc_url="http://127.0.0.1:8545", deploy_block=1, contracts={"TestUSD": ADDR}
    )
    path = tmp_path / "sub" / "deployment.json"
    d.save(path)
    assert Deployment.load(path) == d
    assert not path.with_suffix(".json.tmp").exists()


def test_missing_deployment_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(DeploymentError, match="gpumarket devnet up"):
        Deployment.load(tmp_path / "absent.json")


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "{}",
        '{"version": 2, "chainId": 1, "rpcUrl": "x", "deployBlock": 0, "contracts": {}}',
        '{"version": 1, "chainId": 1, "rpcUrl": "x", "deployBlock": 0, "contracts": {"A": "0x12"}}',
        '{"version": 1, "rpcUrl": "x", "deployBlock": 0, "contracts": {}}',
    ],
)
def test_malformed_deployment_file_raises_typed_error(text: str) -> None:
    with pytest.raises(DeploymentError):
        Deployment.from_json(text)


def test_unknown_contract_name_raises() -> None:
    d = Deployment(chain_id=1, rpc_url="x", deploy_block=0, contracts={})
    with pytest.raises(DeploymentError, match="Market"):
        d.address("Market")
