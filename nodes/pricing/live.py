"""The live market as :mod:`market.pricing` reads it: a relay's book and the chain's leases.

    figures = await market_figures(relay, client, hardware, blocks=5000)
    quote = suggest(figures.asks, figures.bids, figures.cleared)
    recording = await record(relay, client, ["H100-80GB"], samples=60, interval_s=10)

The book comes from the relay's API (:class:`~nodes.wire.relay_client.RelayClient`), the leases from
the chain (:func:`market.chain.leases.opened_leases`: each lease's model and memory read from the
offer in its opening transaction), never from a daemon's files.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from market.chain.client import MarketClient
from market.chain.leases import opened_leases
from market.pricing import (
    FORMAT_VERSION,
    Ask,
    BidEntry,
    BookSample,
    Hardware,
    Header,
    LeaseSample,
    Recording,
    TokenInfo,
)
from market.protocol.eip712 import order_hash
from market.protocol.types import Bid, Offer
from nodes.wire import BookSnapshot
from nodes.wire.relay_client import RelayClient


@dataclass(frozen=True, slots=True)
class MarketFigures:
    """What a seller of ``hardware`` faces now, prices per GPU-second in base units."""

    hardware: Hardware
    asks: tuple[int, ...]
    """Resting offers of the model."""
    bids: tuple[int, ...]
    """Resting bids of the model the hardware's memory meets (their maximum prices)."""
    cleared: tuple[int, ...]
    """Leases of the model opened in the window."""
    blocks: int
    """The window: this many blocks up to the head."""
    leases_unread: int
    """Leases in the window whose offer no market call carried (opened through a wallet)."""


def book_sample(snapshot: BookSnapshot, client: MarketClient) -> BookSample:
    """A relay's book snapshot as a recorded sample (order hashes as ids)."""
    asks, bids = [], []
    for entry in snapshot.offers:
        offer = entry.order.signed.message
        assert isinstance(offer, Offer)
        asks.append(Ask(_hash(client, offer), offer.price_per_gpu_second, entry.remaining,
                        offer.memory_gib))  # fmt: skip
    for entry in snapshot.bids:
        bid = entry.order.signed.message
        assert isinstance(bid, Bid)
        bids.append(BidEntry(_hash(client, bid), bid.max_price_per_gpu_second, entry.remaining,
                             bid.duration, bid.min_memory_gib))  # fmt: skip
    return BookSample(snapshot.chain_time, snapshot.model, tuple(asks), tuple(bids))


def _hash(client: MarketClient, order: Offer | Bid) -> str:
    return "0x" + bytes(order_hash(client.domain, order)).hex()


def lease_samples(client: MarketClient, from_block: int, to_block: int) -> list[LeaseSample]:
    opened = opened_leases(client, from_block, to_block)
    return [
        LeaseSample(
            time=lease.time, model=lease.model, memory_gib=lease.memory_gib, gpus=lease.gpus,
            price=lease.price_per_gpu_second, duration=lease.duration,
            bid="0x" + lease.bid_hash.hex(),
        )
        for lease in opened.leases
    ]  # fmt: skip


async def market_figures(
    relay: RelayClient, client: MarketClient, hardware: Hardware, *, blocks: int
) -> MarketFigures:
    """The book of ``hardware``'s model now and the leases of the last ``blocks`` blocks."""
    sample = book_sample(await relay.book(hardware.model), client)
    head = await asyncio.to_thread(lambda: client.head().number)
    start = max(client.contracts.deployment.deploy_block, head - blocks)
    opened = await asyncio.to_thread(opened_leases, client, start, head)
    return MarketFigures(
        hardware=hardware,
        asks=tuple(a.price for a in sample.asks),
        bids=tuple(b.price for b in sample.bids if b.min_memory_gib <= hardware.memory_gib),
        cleared=tuple(
            lease.price_per_gpu_second for lease in opened.leases if lease.model == hardware.model
        ),
        blocks=head - start,
        leases_unread=opened.skipped,
    )


async def record(
    relay: RelayClient,
    client: MarketClient,
    models: Sequence[str],
    *,
    samples: int,
    interval_s: float,
) -> Recording:
    """Sample ``models``' books ``samples`` times, ``interval_s`` apart, then read the leases the
    chain opened meanwhile: a recording in time order."""
    token = await asyncio.to_thread(client.token_metadata)
    first = await asyncio.to_thread(lambda: client.head().number)
    books: list[BookSample] = []
    for i in range(samples):
        if i:
            await asyncio.sleep(interval_s)
        for model in models:
            books.append(book_sample(await relay.book(model), client))
    last = await asyncio.to_thread(lambda: client.head().number)
    leases = [
        lease
        for lease in await asyncio.to_thread(lease_samples, client, first, last)
        if lease.model in models
    ]
    events: list[BookSample | LeaseSample] = [*books, *leases]
    events.sort(key=lambda e: e.time)  # stable: books first at a tie
    header = Header(FORMAT_VERSION, TokenInfo(token.symbol, token.decimals), relay.url)
    return Recording(header, tuple(events))


__all__ = ["MarketFigures", "book_sample", "lease_samples", "market_figures", "record"]
