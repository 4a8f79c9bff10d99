"""Fixtures for tests against a deployed market on the session's anvil."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from eth_account.signers.local import LocalAccount

from market.chain.client import MarketClient
from market.chain.deploy import Contracts, MarketParams, deploy
from market.chain.devnet import Devnet
from market.chain.tx import Transactor
from market.protocol.signing import SigningKey
from market.roles import Lab, Provider

USD = 10**6  # TestUSD has 6 decimals
MIN_STAKE = 100 * USD
CLAIM_WINDOW = 3600
UNBONDING_DELAY = 7200
START_BALANCE = 1_000_000 * USD


@dataclass
class MarketEnv:
    """A deployed market with funded accounts; every client is built fresh for the test."""

    devnet: Devnet
    contracts: Contracts

    def client(self, account: LocalAccount | None = None) -> MarketClient:
        return MarketClient(self.devnet.web3(), self.contracts, account)

    def provider(self, index: int) -> Provider:
        acct = self.devnet.accounts[index]
        return Provider(self.client(acct), SigningKey(acct.key))

    def lab(self, index: int) -> Lab:
        acct = self.devnet.accounts[index]
        return Lab(self.client(acct), SigningKey(acct.key))


def _deploy(devnet: Devnet, params: MarketParams) -> Contracts:
    w3 = devnet.web3()
    contracts = deploy(w3, devnet.accounts[0], rpc_url=devnet.rpc_url, params=params)
    minter = Transactor(w3, devnet.accounts[0])
    for acct in devnet.accounts[1:]:
        data = contracts.token.encode_abi("mint", args=[acct.address, START_BALANCE])
        minter.send(contracts.token.address, data, what="mint")
    return contracts


@pytest.fixture(scope="session")
def deployed(devnet: Devnet) -> Contracts:
    params = MarketParams(
        min_stake=MIN_STAKE, unbonding_delay=UNBONDING_DELAY, claim_window=CLAIM_WINDOW
    )
    return _deploy(devnet, params)


@pytest.fixture
def env(devnet: Devnet, deployed: Contracts) -> Iterator[MarketEnv]:
    """The deployed market, reverted to its pristine state after the test."""
    with devnet.isolated():
        yield MarketEnv(devnet, deployed)
