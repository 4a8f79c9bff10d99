"""A devnet's faucet: TestUSD minted and gas sent to any address, refused on any other chain.

    faucet = DevnetFaucet.connect(deployment)       # DevnetError unless chain 31337 with a mint
    faucet.give("0xabc...", tokens=1000 * 10**6, eth_wei=10**18)

The ether comes from anvil's first well-known test account (:data:`DEV_FAUCET_KEY`), funded by
every devnet anvil or Hardhat starts; the tokens from TestUSD's ``mint``, which anyone may call.
A chain is taken for a devnet only when both hold: its id is :data:`DEVNET_CHAIN_ID` and the
deployed token has a ``mint`` function (a real settlement token has none).
"""

from __future__ import annotations

from dataclasses import dataclass

from web3 import Web3

from market.chain.client import MarketClient
from market.chain.deploy import Deployment
from market.errors import DevnetError

DEVNET_CHAIN_ID = 31337
DEV_FAUCET_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
"""Anvil's (and Hardhat's) account 0 of the public test mnemonic: a PUBLIC TEST KEY, known to
everyone, that must never hold anything of value on a real chain."""
_MINT_SELECTOR = bytes.fromhex("40c10f19")  # mint(address,uint256)


@dataclass(frozen=True)
class DevnetFaucet:
    """Gives tokens and gas on a devnet; built only by :meth:`connect`, which checks it is one."""

    client: MarketClient

    @classmethod
    def connect(cls, deployment: Deployment, key: str = DEV_FAUCET_KEY) -> DevnetFaucet:
        """Connect as ``key``; DevnetError when the chain is not a devnet with TestUSD."""
        client = MarketClient.connect(deployment, key)
        chain_id = int(client.w3.eth.chain_id)
        if chain_id != DEVNET_CHAIN_ID:
            raise DevnetError(
                f"chain {chain_id} at {deployment.rpc_url} is not a devnet (chain id "
                f"{DEVNET_CHAIN_ID}): the faucet runs only on `gpumarket devnet up`; get tokens "
                "on this chain from its own sources"
            )
        code = bytes(client.w3.eth.get_code(client.token.address))
        if _MINT_SELECTOR not in code:
            raise DevnetError(
                f"the token at {client.token.address} has no mint: this deployment settles in a "
                "real token, and the faucet gives only the devnet's TestUSD"
            )
        return cls(client)

    def give(self, to: str, *, tokens: int, eth_wei: int) -> None:
        """Mint ``tokens`` (base units) of TestUSD to ``to`` and send it ``eth_wei`` of ether."""
        address = Web3.to_checksum_address(to)
        if tokens:
            self.client.mint_test_usd(address, tokens)
        if eth_wei:
            self.client.transactor.send(address, b"", value=eth_wei, what="faucet ether")


__all__ = [
    "DEVNET_CHAIN_ID",
    "DEV_FAUCET_KEY",
    "DevnetFaucet",
]
