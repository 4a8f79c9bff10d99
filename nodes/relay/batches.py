"""Fills grouped for the chain: lots, which never split, and batches of lots, one transaction each.

A *lot* is what must open in one transaction or not at all: every fill of an all-or-none bid (its
cluster, which may take several providers' offers), or one fill of any other bid. A *batch* is
lots sent together, through ``openLeaseBatch`` (each lease at its offer's price) or, for lots of
an auction's clearing, ``openLeaseAuction`` at that clearing price; lots of different prices never
share a batch. The contract opens a batch atomically, so a batch is bounded to stay far below a
transaction's gas cap (EIP-7825: 2**24 gas): :data:`MAX_BATCH_MATCHES` matches, each of its own
offer and bid with three labs interleaved (the dearest case: about 107,000 gas a match, measured
on anvil), estimate at 10.7M, 13.4M with the transactor's 25% headroom. A lot larger than the
bound is sent alone, whole.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from market.chain.client import BatchMatch
from market.matching import Fill

MAX_BATCH_MATCHES = 100
FILL_WINDOW_S = 0.1
"""How long the first fill queued waits for more to join its transaction. On a devnet mining at
once, ``bench.relay`` opened its 130 leases in 73 transactions of 1 to 3 leases without a window
and in 17 with this one (the relay's CPU per order fell by about a tenth); a tenth of a second is
nothing beside a lease's hours, or beside a chain whose blocks take seconds."""


@dataclass(frozen=True, slots=True)
class Lot:
    """Fills that open together or not at all; ``clearing_price`` is the auction's uniform price
    every one of them pays, or None for each its offer's price."""

    fills: tuple[Fill, ...]
    clearing_price: int | None = None

    @property
    def bid_hash(self) -> bytes:
        return self.fills[0].bid_hash


def lots_of(fills: Iterable[Fill], clearing_price: int | None = None) -> list[Lot]:
    """Group fills into lots: every fill of an all-or-none bid into one lot (at the place of its
    first fill), each other fill alone."""
    lots: list[list[Fill]] = []
    clusters: dict[bytes, list[Fill]] = {}
    for fill in fills:
        if not fill.bid.message.all_or_none:
            lots.append([fill])
        elif fill.bid_hash in clusters:
            clusters[fill.bid_hash].append(fill)
        else:
            clusters[fill.bid_hash] = [fill]
            lots.append(clusters[fill.bid_hash])
    return [Lot(tuple(lot), clearing_price) for lot in lots]


def take_batch(queue: deque[Lot], max_matches: int = MAX_BATCH_MATCHES) -> list[Lot]:
    """Pop the next batch from the front of ``queue``: the first lot, then the lots after it at
    the same clearing price while the batch stays within ``max_matches`` fills."""
    batch = [queue.popleft()]
    size = len(batch[0].fills)
    price = batch[0].clearing_price
    while queue and queue[0].clearing_price == price:
        if size + len(queue[0].fills) > max_matches:
            break
        lot = queue.popleft()
        batch.append(lot)
        size += len(lot.fills)
    return batch


def ordered(lots: Sequence[Lot]) -> list[Fill]:
    """A batch's fills in the order they are sent: grouped by lab (stable), so that each lab's
    bids run consecutively and the contract pulls its escrow once."""
    fills = [fill for lot in lots for fill in lot.fills]
    first_seen: dict[str, int] = {}
    for fill in fills:
        first_seen.setdefault(fill.bid.message.lab, len(first_seen))
    return sorted(fills, key=lambda fill: first_seen[fill.bid.message.lab])


def matches(fills: Iterable[Fill]) -> list[BatchMatch]:
    return [BatchMatch(f.offer, f.bid, f.gpus) for f in fills]


__all__ = [
    "FILL_WINDOW_S",
    "MAX_BATCH_MATCHES",
    "Lot",
    "lots_of",
    "matches",
    "ordered",
    "take_batch",
]
