"""What the CLI, the demo and the benchmarks read or do through ``market.chain`` instead of web3."""

from __future__ import annotations

import pytest

from market.chain.client import MarketClient
from market.chain.deploy import deploy_over_http
from market.chain.devnet import Devnet
from market.chain.gas import OTHER, GasUse, gas_by_function
from market.chain.history import head_block
from tests.integration.conftest import USD, MarketEnv

pytestmark = pytest.mark.integration


def test_mint_moves_supply_and_balance_and_its_gas_is_named_by_function(env: MarketEnv) -> None:
    faucet = env.client(env.devnet.accounts[0])
    reader = env.client()
    to = env.devnet.accounts[8].address
    supply, balance = reader.total_supply(), reader.balance_of(to)
    first = head_block(reader) + 1
    faucet.mint_test_usd(to, 7 * USD)
    faucet.approve(3 * USD)
    assert reader.total_supply() == supply + 7 * USD
    assert reader.balance_of(to) == balance + 7 * USD
    receipt = faucet.last_receipt
    assert receipt is not None
    spent = gas_by_function(reader, first)
    assert set(spent) == {"mint", "approve"}
    assert spent["approve"] == GasUse(1, int(receipt["gasUsed"]))
    assert spent["mint"].calls == 1
    assert spent["mint"].per_call == spent["mint"].gas > 21_000


def test_a_plain_transfer_counts_as_other_and_a_deployment_not_at_all(chain: Devnet) -> None:
    key = "0x" + bytes(chain.accounts[3].key).hex()
    contracts = deploy_over_http(chain.rpc_url, key)
    assert contracts.deployment.rpc_url == chain.rpc_url
    reader = MarketClient.connect(contracts.deployment)
    assert reader.min_stake() > 0
    assert gas_by_function(reader, contracts.deployment.deploy_block) == {}  # creations only
    w3 = chain.web3()
    first = head_block(reader) + 1
    tx = {"to": chain.accounts[4].address, "value": 1, "gas": 21_000}
    w3.eth.send_transaction({**tx, "from": chain.accounts[5].address})
    chain.mine()
    assert gas_by_function(reader, first) == {OTHER: GasUse(1, 21_000)}
