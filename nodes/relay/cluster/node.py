"""A relay instance's part in its cluster: what it accepts goes to the others, what they accepted
comes into its book, and the holder of the matcher lease matches and follows the chain for all.

    node = ClusterNode(config.cluster, config.store, relay_parts, log)
    await node.connect()        # the stream, the lease handle, the stream's position
    book.load()                 # the shared store, read after the position was taken
    node.start(stop)            # follow the stream; take the lease when it is free

* **Orders.** Admission is unchanged; the orders it lets in are stored and rest in this
  instance's book (matched, on the leader) in one step that does not yield, then
  :meth:`ClusterNode.publish_accepted` publishes them (``OrderAccepted``, the orders evicted for
  them first as ``OrderEvicted``) and awaits the stream's ack before the client is answered. If
  the stream does not take them, they are withdrawn again (their rows deleted) and the request
  is refused with 503: a client is answered ``accepted`` only for an order both stored and on
  the stream. Every instance's follower applies the others' orders to its book
  (:meth:`~nodes.relay.book.RelayBook.apply_order`); its own are in it already (by hash).
* **Expiries** are not events: every instance reads the chain's head timestamp (its clock) and
  expires by it, as the leader does.
* **One leader.** The instance holding the matcher lease (:mod:`nodes.relay.leader`) runs the
  matcher and the chain watch; the chain watch publishes what it reads before storing it, the
  matcher publishes each fill's progress (``FillChanged``), and the others apply both. The lease
  is renewed every third of its TTL; on LeaseLost, or once it cannot be renewed before it
  expires (:meth:`~nodes.relay.leader.Held.valid`, checked before each batch is written), the
  instance stops matching at once and goes back to following.
* **Takeover.** A new leader first reads the chain up to its head from the shared cursor (every
  lease that landed is counted, settling the fills it matches), then settles its predecessors'
  work: their fills still pending in its book did not land, and are released; their open
  intents are finished (``opened`` when the chain settled them, else ``abandoned``). Only then
  does it match and send. Before it reads the chain it waits until the matcher account (the
  cluster's one key) has no transaction pending, so a predecessor's last transaction is mined or
  dropped first (at most ``PENDING_WAIT_S``).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, Final

from market.chain.client import MarketClient
from market.errors import OrderError, RpcUnavailable
from market.matching import VerifiedOrder
from market.protocol.eip712 import order_hash
from market.protocol.types import Offer, OrderHash, OrderState
from nodes.errors import LeaseLost, StoreError, StreamError, StreamUnavailable
from nodes.logs import EventLogger
from nodes.relay.auctioneer import Auctioneer
from nodes.relay.book import RelayBook
from nodes.relay.chainwatch import Batch, ChainWatch
from nodes.relay.cluster.events import (
    ChainRewound,
    ClusterEvent,
    FillChanged,
    LeaseOpened,
    NonceFloorRaised,
    OrderAccepted,
    OrderCancelled,
    OrderEvicted,
    check_order_hash,
)
from nodes.relay.cluster.jetstream import ClusterStream, Follower
from nodes.relay.config import ClusterConfig
from nodes.relay.leader import MatcherLease
from nodes.relay.matcher import Matcher
from nodes.relay.metrics import RelayMetrics
from nodes.relay.store import ChainLease, FillOutcome, Store
from nodes.wire import FillStatus

PENDING_WAIT_S: Final = 60.0
"""How long a new leader waits for its predecessors' transactions to be mined or dropped."""
PENDING_POLL_S: Final = 1.0


@dataclass
class Parts:
    """The relay's parts a cluster node drives."""

    book: RelayBook
    store: Store
    watch: ChainWatch
    metrics: RelayMetrics
    matcher_client: Callable[[], MarketClient] | None
    """Connects the matcher key's client (anew at each takeover: the account's nonce is read
    then, after the previous leader's transactions); None: this instance never leads."""
    max_batch: int
    auction_interval_s: float | None
    """Seconds between auctions when matching by auction; None: continuous."""
    fill_window_s: float
    """How long the first fill queued waits for others to share its transaction."""


