"""Sending the matcher's fills to the chain in batches, idempotently.

Fills queue as lots (:mod:`nodes.relay.batches`: an all-or-none bid's cluster is one lot, never
split); each round takes what has queued since the last transaction, up to a bound, and opens it
in one ``openLeaseBatch`` (or ``openLeaseAuction`` at a clearing's price). The first fill queued
waits ``fill_window_s`` (default :data:`FILL_WINDOW_S`) for others to share its transaction, less
when a whole batch queues meanwhile, and fills matched while a transaction is out go in the next:
a transaction's fixed costs (21,000 gas, its requests, their CPU) are shared by its leases.

Every fill of a batch is written to the store as an intent (one SQLite transaction) before the
transaction is signed, and its outcome after: opened (the lease id), failed (the contract error,
decoded) or unknown (the endpoint went away or no receipt came in time). The book's filled counts
come only from LeaseOpened events, so a fill whose outcome is unknown, or an intent left by a
crash, can never be counted twice: the chain watcher settles it if it landed, and the GPUs are free
again if it did not (the contract itself refuses to fill an order beyond its size). Intents found
on start are marked ``abandoned`` and never sent again.

In a relay cluster the matcher runs on the matcher lease's holder only (``term``: the term held,
LeaseLost once it is not), and its intents are written under that term, fenced by the database:
a matcher deposed meanwhile writes nothing and sends nothing, and its fills go back to the book.
Each fill's progress goes to the other instances (``tell``: pending with its intent id, then
opened or failed).

A batch is atomic: one bad match reverts it (the transactor's gas estimate raises the error before
anything is signed; a batch mined and reverted raises it from the receipt). The culprits are found
without sending anything: when the error names an order or a provider (an order expired or
cancelled, a provider under-staked: :func:`nodes.relay.reverts.names`), the lots that hold it fail
with it; otherwise each lot is estimated alone (an ``eth_estimateGas``, no transaction) and those
that revert fail with their own error. Either way the book learns from the error
(:mod:`nodes.relay.reverts`: an expired order moves the relay's clock past its expiry, so no order
expired by then is matched again), and the rest is sent again as a batch. When every lot passes
alone but the batch does not (a lab that can pay for each lease but not all of them), the batch is
halved until the failing lot is alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence

from market.chain.client import MarketClient
from market.errors import (
    MarketError,
    NonceUsed,
    RpcUnavailable,
    TransactionReverted,
    TransactionTimeout,
)
from market.matching import Fill
from market.protocol.types import Lease
from nodes.errors import LeaseLost, StoreUnavailable
from nodes.logs import EventLogger
from nodes.relay.batches import (
    FILL_WINDOW_S,
    MAX_BATCH_MATCHES,
    Lot,
    lots_of,
    matches,
    ordered,
    take_batch,
)
from nodes.relay.book import RelayBook
from nodes.relay.cluster.events import FillChanged
from nodes.relay.metrics import RelayMetrics
from nodes.relay.reverts import names
from nodes.relay.store import NO_TERM, FillOutcome, Store
from nodes.wire import FillStatus

_Sent = tuple[Lot, tuple[int, ...]]  # a lot and its fills' intent ids


class Matcher:
    def __init__(
        self,
        client: MarketClient,
        book: RelayBook,
        store: Store,
        metrics: RelayMetrics,
        log: EventLogger,
        *,
        max_batch: int = MAX_BATCH_MATCHES,
        fill_window_s: float = FILL_WINDOW_S,
        term: Callable[[], int] | None = None,
        tell: Callable[[list[FillChanged]], None] | None = None,
    ) -> None:
        self.term = term
        """A cluster's: the matcher lease's term held now (LeaseLost when none is)."""
        self.tell = tell
        """A cluster's: hands each fill's progress to the other instances."""
        self.client = client
        self.book = book
        self.store = store
        self.metrics = metrics
        self.log = log.bind(matcher=client.address)
        self.log_holder = client.address
        self.max_batch = max_batch
        self.fill_window_s = fill_window_s
        """How long the first fill queued waits for others to share its transaction."""
        self._lots: deque[Lot] = deque()
        self._queued = asyncio.Event()
        self._full = asyncio.Event()  # a whole batch is queued: the window closes early
        self._idle = asyncio.Event()
        self._idle.set()
        self._released = False  # a fill of the batch being sent failed
        book.on_fills = self.enqueue

    def reconcile(self) -> int:
        """Mark intents a previous run left without an outcome; the chain decides their fate."""
        left = self.store.fills("intent")
        self.store.finish_fills(FillOutcome(fill_id, "abandoned") for fill_id, *_ in left)
        for _, offer_hash, bid_hash, gpus, _ in left:
            self.log.warning("fill_abandoned", offer=offer_hash, bid=bid_hash, gpus=gpus)
        return len(left)

    def enqueue(self, fills: list[Fill], clearing_price: int | None = None) -> None:
        lots = lots_of(fills, clearing_price)
        if lots:
            self._lots.extend(lots)
            self._idle.clear()
            self._queued.set()
            if sum(len(lot.fills) for lot in self._lots) >= self.max_batch:
                self._full.set()

    async def run(self) -> None:
        while True:
            await self._queued.wait()
            await self._gather()
            if not self._lots:  # given back during the window (abandon_queued)
                continue
            batch = take_batch(self._lots, self.max_batch)
            if not self._lots:
                self._queued.clear()
            try:
                await self._send(batch)
            finally:
                if not self._lots:
                    self._idle.set()

    async def _gather(self) -> None:
        """Let the fills matched in the next ``fill_window_s`` join the queued ones in one
        transaction, unless a whole batch is queued already: a transaction's fixed costs (its
        gas, its requests and their CPU) are then shared by its leases. On a chain whose blocks
        take seconds the previous transaction's wait gathers them anyway; this matters on one
        that mines at once (a devnet, a fast rollup)."""
        if self.fill_window_s <= 0 or self._full.is_set():
            self._full.clear()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._full.wait(), self.fill_window_s)
        self._full.clear()

    def abandon_queued(self) -> None:
        """Give the fills queued and not yet sent back to the book (a cluster's leader that
        lost the matcher lease): the next leader matches them again."""
        lots, self._lots = list(self._lots), deque()
        self._queued.clear()
        self._idle.set()
        lost = LeaseLost(self.log_holder, 0, None)
        for lot in lots:
            for fill in lot.fills:
                self.book.fill_failed(fill, lost)

    async def drain(self, timeout_s: float) -> bool:
        """Wait until every queued fill has been sent (or ``timeout_s``); True when drained."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    # --- one batch -----------------------------------------------------------------------------

    async def _send(self, lots: list[Lot]) -> None:
        fills = [fill for lot in lots for fill in lot.fills]
        pairs = [(f.offer_hash, f.bid_hash, f.gpus) for f in fills]
        try:
            term = self.term() if self.term is not None else NO_TERM
            recorded = self.store.record_intents(pairs, term=term)
        except (LeaseLost, StoreUnavailable) as exc:  # nothing written, nothing sent
            self.log.warning("fills_not_sent", fills=len(fills), error=type(exc).__name__)
            for fill in fills:
                self.book.fill_failed(fill, exc)
            return
        self._tell(recorded, fills, FillStatus.PENDING)
        ids = iter(recorded)
        sent = [(lot, tuple(next(ids) for _ in lot.fills)) for lot in lots]
        self.metrics.fills.inc(len(fills), status="submitted")
        self._released = False
        try:
            await self._open(sent)
        finally:
            if self._released:  # GPUs given back, orders dropped: match what rests again
                self.book.rematch()

    async def _open(self, sent: list[_Sent]) -> None:
        """Open ``sent`` in one transaction; on a revert, fail the lots that revert alone and
        open the rest (halving when no lot reverts alone)."""
        while sent:
            started = time.monotonic()
            fills, intent = _in_order(sent)
            price = sent[0][0].clearing_price
            try:
                leases = await asyncio.to_thread(self._transact, fills, price)
            except TransactionReverted as exc:
                if len(sent) == 1:
                    self._failed(sent[0], exc)
                    return
                named = [item for item in sent if any(names(f, exc) for f in item[0].fills)]
                for item in named:  # the error names an order or provider of these lots
                    self._failed(item, exc)
                if named:
                    sent = [item for item in sent if item not in named]
                    continue
                rest = await self._without_culprits(sent)
                if rest is None:
                    return
                sent = rest
                continue
            except (RpcUnavailable, TransactionTimeout) as exc:
                for lot in sent:
                    self._unknown(lot, exc)
                return
            except NonceUsed as exc:  # another sender of this key (a cluster's old leader)
                await asyncio.to_thread(self.client.transactor.resync_nonce)
                for lot in sent:
                    self._unknown(lot, exc)
                return
            self._opened(fills, intent, leases, time.monotonic() - started, price)
            return

    def _transact(self, fills: Sequence[Fill], clearing_price: int | None) -> list[Lease]:
        if clearing_price is None:
            return self.client.open_lease_batch(matches(fills))
        return self.client.open_lease_auction(matches(fills), clearing_price)

    async def _without_culprits(self, sent: list[_Sent]) -> list[_Sent] | None:
        """Estimate each lot alone; fail those that revert. Returns the others to send again, or
        None once they have been sent (in halves, when no lot reverts alone)."""
        keep: list[_Sent] = []
        for n, (lot, intent) in enumerate(sent):
            try:
                await asyncio.to_thread(
                    self.client.estimate_open_batch, matches(lot.fills), lot.clearing_price
                )
            except TransactionReverted as exc:
                self._failed((lot, intent), exc)
                continue
            except RpcUnavailable as exc:
                for item in keep + sent[n:]:
                    self._unknown(item, exc)
                return None
            keep.append((lot, intent))
        if len(keep) < len(sent):
            self.log.info("batch_culprits", lots=len(sent), failed=len(sent) - len(keep))
            return keep
        half = len(sent) // 2
        self.log.warning("batch_split", lots=len(sent))
        await self._open(sent[:half])
        await self._open(sent[half:])
        return None

    # --- outcomes ------------------------------------------------------------------------------

    def _tell(
        self,
        intents: Sequence[int],
        fills: Sequence[Fill],
        status: FillStatus,
        lease_ids: Sequence[bytes] | None = None,
        error: str = "",
    ) -> None:
        if self.tell is None:
            return
        zero = bytes(32)
        self.tell(
            [
                FillChanged(
                    i,
                    f.offer_hash,
                    f.bid_hash,
                    f.gpus,
                    status,
                    lease_ids[n] if lease_ids is not None else zero,
                    error,
                )
                for n, (i, f) in enumerate(zip(intents, fills, strict=True))
            ]
        )

    def _opened(
        self,
        fills: list[Fill],
        intent: list[int],
        leases: list[Lease],
        seconds: float,
        price: int | None,
    ) -> None:
        if len(leases) != len(fills):  # the contract emits one LeaseOpened per match
            raise MarketError(f"a batch of {len(fills)} matches opened {len(leases)} leases")
        self.store.finish_fills(
            FillOutcome(i, "opened", lease_id=lease.id)
            for i, lease in zip(intent, leases, strict=True)
        )
        self.metrics.fills.inc(len(fills), status="opened")
        self._tell(intent, fills, FillStatus.OPENED, [lease.id for lease in leases])
        self.log.info(
            "batch_opened",
            leases=len(leases),
            gpus=sum(f.gpus for f in fills),
            clearing_price=price,
            seconds=round(seconds, 3),
        )
        for fill, lease in zip(fills, leases, strict=True):
            self.log.info(
                "lease_opened", lease=lease.id, gpus=fill.gpus, price=lease.price_per_gpu_second
            )
        self.book.fills_opened((fill, lease.id) for fill, lease in zip(fills, leases, strict=True))

    def _failed(self, item: _Sent, exc: TransactionReverted) -> None:
        lot, intent = item
        name = type(exc).__name__
        self.store.finish_fills(FillOutcome(i, "failed", error=name) for i in intent)
        self.metrics.fills.inc(len(intent), status="failed")
        self._tell(intent, lot.fills, FillStatus.FAILED, error=name)
        for fill in lot.fills:
            self.log.warning("fill_failed", offer=fill.offer_hash, bid=fill.bid_hash, error=name)
            self.book.fill_failed(fill, exc)
        self._released = True

    def _unknown(self, item: _Sent, exc: RpcUnavailable | TransactionTimeout | NonceUsed) -> None:
        lot, intent = item
        name = type(exc).__name__
        self.store.finish_fills(FillOutcome(i, "unknown", error=name) for i in intent)
        self.metrics.fills.inc(len(intent), status="unknown")
        self._tell(intent, lot.fills, FillStatus.FAILED, error=name)
        for fill in lot.fills:
            self.log.warning("fill_unknown", offer=fill.offer_hash, bid=fill.bid_hash, error=name)
            self.book.fill_failed(fill, exc)


def _in_order(sent: list[_Sent]) -> tuple[list[Fill], list[int]]:
    """The batch's fills in sending order (:func:`nodes.relay.batches.ordered`) and their intent
    ids beside them."""
    by_fill = {id(f): i for lot, ids in sent for f, i in zip(lot.fills, ids, strict=True)}
    fills = ordered([lot for lot, _ in sent])
    return fills, [by_fill[id(f)] for f in fills]


__all__ = ["Matcher"]
