"""What an account holds beyond the market's own reads, for the daemons' checks before they act::

gas_balance(client, "0xabc...")      # ether, in wei: what pays for transactions
token_units(client)                  # (decimals, symbol) of the settlement token
"""

from __future__ import annotations

from web3 import Web3

from market.chain.client import MarketClient


def gas_balance(client: MarketClient, address: str) -> int:
    """``address``'s ether (what pays for gas), in wei."""
    return int(client.w3.eth.get_balance(Web3.to_checksum_address(address)))


def token_units(client: MarketClient) -> tuple[int, str]:
    """The settlement token's decimals and symbol (TestUSD: 6, ``tUSD``)."""
    decimals = int(client.token.functions.decimals().call())
    symbol = str(client.token.functions.symbol().call())
    return decimals, symbol


__all__ = ["gas_balance", "token_units"]
