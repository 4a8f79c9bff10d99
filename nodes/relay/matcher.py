"""Sending the matcher's fills to the chain, one ``openLease`` at a time, idempotently.

Each fill is written to the store as an intent before its transaction is sent, and its outcome
after: opened (the lease id), failed (the contract error, decoded) or unknown (the endpoint went
away or no receipt came in time). The book's filled counts come only from LeaseOpened events, so a
fill whose outcome is unknown, or an intent left by a crash, can never be counted twice: the chain
watcher settles it if it landed, and the GPUs are free again if it did not (the contract itself
refuses to fill an order beyond its size). Intents found on start are marked ``abandoned``.
"""

from __future__ import annotations

import asyncio
import time

from market.chain.client import MarketClient
from market.errors import RpcUnavailable, TransactionReverted, TransactionTimeout
from market.matching import Fill
from nodes.logs import EventLogger
from nodes.relay.book import RelayBook
from nodes.relay.metrics import RelayMetrics
from nodes.relay.store import Store


class Matcher:
    def __init__(
        self,
        client: MarketClient,
        book: RelayBook,
        store: Store,
        metrics: RelayMetrics,
        log: EventLogger,
    ) -> None:
        self.client = client
        self.book = book
        self.store = store
        self.metrics = metrics
        self.log = log.bind(matcher=client.address)
        self.queue: asyncio.Queue[Fill] = asyncio.Queue()
        book.on_fills = self.enqueue

    def reconcile(self) -> int:
        """Mark intents a previous run left without an outcome; the chain decides their fate."""
        left = self.store.fills("intent")
        for fill_id, offer_hash, bid_hash, gpus, _ in left:
            self.store.finish_fill(fill_id, "abandoned")
            self.log.warning("fill_abandoned", offer=offer_hash, bid=bid_hash, gpus=gpus)
        return len(left)

    def enqueue(self, fills: list[Fill]) -> None:
        for fill in fills:
            self.queue.put_nowait(fill)

    async def run(self) -> None:
        while True:
            fill = await self.queue.get()
            try:
                await self._send(fill)
            finally:
                self.queue.task_done()

    async def _send(self, fill: Fill) -> None:
        fill_id = self.store.record_intent(fill.offer_hash, fill.bid_hash, fill.gpus)
        self.metrics.fills.inc(status="submitted")
        started = time.monotonic()
        try:
            lease = await asyncio.to_thread(self.client.open_lease, fill.offer, fill.bid, fill.gpus)
        except TransactionReverted as exc:
            self.store.finish_fill(fill_id, "failed", error=type(exc).__name__)
            self.metrics.fills.inc(status="failed")
            self.log.warning(
                "fill_failed", offer=fill.offer_hash, bid=fill.bid_hash, error=type(exc).__name__
            )
            self.book.fill_failed(fill, exc)
            self.book.rematch()
            return
        except (RpcUnavailable, TransactionTimeout) as exc:
            self.store.finish_fill(fill_id, "unknown", error=type(exc).__name__)
            self.metrics.fills.inc(status="unknown")
            self.log.warning(
                "fill_unknown", offer=fill.offer_hash, bid=fill.bid_hash, error=str(exc)
            )
            self.book.fill_failed(fill, exc)
            return
        self.store.finish_fill(fill_id, "opened", lease_id=lease.id)
        self.metrics.fills.inc(status="opened")
        self.log.info(
            "lease_opened",
            lease=lease.id,
            gpus=fill.gpus,
            price=fill.price_per_gpu_second,
            seconds=round(time.monotonic() - started, 3),
        )
        self.book.fill_opened(fill, lease.id)

    async def drain(self, timeout_s: float) -> bool:
        """Wait until every queued fill has been sent (or ``timeout_s``); True when drained."""
        try:
            await asyncio.wait_for(self.queue.join(), timeout_s)
        except TimeoutError:
            return False
        return True


__all__ = ["Matcher"]
