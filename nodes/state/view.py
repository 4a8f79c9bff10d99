"""The contract reads chain actions decide from, over a :class:`MarketClient` with an account."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from market.chain.client import MarketClient
from market.protocol.types import LeaseState
from nodes.errors import ActionUnsupported
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

    def lease_states(self, lease_ids: Sequence[bytes]) -> Mapping[bytes, LeaseState]:
        return self.client.lease_states(lease_ids)

    def withdrawable(self, address: str) -> int:
        return self.client.withdrawable(address)

    def posted_claim(self, lease_id: bytes) -> PostedClaim:
        if "pendingClaim" not in self.functions:
            raise ActionUnsupported("optimistic claim", "pendingClaim")
        slot = self.client.claim_slot(lease_id)
        return PostedClaim(
            slot.amount, slot.seq, slot.ready_at, bytes(slot.receipt_hash), slot.ruling_deadline
        )


__all__ = ["MarketView"]
