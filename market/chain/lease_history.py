"""One lease as the chain tells it: the terms it opened with, its state now, and its events.

    record = read_lease(client, lease_id)   # None when no such lease opened
    record.lease.gpus, record.state.status, [e.name for e in record.events]

The terms come from the ``LeaseOpened`` event (the contract keeps only their hash), so this reads
the market's events since the deployment, in chunks, and keeps those naming the lease.
"""

from __future__ import annotations

from dataclasses import dataclass

from market.chain.client import MarketClient
from market.chain.events import ChainEvent
from market.chain.history import head_block
from market.protocol.types import Lease, LeaseState

LEASE_EVENTS = frozenset(
    {
        "LeaseOpened",
        "Claimed",
        "ClaimSkipped",
        "CloseSkipped",
        "FinalizeSkipped",
        "LeaseTerminated",
        "LeaseClosed",
        "LeaseSlashed",
        "StakeReleased",
        "ReceiptPosted",
        "ClaimDisputed",
        "DisputeRuled",
        "ClaimFinalized",
    }
)
"""The market's events that name a lease by ``leaseId``."""
CHUNK_BLOCKS = 10_000


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """A lease's terms, the orders it filled, the block it opened in, its on-chain state and
    every event naming it, in chain order (``LeaseOpened`` first)."""

    lease_id: bytes
    lease: Lease
    offer_hash: bytes
    bid_hash: bytes
    opened_block: int
    state: LeaseState
    events: tuple[ChainEvent, ...]


def lease_events(client: MarketClient, lease_id: bytes) -> list[ChainEvent]:
    """Every market event naming ``lease_id``, from the deployment to the head, in chain order."""
    start = client.contracts.deployment.deploy_block
    end = head_block(client)
    found: list[ChainEvent] = []
    for low in range(start, end + 1, CHUNK_BLOCKS):
        for event in client.event_reader.events(low, min(low + CHUNK_BLOCKS - 1, end)):
            if event.name in LEASE_EVENTS and event.args.get("lease_id") == lease_id:
                found.append(event)
    return found


def read_lease(client: MarketClient, lease_id: bytes) -> LeaseRecord | None:
    """The lease ``lease_id`` from the chain, or None when no such lease ever opened."""
    events = lease_events(client, bytes(lease_id))
    opened = next((e for e in events if e.name == "LeaseOpened"), None)
    if opened is None:
        return None
    return LeaseRecord(
        lease_id=bytes(lease_id),
        lease=opened.args["lease"],
        offer_hash=bytes(opened.args["offer_hash"]),
        bid_hash=bytes(opened.args["bid_hash"]),
        opened_block=opened.block_number,
        state=client.lease_state(lease_id),
        events=tuple(events),
    )


__all__ = ["LEASE_EVENTS", "LeaseRecord", "lease_events", "read_lease"]
