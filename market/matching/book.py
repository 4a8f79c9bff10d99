"""The order book: offers and bids per GPU model, in price-time priority, and continuous matching.

Offers rest cheapest first, bids dearest first; within a price, the earlier arrival goes first
(arrival is a sequence number the book assigns, never a wall clock, so the same input always
gives the same fills). A fill is ``(offer, bid, gpus)`` at the offer's price, exactly what
``Market.openLease`` accepts. One bid may be filled by several offers (a cluster of leases) and
one offer may serve several bids.

Besides price, an offer fits a bid when every signed term fits as ``Market.openLease`` checks it
(:func:`market.matching.constraints.unfit`: model, duration range, memory, bandwidth, feature
bits, billing mode) and its provider is eligible (registered, free stake at least the minimum).
At rest the book holds no crossing pair that fits, except all-or-none bids that cannot yet be
filled whole.

GPUs a fill takes are *pending* until the lease opens on-chain: :meth:`OrderBook.settle` makes
them filled, :meth:`OrderBook.release` gives them back. :meth:`OrderBook.sync_filled` applies what
the chain says was filled (by anyone), so a book never offers GPUs that are gone.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import cast

from market.errors import (
    DuplicateOrder,
    InvalidArgument,
    OrderCancelled,
    OrderExpired,
    OrderFilled,
    ProviderNotEligible,
)
from market.matching.constraints import unfit
from market.matching.verified import VerifiedOrder
from market.protocol.types import Bid, Offer, OrderHash, Signed

StakeView = Callable[[str], int | None]
"""A provider's free stake, or None when it is not registered."""


class Resting:
    """One order in the book. ``remaining`` excludes GPUs pending in unsettled fills;
    ``message`` is the signed order, whose terms :func:`fits` compares."""

    __slots__ = (
        "all_or_none",
        "duration",
        "expiry",
        "filled",
        "hash",
        "is_offer",
        "max_duration",
        "message",
        "min_duration",
        "model",
        "nonce",
        "order",
        "pending",
        "price",
        "seq",
        "signer",
        "size",
    )

    def __init__(self, order: VerifiedOrder, seq: int) -> None:
        m = order.signed.message
        self.order = order
        self.message: Offer | Bid = m
        self.hash: OrderHash = order.hash
        self.seq = seq
        self.model = m.gpu_model
        self.size = m.gpu_count
        self.expiry = m.expiry
        self.nonce = m.nonce
        self.filled = 0
        self.pending = 0
        if isinstance(m, Offer):
            self.is_offer = True
            self.signer: str = m.provider
            self.price = m.price_per_gpu_second
            self.min_duration = m.min_duration
            self.max_duration = m.max_duration
            self.duration = 0
            self.all_or_none = False
        else:
            self.is_offer = False
            self.signer = m.lab
            self.price = m.max_price_per_gpu_second
            self.min_duration = self.max_duration = self.duration = m.duration
            self.all_or_none = m.all_or_none

    @property
    def remaining(self) -> int:
        return self.size - self.filled - self.pending

    def __repr__(self) -> str:
        kind = "Offer" if self.is_offer else "Bid"
        return f"<{kind} {self.model} {self.remaining}/{self.size} @{self.price} #{self.seq}>"


def fits(offer: Resting, bid: Resting) -> bool:
    """Whether ``offer`` can serve ``bid`` apart from price, size and eligibility: exactly
    ``unfit(offer, bid) is None`` on the signed orders, the contract's pair check."""
    return unfit(cast(Offer, offer.message), cast(Bid, bid.message)) is None


@dataclass(frozen=True, slots=True)
class Fill:
    """Open a lease of ``gpus`` GPUs from this pair: ``openLease(offer, sig, bid, sig, gpus)``."""

    offer: Signed[Offer]
    bid: Signed[Bid]
    gpus: int
    offer_hash: OrderHash
    bid_hash: OrderHash

    @property
    def price_per_gpu_second(self) -> int:
        return self.offer.message.price_per_gpu_second

    @property
    def escrow(self) -> int:
        return self.price_per_gpu_second * self.gpus * self.bid.message.duration


