"""The contract reads chain actions decide from, over a :class:`MarketClient` with an account."""

from __future__ import annotations

from market.chain.client import MarketClient
from market.chain.retry import with_retries
from market.chain.tx import endpoint_of
from market.errors import ActionUnsupported
from market.protocol.types import LeaseState
from nodes.state.actions import PostedClaim


class MarketView:
    """:class:`~nodes.state.actions.ChainView` over a :class:`MarketClient` with an account."""

    def __init__(self, client: MarketClient) -> None:
        self.client = client
        self.functions = {item["name"] for item in client.market.abi if item["type"] == "function"}

    @property
    def account(self) -> str:
        return self.client.address

    def lease_state(self, lease_id: bytes) -> LeaseState:
        return self.client.lease_state(lease_id)

    def withdrawable(self, address: str) -> int:
        return self.client.withdrawable(address)

    def posted_claim(self, lease_id: bytes) -> PostedClaim:
        if "pendingClaim" not in self.functions:
            raise ActionUnsupported("optimistic claim", "pendingClaim")
        fn = self.client.market.functions.pendingClaim(lease_id)
        amount, seq, ready_at, receipt_hash = with_retries(
            fn.call, endpoint=endpoint_of(self.client.w3)
        )
        return PostedClaim(amount, seq, ready_at, bytes(receipt_hash))


__all__ = ["MarketView"]
