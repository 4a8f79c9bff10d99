"""Gossip: orders a relay accepted are sent on to its configured peers, without loops.

A relay gossips an order only when it first accepts it, so an order reaches each relay at most
once per path and the flood stops where every relay already knows it (a peer answers a known order
with ``duplicate_order`` and does not send it on). Each Gossip names its ``origin`` (the relay the
order entered the network at) and its ``sender``; a relay learns its peers' ids from the
``X-Gpumarket-Relay`` header of their answers and never sends an order back to the relay it came
from or to its origin. ``hops`` bounds how far an order travels.

Each peer has its own queue and task, so a slow or absent peer delays no other; a delivery is
retried with backoff on connection failures, 429 and 5xx, then dropped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import aiohttp

from market.matching import Submission
from nodes.errors import PeerUnavailable, RequestRefused
from nodes.logs import EventLogger
from nodes.relay.metrics import RelayMetrics
from nodes.wire import Gossip, OrderStatus
from nodes.wire.relay_client import RelayClient

_FIRST_DELAY_S = 0.1


@dataclass(frozen=True, slots=True)
class _Outgoing:
    message: Gossip
    exclude: frozenset[str]


class Gossiper:
    def __init__(
        self,
        relay_id: str,
        peers: tuple[str, ...],
        session: aiohttp.ClientSession,
        metrics: RelayMetrics,
        log: EventLogger,
        *,
        timeout_s: float,
        attempts: int,
        max_hops: int,
    ) -> None:
        self.relay_id = relay_id
        self.metrics = metrics
        self.log = log
        self.attempts = attempts
        self.max_hops = max_hops
        self.peers = {url: RelayClient(url, session=session, timeout_s=timeout_s) for url in peers}
        self._queues: dict[str, asyncio.Queue[_Outgoing]] = {url: asyncio.Queue() for url in peers}
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._deliver_forever(url), name=f"gossip->{url}")
            for url in self.peers
        ]

    def publish(
        self, orders: list[Submission], *, origin: str, hops: int, came_from: str | None = None
    ) -> None:
        """Send newly accepted ``orders`` on to every peer except the ones they came from."""
        if not orders or hops > self.max_hops:
            return
        message = Gossip(origin, self.relay_id, hops, tuple(orders))
        exclude = frozenset(x for x in (origin, came_from) if x is not None)
        for queue in self._queues.values():
            queue.put_nowait(_Outgoing(message, exclude))

    async def _deliver_forever(self, url: str) -> None:
        queue = self._queues[url]
        while True:
            item = await queue.get()
            try:
                if self.peers[url].relay_id not in item.exclude:
                    await self._deliver(url, item.message)
            finally:
                queue.task_done()

    async def _deliver(self, url: str, message: Gossip) -> None:
        peer = self.peers[url]
        delay = _FIRST_DELAY_S
        for attempt in range(1, self.attempts + 1):
            try:
                results = await peer.gossip(message)
            except PeerUnavailable as exc:
                reason = exc.reason
            except RequestRefused as exc:
                if exc.status != 429 and exc.status < 500:
                    self._dropped(url, message, f"{exc.code}: {exc.message}")
                    return
                reason = exc.code
            else:
                new = sum(r.status is OrderStatus.ACCEPTED for r in results)
                self.metrics.gossip_sent.inc(result="delivered")
                self.log.debug("gossip_delivered", peer=url, orders=len(results), new=new)
                return
            if attempt < self.attempts:
                self.log.debug("gossip_retry", peer=url, attempt=attempt, reason=reason)
                await asyncio.sleep(delay)  # backoff before the next attempt
                delay *= 2
        self._dropped(url, message, reason)

    def _dropped(self, url: str, message: Gossip, reason: str) -> None:
        self.metrics.gossip_sent.inc(result="dropped")
        self.log.warning("gossip_dropped", peer=url, orders=len(message.orders), reason=reason)

    async def drain(self, timeout_s: float) -> bool:
        """Wait until every queued gossip was delivered or dropped; True when drained."""
        try:
            async with asyncio.timeout(timeout_s):
                for queue in self._queues.values():
                    await queue.join()
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


__all__ = ["Gossiper"]