class _Side:
    """One side of one model's book: price levels, each a FIFO of orders in arrival order."""

    __slots__ = ("ascending", "durations", "levels", "prices", "sorted_durations")

    def __init__(self, ascending: bool) -> None:
        self.ascending = ascending  # offers: cheapest first; bids: dearest first
        self.levels: dict[int, list[Resting]] = {}
        self.prices: list[int] = []  # sorted by priority (negated for bids)
        # Bids only: how many resting bids ask each duration, so an offer whose range holds
        # none of them skips the walk (offers take a range, so they are not indexed).
        self.durations: dict[int, int] = {}
        self.sorted_durations: list[int] = []

    def _count(self, entry: Resting, delta: int) -> None:
        if self.ascending:
            return
        d = entry.duration
        n = self.durations.get(d, 0) + delta
        if n > 0:
            if d not in self.durations:
                insort(self.sorted_durations, d)
            self.durations[d] = n
        else:
            del self.durations[d]
            del self.sorted_durations[bisect_left(self.sorted_durations, d)]

    def has_duration_in(self, low: int, high: int) -> bool:
        """Whether a resting bid asks a duration in ``[low, high]`` (bids' side only)."""
        i = bisect_left(self.sorted_durations, low)
        return i < len(self.sorted_durations) and self.sorted_durations[i] <= high

    def add(self, entry: Resting) -> None:
        self._count(entry, 1)
        level = self.levels.get(entry.price)
        if level is None:
            self.levels[entry.price] = [entry]
            insort(self.prices, entry.price if self.ascending else -entry.price)
        elif level[-1].seq < entry.seq:
            level.append(entry)
        else:  # a released order goes back to its place in time
            level.insert(bisect_left([e.seq for e in level], entry.seq), entry)

    def discard(self, entry: Resting) -> None:
        level = self.levels.get(entry.price)
        if level is None or entry not in level:
            return
        level.remove(entry)
        self._count(entry, -1)
        if not level:
            self._drop_level(entry.price)

    def _drop_level(self, price: int) -> None:
        del self.levels[price]
        key = price if self.ascending else -price
        del self.prices[bisect_left(self.prices, key)]

    def walk(self, limit: int | None = None) -> Iterator[list[Resting]]:
        """Levels in priority order, up to price ``limit`` (inclusive). Yields live lists; the
        caller may prune a level it was given (each step looks up the next price after the last
        one, so the walk costs the levels it reaches, not the side's depth)."""
        prices = self.prices
        at = 0
        while at < len(prices):
            key = prices[at]
            price = key if self.ascending else -key
            if limit is not None and (price > limit if self.ascending else price < limit):
                return
            level = self.levels.get(price)
            if level is not None:
                yield level
            at = bisect_right(prices, key)

    def prune(self, level: list[Resting], dead: list[Resting]) -> None:
        """Remove ``dead`` entries of one level (entries already gone are ignored)."""
        for entry in dead:
            if entry in level:
                level.remove(entry)
                self._count(entry, -1)
        if dead and not level and self.levels.get(dead[0].price) is level:
            self._drop_level(dead[0].price)

    def __len__(self) -> int:
        return sum(len(level) for level in self.levels.values())