class ClusterNode:
    def __init__(
        self, config: ClusterConfig, store_url: str, parts: Parts, log: EventLogger
    ) -> None:
        self.config = config
        self.store_url = store_url
        self.parts = parts
        self.book = parts.book
        self.log = log.bind(cluster=config.name, instance=config.instance)
        self.stream: ClusterStream | None = None
        self.lease: MatcherLease | None = None
        self.follower: Follower | None = None
        self.position = 0
        self.term: int | None = None
        """The matcher lease's term while this instance leads."""
        self.leaderships = 0
        self.matcher: Matcher | None = None
        self._own_intents: set[int] = set()
        self._own_tokens: set[bytes] = set()  # of the reorganisations this instance published
        self._term_stop = asyncio.Event()
        self._term_tasks: list[asyncio.Task[None]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._providers: set[str] = set()
        self._rematch: asyncio.Event = asyncio.Event()
        self.book.seen_leases = set()

    @property
    def leading(self) -> bool:
        return self.term is not None

    # --- start, stop -----------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect to the stream and take its position: call before the book is loaded from
        the store, so that whatever is stored after that position is also followed."""
        cfg = self.config
        self.stream = await ClusterStream.connect(
            cfg.nats_url, cfg.name, publish_timeout_s=cfg.publish_timeout_s, log=self.log
        )
        self.position = await self.stream.last_sequence()
        if self.parts.matcher_client is not None:
            self.lease = await asyncio.to_thread(
                MatcherLease.open, self.store_url, cfg.instance, cfg.lease_ttl_s
            )

    def start(self, stop: asyncio.Event) -> None:
        """Follow the stream, keep the clock, and (with a matcher key) run for the lease."""
        assert self.stream is not None
        self.follower = self.stream.follow(self.position, self._apply, skip=self._known)
        self._tasks = [
            asyncio.create_task(self._follow(stop), name="cluster-follow"),
            asyncio.create_task(self._clock(stop), name="cluster-clock"),
            asyncio.create_task(self._refresh(stop), name="cluster-refresh"),
        ]
        if self.lease is not None:
            self._tasks.append(asyncio.create_task(self._run_lease(stop), name="cluster-lease"))

    async def drain(self, timeout_s: float) -> bool:
        """Send the fills queued (a leader), then give the lease up for the next instance."""
        drained = await self.matcher.drain(timeout_s) if self.matcher is not None else True
        await self._step_down("stopping")
        if self.lease is not None:
            with contextlib.suppress(StoreError):
                await asyncio.to_thread(self.lease.release)
        return drained

    async def close(self) -> None:
        await self._stop_term()
        await _cancel(self._tasks)
        await _cancel(list(self._background))
        if self.lease is not None:
            await asyncio.to_thread(self.lease.close)
        if self.stream is not None:
            await self.stream.close()

    # --- orders ----------------------------------------------------------------------------

    async def publish_accepted(self, orders: list[VerifiedOrder], evicted: list[bytes]) -> None:
        """Publish what admission just let in (stored, resting here), the ack awaited; if the
        stream does not take it, withdraw the orders and raise StreamUnavailable."""
        assert self.stream is not None
        first = orders[0].hash if orders else bytes(32)
        events: list[ClusterEvent] = [OrderEvicted(h, first) for h in evicted]
        events += [OrderAccepted(o.hash, o.signed) for o in orders]
        try:
            await self.stream.publish_all(events)
        except StreamUnavailable:
            self.book.withdraw(o.hash for o in orders)
            self.log.warning("orders_withdrawn", orders=len(orders), evicted=len(evicted))
            raise

    # --- following the others --------------------------------------------------------------

    def applied(self) -> int:
        """The last stream sequence this instance applied (or passed over, holding it)."""
        return self.follower.position if self.follower is not None else self.position

    def _known(self, message_id: str) -> bool:
        """An accepted order this book holds already (its own, mostly): not decoded again."""
        if not message_id.startswith("0x") or len(message_id) != 66:
            return False
        return self.book.holds(bytes.fromhex(message_id[2:]))

    def _apply(self, seq: int, event: ClusterEvent) -> None:
        book = self.book
        if isinstance(event, OrderAccepted):
            signed = event.order
            check_order_hash(event, order_hash(book.domain, signed.message))
            order = VerifiedOrder.unsafe_from_trusted_store(signed, OrderHash(event.order_hash))
            if book.apply_order(order):
                if isinstance(signed.message, Offer):
                    self._providers.add(signed.message.provider)
                if self.leading:
                    self._rematch.set()
        elif isinstance(event, OrderEvicted):
            book.withdraw([event.order_hash])
        elif isinstance(event, FillChanged):
            if event.intent not in self._own_intents and not self.leading:
                book.remote_fill(event)
        elif isinstance(event, ChainRewound):
            if event.token not in self._own_tokens:  # a predecessor's, even once this leads
                self._rewind(event.fork)
        else:  # the leader's own come back too: leases count once by id, the rest is idempotent
            self._apply_chain(event)
        self.position = seq

    def _apply_chain(self, event: LeaseOpened | OrderCancelled | NonceFloorRaised) -> None:
        if isinstance(event, LeaseOpened):
            lease = ChainLease(
                event.lease_id, event.offer_hash, event.bid_hash, event.gpus, event.block_number
            )
            self.book.apply_chain([lease], [], [])
        elif isinstance(event, OrderCancelled):
            self.book.apply_chain([], [event.order_hash], [])
        else:
            self.book.apply_chain([], [], [(event.signer, event.min_nonce)])

    def _rewind(self, fork: int) -> None:
        """The leader found blocks from ``fork`` on replaced: count only the leases before it,
        as the shared store holds them (the leader rewinds it right after publishing)."""
        kept = [lease for lease in self.parts.store.leases() if lease.block < fork]
        filled: dict[bytes, int] = {}
        for lease in kept:
            for h in (lease.offer_hash, lease.bid_hash):
                filled[h] = filled.get(h, 0) + lease.gpus
        self.book.seen_leases = {lease.lease_id for lease in kept}
        states = {
            h: OrderState(filled=filled.get(h, 0), cancelled=False) for _, h in self.book.resting()
        }
        touched = self.book.resync(filled, states)
        self.log.warning("chain_rewound", fork=fork, orders=len(touched))

    async def _follow(self, stop: asyncio.Event) -> None:
        assert self.follower is not None
        while not stop.is_set():
            try:
                await self.follower.run(stop)
            except (StreamError, OrderError, StoreError) as exc:
                # A gap (retention trimmed what this instance had not read) or an event this
                # book refuses: follow on from the stream's end, and say so loudly.
                self.log.error("stream_follow_failed", position=self.position, error=repr(exc))
                await _wait(stop, 1.0)
                if self.follower.position == self.position and isinstance(exc, StreamError):
                    with contextlib.suppress(StreamError):
                        assert self.stream is not None
                        self.follower.position = await self.stream.last_sequence()

    async def _clock(self, stop: asyncio.Event) -> None:
        """Expire orders by the chain's clock (every instance reads the head; the leader's
        chain watch does so as it polls)."""
        watch = self.parts.watch
        while not stop.is_set():
            if not self.leading:
                try:
                    await watch.read_clock()
                    watch.health.reached()  # /healthz: a follower reads the chain too
                    self.book.expire()
                except RpcUnavailable as exc:
                    watch.health.unreachable(f"{exc.url}: {exc.reason}")
                    self.log.warning("chain_unavailable", url=exc.url, reason=exc.reason)
                except StoreError as exc:
                    self.log.warning("store_unavailable", error=str(exc))
            await _wait(stop, max(watch.poll_s, 0.2))

    async def _refresh(self, stop: asyncio.Event) -> None:
        """Read the stakes of the providers whose offers came from the stream, and (a leader)
        match what came in, coalesced."""
        while not stop.is_set():
            await _wait(stop, 0.02)
            providers, self._providers = self._providers, set()
            if providers:
                try:
                    await self.book.stakes.ensure(providers)
                except RpcUnavailable:
                    self._providers |= providers
                    continue
                if self.leading:
                    self._rematch.set()
            if self._rematch.is_set() and self.leading:
                self._rematch.clear()
                self.book.rematch()

    # --- the matcher lease -----------------------------------------------------------------

    async def _run_lease(self, stop: asyncio.Event) -> None:
        assert self.lease is not None
        lease = self.lease
        every = self.config.lease_ttl_s / 3
        while not stop.is_set():
            try:
                if self.term is None:
                    held = await asyncio.to_thread(lease.acquire)
                    if held is not None:
                        await self._lead(held.term)
                else:
                    await asyncio.to_thread(lease.renew)
                    self._rematch.set()  # a safety net: fills released while the store was away
            except LeaseLost as exc:
                await self._step_down("lease_lost", current_term=exc.current_term)
            except StoreError as exc:
                self.log.warning("lease_unavailable", error=str(exc))
                if self.term is not None and (lease.held is None or not lease.held.valid()):
                    await self._step_down("lease_expired")
            await _wait(stop, every)

    def _held_term(self) -> int:
        """The term held now; LeaseLost once the lease may have expired (stop at once)."""
        assert self.lease is not None
        held = self.lease.held
        if self.term is None or held is None or held.term != self.term or not held.valid():
            raise LeaseLost(self.config.instance, self.term or 0, None)
        return held.term

    async def _lead(self, term: int) -> None:
        """Take over under ``term``: read the chain, settle the predecessors' fills, match."""
        parts, book = self.parts, self.book
        assert parts.matcher_client is not None
        self.log.info("lease_acquired", term=term)
        self.term = term
        self.leaderships += 1
        watch = parts.watch
        stored = parts.store.next_block()
        if stored is not None:
            watch.next_block = stored
        pending = book.remote_fills()
        watch.publish = self._publish_chain
        watch.rewound = self._publish_rewound
        try:
            client = await asyncio.to_thread(parts.matcher_client)
            await self._await_mined(client, term)
            await watch.poll()  # every lease that landed: counted, its fill settled
        except (RpcUnavailable, StreamUnavailable, StoreError, LeaseLost) as exc:
            self.log.warning("takeover_deferred", term=term, error=repr(exc))
            await self._give_up("takeover_failed")
            return
        still = book.remote_fills()
        for intent in still:
            book.release_remote(intent)  # not landed: the GPUs are free again
        intents = parts.store.open_intents(before_term=term)
        landed = set(pending) - set(still)
        parts.store.finish_fills(
            FillOutcome(i.fill_id, "opened" if i.fill_id in landed else "abandoned")
            for i in intents
        )
        # Every follower lets go of what the predecessors took and did not open (a follower may
        # hold a fill this instance never saw pending).
        self._tell(
            [
                FillChanged(
                    i.fill_id,
                    i.offer_hash,
                    i.bid_hash,
                    i.gpus,
                    FillStatus.FAILED,
                    error="abandoned",
                )
                for i in intents
                if i.fill_id not in landed
            ]
        )
        self.log.info(
            "takeover_settled",
            term=term,
            intents=len(intents),
            landed=len(landed),
            released=len(still),
        )
        book.on_fills = lambda fills, price: None
        self.matcher = Matcher(
            client,
            book,
            parts.store,
            parts.metrics,
            self.log,
            max_batch=parts.max_batch,
            fill_window_s=parts.fill_window_s,
            term=self._held_term,
            tell=self._tell,
        )
        self._term_stop = asyncio.Event()
        self._term_tasks = [
            asyncio.create_task(self.matcher.run(), name="matcher"),
            asyncio.create_task(watch.run(self._term_stop), name="chainwatch"),
        ]
        for task in self._term_tasks:
            task.add_done_callback(self._task_ended)
        if parts.auction_interval_s is None:
            book.matching = True
            book.rematch()
        else:
            auctioneer = Auctioneer(book, parts.auction_interval_s, self.log)
            self._term_tasks.append(
                asyncio.create_task(auctioneer.run(self._term_stop), name="auction")
            )

    async def _await_mined(self, client: MarketClient, term: int) -> None:
        """Wait (renewing the lease) until the matcher account has no transaction pending, so
        that whatever a predecessor sent is mined or dropped before the chain is read; after
        PENDING_WAIT_S, go on and say so (the chain still refuses to overfill an order)."""
        assert self.lease is not None
        tx = client.transactor
        deadline = time.monotonic() + PENDING_WAIT_S
        while True:
            pending = await asyncio.to_thread(tx.resync_nonce)
            mined = await asyncio.to_thread(tx.mined_nonce)
            if mined >= pending:
                return
            if time.monotonic() > deadline:
                self.log.warning(
                    "takeover_pending_transactions", term=term, pending=pending - mined
                )
                return
            await asyncio.to_thread(self.lease.renew)
            await asyncio.sleep(PENDING_POLL_S)  # waiting on the chain's mempool

    def _task_ended(self, task: asyncio.Task[None]) -> None:
        """A leader's task that ends by itself failed: give the lease up, so that another
        instance (or this one, afresh) takes over instead of a leader that no longer matches."""
        if task.cancelled() or self.term is None:
            return
        exc = task.exception()
        self.log.error("leader_task_failed", task=task.get_name(), error=repr(exc))
        self._spawn(self._give_up(f"{task.get_name()}_failed"))

    async def _give_up(self, why: str) -> None:
        await self._step_down(why)
        if self.lease is not None:
            with contextlib.suppress(StoreError):
                await asyncio.to_thread(self.lease.release)

    async def _step_down(self, why: str, **fields: object) -> None:
        if self.term is None:
            return
        self.log.warning("lease_given_up", term=self.term, why=why, **fields)
        self.term = None
        self.book.matching = False
        await self._stop_term()

    async def _stop_term(self) -> None:
        self._term_stop.set()
        matcher, self.matcher = self.matcher, None
        await _cancel(self._term_tasks)
        self._term_tasks = []
        self.parts.watch.publish = None
        self.parts.watch.rewound = None
        self.book.on_fills = lambda fills, price: None
        if matcher is not None:  # queued, never sent: back to the book
            matcher.abandon_queued()

    # --- publishing what the leader did ----------------------------------------------------

    async def _publish_chain(self, batch: Batch, head: int) -> None:
        assert self.stream is not None
        events: list[ClusterEvent] = [
            LeaseOpened(lease.lease_id, lease.offer_hash, lease.bid_hash, lease.gpus, lease.block)
            for lease, _ in batch.leases
        ]
        events += [OrderCancelled(h, head) for h in batch.cancelled]
        events += [NonceFloorRaised(signer, floor, head) for signer, floor in batch.floors]
        await self.stream.publish_all(events)

    async def _publish_rewound(self, fork: int) -> None:
        assert self.stream is not None
        token = secrets.token_bytes(32)
        self._own_tokens.add(token)
        await self.stream.publish(ChainRewound(fork, token))

    def _tell(self, events: list[FillChanged]) -> None:
        if not events:
            return
        self._own_intents.update(e.intent for e in events)
        self._spawn(self._publish_fills(events))

    async def _publish_fills(self, events: list[FillChanged]) -> None:
        assert self.stream is not None
        for attempt in range(5):
            try:
                await self.stream.publish_all(events)
                return
            except StreamUnavailable as exc:
                self.log.warning("fills_unpublished", attempt=attempt, error=exc.reason)
                await asyncio.sleep(0.2 * 2**attempt)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


async def _cancel(tasks: Iterable[asyncio.Task[Any]]) -> None:
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


__all__ = ["ClusterNode", "Parts"]
