"""The relay's order book: market.matching's OrderBook kept durable, in step with the chain, and
observable. Every change of it goes through here, on the event loop thread.

GPUs the chain has filled (from LeaseOpened events) are the truth: the store keeps only those, so
a rebuilt book never counts a fill whose transaction did not land. Fills the relay's own matcher
took are *in flight* until the chain or the transaction's outcome settles or releases them,
whichever comes first; a LeaseOpened for the same pair and size settles the fill even when another
matcher opened it, which is exactly what the chain then holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import islice

from market.errors import DuplicateOrder, OrderError, OrderFilled, TransactionReverted
from market.matching import (
    Clearing,
    Explanation,
    Fill,
    OrderBook,
    Resting,
    Submission,
    VerifiedOrder,
    explain,
    run_auction,
)
from market.protocol.eip712 import Domain, order_hash
from market.protocol.types import Bid, Offer, OrderHash, OrderState
from nodes.relay.capacity import Capacity
from nodes.relay.cluster.events import FillChanged
from nodes.relay.reverts import chain_time_after, learn_from_revert
from nodes.relay.stakes import StakeCache
from nodes.relay.store import ChainLease, Store
from nodes.relay.stream import Hub
from nodes.wire import BookChange, BookEntry, BookSnapshot, FillStatus, Side
from nodes.wire import Fill as FillEvent

_Key = tuple[bytes, bytes, int]


class RelayBook:
    def __init__(
        self,
        domain: Domain,
        store: Store,
        stakes: StakeCache,
        hub: Hub,
        *,
        matching: bool,
        capacity: Capacity | None = None,
    ) -> None:
        self.domain = domain
        self.store = store
        self.stakes = stakes
        self.hub = hub
        self.matching = matching
        self.book = OrderBook(min_stake=stakes.min_stake, stake_of=stakes.stake_of)
        self.chain_time = 0
        self.filled: dict[bytes, int] = {}  # GPUs filled on-chain, per order hash
        self.on_fills: Callable[[list[Fill], int | None], None] = lambda fills, price: None
        """Where fills go to be sent, with the clearing price they pay (None: their offers')."""
        self._in_flight: dict[_Key, list[Fill]] = {}
        self._index: dict[bytes, tuple[str, Side, str]] = {}  # hash -> model, side, signer
        self.capacity = capacity if capacity is not None else Capacity(2**62, 2**62)
        """Orders per signer and in all (``nodes/relay/capacity.py``): follows ``_index``."""
        self._evicted: list[bytes] = []  # evicted, their rows deleted with the next accept
        self.seen_leases: set[bytes] | None = None
        """In a cluster (``nodes/relay/cluster/node.py``): the ids of the leases applied, so a
        lease learned both from the stream and from the chain counts once. None: a relay alone,
        whose chain watch applies each lease once."""
        self._remote: dict[int, Fill] = {}  # a cluster's fills by intent, taken by its matcher
        self._finished: set[int] = set()  # intents whose outcome came (a late pending ignored)

    # --- entry -------------------------------------------------------------------------------

    def load(self) -> int:
        """Rebuild the book from the store (stakes of its offers' providers read already).
        Orders that expired, were filled or cancelled meanwhile are dropped; eligibility is
        checked when matching, as it was before the restart. Returns how many orders rest."""
        if self.seen_leases is None:
            self.filled = self.store.filled_by_order()
        else:  # a cluster's: the leases counted, by id (the stream may bring some again)
            self.filled = {}
            for lease in self.store.leases():
                self.seen_leases.add(lease.lease_id)
                for h in (lease.offer_hash, lease.bid_hash):
                    self.filled[h] = self.filled.get(h, 0) + lease.gpus
        for h in self.store.cancelled():
            self.book.cancel(h)
        for signer, floor in self.store.nonce_floors().items():
            self.book.raise_nonce_floor(signer, floor)
        stake_of, self.book.stake_of = self.book.stake_of, None
        gone = []
        try:
            for h, sub in self.store.resting_orders():
                order = VerifiedOrder.unsafe_from_trusted_store(sub.signed, OrderHash(h))
                try:
                    self.book.add(order, self.chain_time, filled=self.filled.get(h, 0))
                except OrderError:
                    gone.append(h)
                    continue
                self._rest(h, _describe(order))
        finally:
            self.book.stake_of = stake_of
        self.store.mark_gone(gone)
        return len(self.book)

    def entry_error(self, order: VerifiedOrder, batch: set[bytes]) -> OrderError | None:
        """Why ``order`` may not enter the book now (``batch``: hashes accepted before it in the
        same request), or None."""
        if order.hash in batch:
            return DuplicateOrder(order.hash)
        try:
            self.book.check(order, self.chain_time)
        except OrderError as exc:
            return exc
        size = order.signed.message.gpu_count
        if self.filled.get(order.hash, 0) >= size:
            return OrderFilled(order.hash, size)
        return None

    def evict(self, order_hash: bytes) -> bool:
        """Take a resting order out to make room for another (``nodes/relay/capacity.py``); its
        row goes with the next :meth:`accept`. An order with GPUs pending in a fill stays."""
        described = self._index.get(order_hash)
        if described is None or not self.book.evict(order_hash):
            return False
        self._unrest(order_hash)
        self._evicted.append(order_hash)
        self.hub.publish(BookChange(order_hash, described[0], described[1], 0))
        return True

    def evictable(self, order_hash: bytes) -> bool:
        entry = self.book.get(order_hash)
        return entry is not None and entry.pending == 0

    def accept(self, orders: list[VerifiedOrder]) -> list[bytes]:
        """Keep, then rest (and with matching on, match) orders that passed :meth:`entry_error`,
        forgetting the orders evicted for them in the same transaction. Returns the hashes of
        the orders evicted for them."""
        evicted, self._evicted = self._evicted, []
        if not orders and not evicted:
            return evicted
        self.store.add_orders(((o.hash, _submission(o)) for o in orders), evicted)
        for order in orders:
            filled = self.filled.get(order.hash, 0)
            self._rest(order.hash, _describe(order))
            if self.matching:
                fills = self.book.submit(order, self.chain_time, filled=filled)
            else:
                self.book.add(order, self.chain_time, filled=filled)
                fills = []
            self._changed([order.hash])
            self._take(fills)
        return evicted

    # --- what another instance of the cluster did (nodes/relay/cluster/node.py) -------------

    def apply_order(self, order: VerifiedOrder) -> bool:
        """Rest an order another instance accepted and stored (its signature checked there):
        not matched here (the leader matches it with :meth:`rematch`). An order already in the
        book, or one that cannot enter it any more (filled, cancelled, expired), changes
        nothing; returns whether it entered."""
        h = order.hash
        if h in self._index or h in self.book:
            return False
        stake_of, self.book.stake_of = self.book.stake_of, None  # eligibility: at matching
        try:
            self.book.add(order, self.chain_time, filled=self.filled.get(h, 0))
        except OrderError:
            return False
        finally:
            self.book.stake_of = stake_of
        self._rest(h, _describe(order))
        self._changed([h])
        return True

    def holds(self, order_hash: bytes) -> bool:
        """Whether the order rests here (accepted here, loaded, or applied already)."""
        return order_hash in self._index

    def withdraw(self, hashes: Iterable[bytes]) -> None:
        """Take these orders out as evictions do (no mark left, their rows deleted): another
        instance evicted them, or their acceptance could not be published. An order with GPUs
        pending in a fill stays (the fill decides)."""
        gone = []
        for h in hashes:
            described = self._index.get(h)
            if described is None or not self.book.evict(h):
                continue
            self._unrest(h)
            gone.append(h)
            self.hub.publish(BookChange(h, described[0], described[1], 0))
        if gone:
            self.store.mark_gone(gone)

    def remote_fill(self, event: FillChanged) -> None:
        """The cluster's matcher (another instance) took a fill (``pending``), then opened it
        or failed: reserve, then settle or release the GPUs here as that matcher's book did."""
        offer_hash, bid_hash, gpus = event.offer_hash, event.bid_hash, event.gpus
        if event.status is FillStatus.PENDING:
            offer, bid = self.book.get(offer_hash), self.book.get(bid_hash)
            if event.intent in self._remote or event.intent in self._finished:
                return
            if offer is None or bid is None:
                return
            if not 0 < gpus <= min(offer.remaining, bid.remaining):
                return
            taken = self.book.reserve(offer, bid, gpus)
            self._remote[event.intent] = taken
            self._in_flight.setdefault(_key(taken), []).append(taken)
        else:
            self._finished.add(event.intent)
            gone = self._remote.pop(event.intent, None)
            if gone is not None and self._pop(gone):
                if event.status is FillStatus.OPENED:
                    self.book.settle(gone)
                else:
                    self.book.release(gone)
        self.hub.publish(
            FillEvent(offer_hash, bid_hash, gpus, event.status, event.lease_id, event.error)
        )
        self._changed([offer_hash, bid_hash])

    def remote_fills(self) -> dict[int, Fill]:
        """The fills another instance's matcher took that are still pending here, by intent."""
        return {i: f for i, f in self._remote.items() if f in self._in_flight.get(_key(f), [])}

    def release_remote(self, intent: int) -> None:
        """A fill of an earlier matcher that the chain did not open: its GPUs are free again."""
        taken = self._remote.pop(intent, None)
        if taken is not None and self._pop(taken):
            self.book.release(taken)
            self._changed([taken.offer_hash, taken.bid_hash])

    # --- fills ---------------------------------------------------------------------------------

    def _take(self, fills: list[Fill], clearing_price: int | None = None) -> None:
        for fill in fills:
            self._in_flight.setdefault(_key(fill), []).append(fill)
            self.hub.publish(
                FillEvent(fill.offer_hash, fill.bid_hash, fill.gpus, FillStatus.PENDING)
            )
            self._changed([fill.offer_hash, fill.bid_hash])
        if fills:
            self.on_fills(fills, clearing_price)

    def _pop(self, fill: Fill) -> bool:
        waiting = self._in_flight.get(_key(fill), [])
        if fill not in waiting:
            return False
        waiting.remove(fill)
        if not waiting:
            del self._in_flight[_key(fill)]
        return True

    def fills_opened(self, opened: Iterable[tuple[Fill, bytes]]) -> None:
        """Leases opened for these fills (with their ids): settle them in the book."""
        opened = list(opened)
        touched: list[bytes] = []
        for fill, _ in opened:
            if self._pop(fill):
                self.book.settle(fill)
                touched += [fill.offer_hash, fill.bid_hash]
        self._changed(touched)
        for fill, lease_id in opened:
            self.hub.publish(
                FillEvent(fill.offer_hash, fill.bid_hash, fill.gpus, FillStatus.OPENED, lease_id)
            )

    def fill_failed(self, fill: Fill, error: Exception) -> None:
        """The transaction did not open the lease: give the GPUs back, and take the chain's word
        so the same pair is not tried again in vain."""
        if self._pop(fill):
            self.book.release(fill)
            if isinstance(error, TransactionReverted):
                learn_from_revert(self.book, self.stakes, fill, error)
                # An expired order proves the chain's clock: take it, so that no order expired
                # by then is matched again before the next block is read.
                self.chain_time = max(self.chain_time, chain_time_after(error) or 0)
            self._changed([fill.offer_hash, fill.bid_hash])
        self.hub.publish(
            FillEvent(
                fill.offer_hash, fill.bid_hash, fill.gpus, FillStatus.FAILED, error=str(error)
            )
        )

    # --- what the chain says -------------------------------------------------------------------

    def apply_chain(
        self,
        leases: Iterable[ChainLease],
        cancelled: Iterable[bytes],
        floors: Iterable[tuple[str, int]],
    ) -> None:
        touched: list[bytes] = []
        seen = self.seen_leases
        for lease in leases:
            if seen is not None:
                if lease.lease_id in seen:
                    continue  # learned already, from the stream or the chain
                seen.add(lease.lease_id)
            for h in (lease.offer_hash, lease.bid_hash):
                self.filled[h] = self.filled.get(h, 0) + lease.gpus
                touched.append(h)
            mine = next(
                (
                    f
                    for f in self._in_flight.get((lease.offer_hash, lease.bid_hash, lease.gpus), [])
                ),
                None,
            )
            if mine is not None and self._pop(mine):
                self.book.settle(mine)
            for h in (lease.offer_hash, lease.bid_hash):
                self.book.sync_filled(h, self.filled[h])
        for h in cancelled:
            self.book.cancel(h)
            touched.append(h)
        for signer, floor in floors:
            self.book.raise_nonce_floor(signer, floor)
            touched += [h for h, (_, _, s) in self._index.items() if s == signer]
        self._changed(touched)

    def resync(self, filled: dict[bytes, int], chain: dict[bytes, OrderState]) -> list[bytes]:
        """After a reorganisation: ``filled`` (GPUs filled per order hash, from the leases the
        store still holds) becomes the book's count, and each resting order takes the chain's
        ``chain`` state (read at the fork), its fills in flight kept pending. Returns the orders
        whose remaining GPUs changed."""
        self.filled = dict(filled)
        touched = []
        for h, state in chain.items():
            entry = self.book.get(h)
            if entry is None:
                continue
            before = entry.remaining
            self.filled[h] = state.filled
            if state.cancelled:
                self.book.cancel(h)
            else:
                self.book.reset_filled(h, state.filled)
            after = self.book.get(h)
            if after is None or after.remaining != before:
                touched.append(h)
        self._changed(touched)
        return touched

    def resting(self) -> list[tuple[str, bytes]]:
        """Every resting order's signer and hash."""
        return [(signer, h) for h, (_, _, signer) in self._index.items()]

    def expire(self) -> None:
        self._changed(self.book.expire(self.chain_time))

    def rematch(self) -> None:
        """Match what rests again (after stakes changed or fills were released)."""
        if self.matching and self._may_cross():
            self._take(self.book.match_all(self.chain_time))

    def _may_cross(self) -> bool:
        """Whether some model's dearest resting bid reaches its cheapest resting offer. A match
        needs that first, so when no model's does, matching everything again finds nothing (and
        walking every bid of a large book is the relay's dearest chore)."""
        for model in self.book.models():
            bid, offer = self.book.best_bid_price(model), self.book.best_offer_price(model)
            if bid is not None and offer is not None and bid >= offer:
                return True
        return False

    def auction(self) -> list[Clearing]:
        """Clear every GPU model at its uniform price now (``market.matching.run_auction``); each
        clearing's fills go to be sent at its price."""
        clearings = run_auction(self.book, self.chain_time)
        for clearing in clearings:
            self._take(list(clearing.fills), clearing.price)
        return clearings

    # --- observing -----------------------------------------------------------------------------

    def _changed(self, hashes: Iterable[bytes]) -> None:
        gone = []
        for h in dict.fromkeys(hashes):
            described = self._index.get(h)
            if described is None:
                continue
            entry = self.book.get(h)
            remaining = max(entry.remaining, 0) if entry is not None else 0
            self.hub.publish(BookChange(h, described[0], described[1], remaining))
            if entry is None:
                gone.append(h)
                self._unrest(h)
        if gone:
            self.store.mark_gone(gone)

    def _rest(self, h: bytes, described: tuple[str, Side, str]) -> None:
        self._index[h] = described
        self.capacity.add(h, described[2])

    def _unrest(self, h: bytes) -> None:
        del self._index[h]
        self.capacity.remove(h)

    def snapshot(self, model: str, depth: int) -> BookSnapshot:
        """Up to ``depth`` live orders of each side of ``model`` with GPUs left, best first."""
        now = self.chain_time

        def entries(resting: Iterator[Resting]) -> tuple[BookEntry, ...]:
            return tuple(
                BookEntry(_submission(e.order), e.remaining) for e in islice(resting, depth)
            )

        return BookSnapshot(
            model, now, entries(self.book.offers(model, now)), entries(self.book.bids(model, now))
        )

    def explain(self, order: Offer | Bid) -> Explanation:
        """market.matching.explain against this book, now (a resting order explains itself)."""
        return explain(self.book, order, self.chain_time, order_hash=order_hash(self.domain, order))

    def sizes(self) -> dict[Side, int]:
        sides = [side for _, side, _ in self._index.values()]
        return {side: sides.count(side) for side in Side}


def _key(fill: Fill) -> _Key:
    return fill.offer_hash, fill.bid_hash, fill.gpus


def _describe(order: VerifiedOrder) -> tuple[str, Side, str]:
    m = order.signed.message
    side = Side.OFFER if isinstance(m, Offer) else Side.BID
    return m.gpu_model, side, order.signer


def _submission(order: VerifiedOrder) -> Submission:
    return Submission(order.signed)


__all__ = ["RelayBook"]