class OrderBook:
    """Offers and bids of every GPU model, with continuous price-time matching.

    ``stake_of`` tells a provider's free stake (None when unregistered); offers of providers
    below ``min_stake`` are refused on entry and skipped while matching. Without ``stake_of``
    every provider counts as eligible (the chain still checks at ``openLease``).
    """

    def __init__(self, *, min_stake: int = 0, stake_of: StakeView | None = None) -> None:
        self.min_stake = min_stake
        self.stake_of = stake_of
        self._offers: dict[str, _Side] = {}
        self._bids: dict[str, _Side] = {}
        self._orders: dict[bytes, Resting] = {}
        self._cancelled: set[bytes] = set()
        self._done: set[bytes] = set()
        self._min_nonce: dict[str, int] = {}
        self._seq = 0

    # --- queries -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._orders)

    def __contains__(self, order_hash: object) -> bool:
        return order_hash in self._orders

    def get(self, order_hash: bytes) -> Resting | None:
        return self._orders.get(order_hash)

    def models(self) -> list[str]:
        return sorted(set(self._offers) | set(self._bids))

    def offers(self, model: str, now: int | None = None) -> Iterator[Resting]:
        """Resting offers of ``model`` with GPUs left, in priority order (only those still
        valid at ``now`` when it is given)."""
        return self._iter(self._offers.get(model), now)

    def bids(self, model: str, now: int | None = None) -> Iterator[Resting]:
        """Resting bids of ``model`` with GPUs left, in priority order (only those still
        valid at ``now`` when it is given)."""
        return self._iter(self._bids.get(model), now)

    def _iter(self, side: _Side | None, now: int | None) -> Iterator[Resting]:
        if side is None:
            return
        for level in side.walk():
            for entry in list(level):
                if entry.remaining > 0 and (now is None or self._live(entry, now)):
                    yield entry

    def best_offer_price(self, model: str) -> int | None:
        return next((e.price for e in self.offers(model)), None)

    def best_bid_price(self, model: str) -> int | None:
        return next((e.price for e in self.bids(model)), None)

    def min_nonce(self, signer: str) -> int:
        return self._min_nonce.get(signer, 0)

    def is_cancelled(self, order_hash: bytes) -> bool:
        return order_hash in self._cancelled

    def eligible(self, provider: str) -> bool:
        if self.stake_of is None:
            return True
        free = self.stake_of(provider)
        return free is not None and free >= self.min_stake

    # --- entry ---------------------------------------------------------------------------

    def check(self, order: VerifiedOrder, now: int) -> None:
        """Raise the typed error that keeps ``order`` out of the book; change nothing."""
        m = order.signed.message
        if order.hash in self._orders:
            raise DuplicateOrder(order.hash)
        if order.hash in self._done:
            raise OrderFilled(order.hash, m.gpu_count)
        if now > m.expiry:
            raise OrderExpired(order.hash, m.expiry, now)
        if order.hash in self._cancelled:
            raise OrderCancelled(order.hash, m.nonce)
        floor = self._min_nonce.get(order.signer, 0)
        if m.nonce < floor:
            raise OrderCancelled(order.hash, m.nonce, floor)
        if isinstance(m, Offer) and not self.eligible(m.provider):
            free = self.stake_of(m.provider) if self.stake_of is not None else None
            raise ProviderNotEligible(order.hash, m.provider, free, self.min_stake)

    def add(self, order: VerifiedOrder, now: int, *, filled: int = 0) -> Resting:
        """Rest ``order`` in the book without matching (``filled``: GPUs already filled
        on-chain). Raises the typed error of :meth:`check`, or OrderFilled."""
        self.check(order, now)
        if filled >= order.signed.message.gpu_count:
            raise OrderFilled(order.hash, order.signed.message.gpu_count)
        self._seq += 1
        entry = Resting(order, self._seq)
        entry.filled = filled
        self._orders[entry.hash] = entry
        self._side(entry).add(entry)
        return entry

    def submit(self, order: VerifiedOrder, now: int, *, filled: int = 0) -> list[Fill]:
        """Add ``order`` and match it at once against the other side (continuous mode)."""
        entry = self.add(order, now, filled=filled)
        return self._match_offer(entry, now) if entry.is_offer else self._match_bid(entry, now)

    def _side(self, entry: Resting) -> _Side:
        sides = self._offers if entry.is_offer else self._bids
        side = sides.get(entry.model)
        if side is None:
            side = sides[entry.model] = _Side(ascending=entry.is_offer)
        return side

    # --- matching ------------------------------------------------------------------------

    def _live(self, entry: Resting, now: int) -> bool:
        return (
            entry.remaining > 0
            and now <= entry.expiry
            and entry.nonce >= self._min_nonce.get(entry.signer, 0)
            and entry.hash not in self._cancelled
        )

    def _match_bid(self, bid: Resting, now: int) -> list[Fill]:
        """Fill ``bid`` from the cheapest fitting offers, earliest first at each price."""
        side = self._offers.get(bid.model)
        if side is None or not self._live(bid, now):
            return []
        want = bid.remaining
        plan: list[tuple[Resting, int]] = []
        eligible: dict[str, bool] = {}
        for level in side.walk(limit=bid.price):
            dead: list[Resting] = []
            for offer in level:
                if not self._live(offer, now):
                    if offer.pending == 0 or offer.remaining <= 0:
                        dead.append(offer)
                    continue
                if not fits(offer, bid):
                    continue
                ok = eligible.get(offer.signer)
                if ok is None:
                    ok = eligible[offer.signer] = self.eligible(offer.signer)
                if not ok:
                    continue
                take = min(offer.remaining, want)
                plan.append((offer, take))
                want -= take
                if want == 0:
                    break
            if dead:
                side.prune(level, dead)
                for entry in dead:
                    self._forget(entry)
            if want == 0:
                break
        if want > 0 and bid.all_or_none:
            return []
        return [self._take(offer, bid, gpus) for offer, gpus in plan]

    def _match_offer(self, offer: Resting, now: int) -> list[Fill]:
        """Serve the dearest fitting bids with a new offer, earliest first at each price."""
        side = self._bids.get(offer.model)
        if side is None or not self._live(offer, now) or not self.eligible(offer.signer):
            return []
        if not side.has_duration_in(offer.min_duration, offer.max_duration):
            return []
        fills: list[Fill] = []
        for level in side.walk(limit=offer.price):
            dead: list[Resting] = []
            for bid in list(level):
                if offer.remaining == 0:
                    break
                if not self._live(bid, now):
                    if bid.pending == 0 or bid.remaining <= 0:
                        dead.append(bid)
                    continue
                if not fits(offer, bid):
                    continue
                if bid.all_or_none:
                    # The new offer may complete a cluster with older offers: match it whole.
                    fills.extend(self._match_bid(bid, now))
                else:
                    fills.append(self._take(offer, bid, min(offer.remaining, bid.remaining)))
            if dead:
                side.prune(level, dead)
                for entry in dead:
                    self._forget(entry)
            if offer.remaining == 0:
                break
        return fills

    def reserve(self, offer: Resting, bid: Resting, gpus: int) -> Fill:
        """Take ``gpus`` of both orders into a fill, pending until :meth:`settle`."""
        if not 0 < gpus <= min(offer.remaining, bid.remaining):
            raise InvalidArgument(
                "gpus", gpus, f"cannot reserve {gpus} GPUs of {offer!r} and {bid!r}"
            )
        return self._take(offer, bid, gpus)

    def _take(self, offer: Resting, bid: Resting, gpus: int) -> Fill:
        offer.pending += gpus
        bid.pending += gpus
        for entry in (offer, bid):
            if entry.remaining == 0:
                self._side(entry).discard(entry)
        o = cast(Signed[Offer], offer.order.signed)
        b = cast(Signed[Bid], bid.order.signed)
        return Fill(o, b, gpus, offer.hash, bid.hash)

    def match_all(self, now: int) -> list[Fill]:
        """Match every resting bid in priority order (after a batch of :meth:`add`)."""
        fills: list[Fill] = []
        for model in sorted(self._bids):
            for bid in list(self.bids(model)):
                fills.extend(self._match_bid(bid, now))
        return fills

    # --- what the chain says -------------------------------------------------------------

    def settle(self, fill: Fill) -> None:
        """The lease of ``fill`` opened on-chain: its pending GPUs are now filled."""
        for h in (fill.offer_hash, fill.bid_hash):
            entry = self._orders.get(h)
            if entry is not None:
                entry.pending -= fill.gpus
                entry.filled += fill.gpus
                self._forget_if_done(entry)
                self._forget_if_withdrawn(entry)

    def release(self, fill: Fill) -> None:
        """The lease of ``fill`` did not open: give its GPUs back to both orders."""
        for h in (fill.offer_hash, fill.bid_hash):
            entry = self._orders.get(h)
            if entry is not None:
                was_out = entry.remaining == 0
                entry.pending -= fill.gpus
                if entry.filled >= entry.size:  # the chain filled it meanwhile
                    self._forget_if_done(entry)
                    continue
                if self._forget_if_withdrawn(entry):
                    continue
                if was_out and entry.remaining > 0:
                    self._side(entry).add(entry)

    def sync_filled(self, order_hash: bytes, filled_total: int) -> None:
        """The chain reports ``filled_total`` GPUs of this order filled (by any matcher)."""
        entry = self._orders.get(order_hash)
        if entry is None or filled_total <= entry.filled:
            return
        entry.filled = min(filled_total, entry.size)
        self._forget_if_done(entry)

    def reset_filled(self, order_hash: bytes, filled_total: int) -> None:
        """The chain now holds ``filled_total`` GPUs of this order filled, fewer (a reorganisation
        undid a lease) or more: GPUs given back return to the order's place in time."""
        entry = self._orders.get(order_hash)
        if entry is None:
            return
        was_out = entry.remaining <= 0
        entry.filled = min(max(filled_total, 0), entry.size)
        if entry.filled >= entry.size:
            self._forget_if_done(entry)
        elif was_out and entry.remaining > 0:
            self._side(entry).add(entry)
        elif not was_out and entry.remaining <= 0:
            self._side(entry).discard(entry)

    def cancel(self, order_hash: bytes) -> None:
        """The order was cancelled by hash on-chain (or by its signer, through the relay)."""
        self._cancelled.add(order_hash)
        entry = self._orders.get(order_hash)
        if entry is not None:
            self._side(entry).discard(entry)
            self._forget(entry)

    def evict(self, order_hash: bytes) -> bool:
        """Take a resting order out to make room (a relay's bounded book): unlike :meth:`cancel`
        it leaves no mark, so the order may enter again. An order with GPUs pending in a fill
        stays; returns whether the order left."""
        entry = self._orders.get(order_hash)
        if entry is None or entry.pending:
            return False
        self._side(entry).discard(entry)
        self._forget(entry)
        return True

    def raise_nonce_floor(self, signer: str, min_nonce: int) -> int:
        """The signer cancelled every order with a nonce below ``min_nonce``; returns how many
        resting orders this removed."""
        if min_nonce <= self._min_nonce.get(signer, 0):
            return 0
        self._min_nonce[signer] = min_nonce
        gone = [e for e in self._orders.values() if e.signer == signer and e.nonce < min_nonce]
        for entry in gone:
            self._side(entry).discard(entry)
            self._forget(entry)
        return len(gone)

    def expire(self, now: int) -> list[OrderHash]:
        """Remove every order whose expiry has passed; returns their hashes."""
        gone = [e for e in self._orders.values() if now > e.expiry and e.pending == 0]
        for entry in gone:
            self._side(entry).discard(entry)
            self._forget(entry)
        return [e.hash for e in gone]

    def _forget_if_done(self, entry: Resting) -> None:
        if entry.filled >= entry.size:
            self._side(entry).discard(entry)
            self._forget(entry)
        elif entry.remaining <= 0:
            self._side(entry).discard(entry)

    def _forget_if_withdrawn(self, entry: Resting) -> bool:
        """Drop an order cancelled while fills of it were pending, once none are."""
        withdrawn = entry.hash in self._cancelled or entry.nonce < self._min_nonce.get(
            entry.signer, 0
        )
        if withdrawn:
            self._side(entry).discard(entry)
            self._forget(entry)
        return withdrawn

    def _forget(self, entry: Resting) -> None:
        if entry.pending == 0:
            self._orders.pop(entry.hash, None)
            if entry.filled >= entry.size:
                self._done.add(entry.hash)  # a replay of a filled order must not re-enter


__all__ = ["Fill", "OrderBook", "Resting", "StakeView", "fits"]
