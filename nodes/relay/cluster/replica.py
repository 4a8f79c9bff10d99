"""A book that follows the cluster's stream: what an instance shows of orders another accepted.

:class:`BookReplica` applies each :mod:`~nodes.relay.cluster.events` event to a
``market.matching.OrderBook`` in memory, as the relay's own book (``nodes/relay/book.py``)
applies the same facts: an accepted order rests, the matcher's fills reserve GPUs until they
open (settled) or fail (released), the chain's leases count as filled (settling the pending fill
of the same pair and size), cancellations and nonce floors take orders out. It matches nothing
and writes nothing: the one matcher of the cluster matches, and what is durable is in the store.

Applying is idempotent per order: an order published again after JetStream forgot its message
id (past the duplicate window) is not added twice, and an order the stream already saw leave
(cancelled, filled) does not come back. Orders are trusted as the cluster's own: the instance
that published one verified its signature before it did, so a replica only checks that the
carried hash is the order's under its domain (another market's stream is refused).
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice

from market.errors import OrderError
from market.matching import Fill, OrderBook, Resting, Submission, VerifiedOrder
from market.protocol.eip712 import Domain, order_hash
from market.protocol.types import OrderHash
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
from nodes.wire import BookEntry, BookSnapshot, FillStatus

_Key = tuple[bytes, bytes, int]


class BookReplica:
    """The book of a cluster as its stream tells it; :meth:`apply` is a follower's callback."""

    def __init__(self, domain: Domain) -> None:
        self.domain = domain
        self.book = OrderBook()  # providers' eligibility is the matcher's to check, not ours
        self.chain_time = 0
        self.position = 0
        """The last stream sequence applied."""
        self.filled: dict[bytes, int] = {}  # GPUs the chain filled, per order hash
        self._pending: dict[int, Fill] = {}  # by fill intent
        self._by_key: dict[_Key, list[int]] = {}  # (offer, bid, gpus) -> intents pending

    def apply(self, seq: int, event: ClusterEvent) -> None:
        """Apply ``event``, the stream's event ``seq``."""
        if isinstance(event, OrderAccepted):
            self._accept(event)
        elif isinstance(event, OrderEvicted):
            self.book.evict(event.order_hash)
        elif isinstance(event, OrderCancelled):
            self.book.cancel(event.order_hash)
        elif isinstance(event, NonceFloorRaised):
            self.book.raise_nonce_floor(event.signer, event.min_nonce)
        elif isinstance(event, LeaseOpened):
            self._lease(event)
        elif isinstance(event, ChainRewound):
            pass  # a replica keeps no blocks; a relay instance rewinds (cluster/node.py)
        else:
            self._fill(event)
        self.position = seq

    def _accept(self, event: OrderAccepted) -> None:
        signed = event.order
        check_order_hash(event, order_hash(self.domain, signed.message))
        h = OrderHash(event.order_hash)
        if h in self.book:
            return
        order = VerifiedOrder.unsafe_from_trusted_store(signed, h)
        try:
            self.book.add(order, self.chain_time, filled=self.filled.get(h, 0))
        except OrderError:
            return  # gone already (cancelled, filled, expired): as on the instance that took it

    def _fill(self, event: FillChanged) -> None:
        key = (event.offer_hash, event.bid_hash, event.gpus)
        if event.status is FillStatus.PENDING:
            offer, bid = self.book.get(event.offer_hash), self.book.get(event.bid_hash)
            if offer is None or bid is None or event.intent in self._pending:
                return
            if not 0 < event.gpus <= min(offer.remaining, bid.remaining):
                return
            self._pending[event.intent] = self.book.reserve(offer, bid, event.gpus)
            self._by_key.setdefault(key, []).append(event.intent)
            return
        fill = self._pop(event.intent, key)
        if fill is None:
            return  # settled already by the chain's LeaseOpened
        if event.status is FillStatus.OPENED:
            self.book.settle(fill)
        else:
            self.book.release(fill)

    def _lease(self, event: LeaseOpened) -> None:
        key = (event.offer_hash, event.bid_hash, event.gpus)
        intents = self._by_key.get(key)
        if intents:
            fill = self._pop(intents[0], key)
            if fill is not None:
                self.book.settle(fill)
        for h in (event.offer_hash, event.bid_hash):
            self.filled[h] = self.filled.get(h, 0) + event.gpus
            self.book.sync_filled(h, self.filled[h])

    def _pop(self, intent: int, key: _Key) -> Fill | None:
        fill = self._pending.pop(intent, None)
        if fill is None:
            return None
        intents = self._by_key[key]
        intents.remove(intent)
        if not intents:
            del self._by_key[key]
        return fill

    def expire(self, now: int) -> list[OrderHash]:
        """Take the chain's clock ``now``: orders expired by then leave."""
        self.chain_time = max(self.chain_time, now)
        return self.book.expire(self.chain_time)

    def remaining(self, h: bytes) -> int:
        """GPUs of order ``h`` left to match here (0: not in the book)."""
        entry = self.book.get(h)
        return max(entry.remaining, 0) if entry is not None else 0

    def snapshot(self, model: str, depth: int) -> BookSnapshot:
        """Up to ``depth`` live orders of each side of ``model`` with GPUs left, best first: the
        answer the relay's ``/v1/book`` gives."""
        now = self.chain_time

        def entries(resting: Iterator[Resting]) -> tuple[BookEntry, ...]:
            return tuple(
                BookEntry(Submission(e.order.signed), e.remaining) for e in islice(resting, depth)
            )

        return BookSnapshot(
            model, now, entries(self.book.offers(model, now)), entries(self.book.bids(model, now))
        )

    def __len__(self) -> int:
        return len(self.book)

    def __contains__(self, h: object) -> bool:
        return h in self.book


__all__ = ["BookReplica"]
