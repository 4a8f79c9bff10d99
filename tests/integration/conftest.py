"""Fixtures for tests against a deployed market on the session's anvil."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount

from market.artifacts import load_artifact
from market.chain.client import MarketClient
from market.chain.deploy import Contracts, MarketParams, deploy
from market.chain.devnet import Devnet
from market.chain.tx import Transactor
from market.protocol.signing import SigningKey
from market.roles import Lab, Provider
from tests.integration.pg_server import pg_url, postgres  # noqa: F401  (fixtures: PostgreSQL)

USD = 10**6  # TestUSD has 6 decimals
MIN_STAKE = 100 * USD
CLAIM_WINDOW = 3600
CHALLENGE_WINDOW = 1800
UNBONDING_DELAY = 7200
START_BALANCE = 1_000_000 * USD


@dataclass
class MarketEnv:
    """A deployed market with funded accounts; every client is built fresh for the test."""

    devnet: Devnet
    contracts: Contracts

    def client(
        self, account: LocalAccount | None = None, *, wallet: str | None = None
    ) -> MarketClient:
        return MarketClient(self.devnet.web3(), self.contracts, account, wallet=wallet)

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
        min_stake=MIN_STAKE,
        unbonding_delay=UNBONDING_DELAY,
        claim_window=CLAIM_WINDOW,
        challenge_window=CHALLENGE_WINDOW,
    )
    return _deploy(devnet, params)


@pytest.fixture
def env(devnet: Devnet, deployed: Contracts) -> Iterator[MarketEnv]:
    """The deployed market, reverted to its pristine state after the test."""
    with devnet.isolated():
        yield MarketEnv(devnet, deployed)


def deploy_variant(devnet: Devnet, **kwargs: Any) -> Contracts:
    """Another market on the same chain (another token, decimals or fee), with funded accounts."""
    w3 = devnet.web3()
    deployer = devnet.accounts[0]
    token_address = None
    if kwargs.pop("no_bool_token", False):
        art = load_artifact("NoBoolToken")
        receipt = Transactor(w3, deployer).deploy(art.abi, art.bytecode, 6)
        token_address = receipt["contractAddress"]
    decimals = kwargs.pop("token_decimals", 6)
    params = MarketParams(
        min_stake=MIN_STAKE,
        unbonding_delay=UNBONDING_DELAY,
        claim_window=CLAIM_WINDOW,
        challenge_window=CHALLENGE_WINDOW,
        **kwargs,
    )
    contracts = deploy(
        w3,
        deployer,
        rpc_url=devnet.rpc_url,
        token=token_address,
        token_decimals=decimals,
        params=params,
    )
    minter = Transactor(w3, deployer)
    for acct in devnet.accounts[1:]:
        data = contracts.token.encode_abi("mint", args=[acct.address, START_BALANCE * 10**12])
        minter.send(contracts.token.address, data, what="mint")
    return contracts
