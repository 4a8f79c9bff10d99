"""A relay's book is bounded: at most ``max_orders`` orders in all, ``share`` per signer.

The rule (``docs/decisions/0014-gossip-admission.md``), for one more order of signer S:

    1. S already holds ``share`` orders (counting those accepted earlier in the same request):
       refused, ``signer_at_capacity``;
    2. the book has room: it enters;
    3. the book is full: expired orders go first (the caller sweeps them once per request);
       then, if the signer T holding the most orders holds more than S will (T > S + 1), T's
       newest order without GPUs pending in a fill is evicted to make room: the book converges
       to equal shares, and a flood of one signer, or of many, gives way to the signers that hold
       least; else refused, ``book_full``.

Counting is O(1) per change: signers are kept in buckets by how many orders they hold.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from market.errors import BookFull, SignerAtCapacity


class Capacity:
    def __init__(self, max_orders: int, share: int) -> None:
        if max_orders < 1 or share < 1:
            raise ValueError("a bounded book needs room for one order and a share of at least 1")
        self.max_orders = max_orders
        self.share = share
        self._signer_of: dict[bytes, str] = {}
        self._held: dict[str, dict[bytes, None]] = {}  # signer -> its orders, oldest first
        self._buckets: dict[int, dict[str, None]] = {}  # count -> signers holding that many
        self._top = 0

    def __len__(self) -> int:
        return len(self._signer_of)

    def __contains__(self, order_hash: object) -> bool:
        return order_hash in self._signer_of

    def held(self, signer: str) -> int:
        return len(self._held.get(signer, ()))

    def largest(self) -> tuple[str, int] | None:
        """The signer holding the most orders (the first to reach that count) and how many."""
        if self._top == 0:
            return None
        return next(iter(self._buckets[self._top])), self._top

    def newest_first(self, signer: str) -> Iterator[bytes]:
        return reversed(self._held.get(signer, {}))

    def add(self, order_hash: bytes, signer: str) -> None:
        if order_hash in self._signer_of:
            return
        self._signer_of[order_hash] = signer
        orders = self._held.setdefault(signer, {})
        self._move(signer, len(orders), len(orders) + 1)
        orders[order_hash] = None

    def remove(self, order_hash: bytes) -> None:
        signer = self._signer_of.pop(order_hash, None)
        if signer is None:
            return
        orders = self._held[signer]
        del orders[order_hash]
        self._move(signer, len(orders) + 1, len(orders))
        if not orders:
            del self._held[signer]

    def _move(self, signer: str, old: int, new: int) -> None:
        if old:
            bucket = self._buckets[old]
            del bucket[signer]
            if not bucket:
                del self._buckets[old]
        if new:
            self._buckets.setdefault(new, {})[signer] = None
        if new > self._top:
            self._top = new
        while self._top and self._top not in self._buckets:
            self._top -= 1

    def full(self, pending_total: int = 0) -> bool:
        """Whether the book (with ``pending_total`` orders about to enter) has no room left."""
        return len(self) + pending_total >= self.max_orders

    def make_room(
        self,
        order_hash: bytes,
        signer: str,
        *,
        pending: int = 0,
        pending_total: int = 0,
        evictable: Callable[[bytes], bool] = lambda h: True,
    ) -> bytes | None:
        """Whether one more order of ``signer`` fits, ``pending`` of its orders and
        ``pending_total`` in all being about to enter as well: None when it fits as is, else the
        order to evict first. Raises SignerAtCapacity or BookFull; changes nothing."""
        mine = self.held(signer) + pending
        if mine >= self.share:
            raise SignerAtCapacity(order_hash, signer, mine, self.share)
        if not self.full(pending_total):
            return None
        top = self.largest()
        if top is None or top[1] <= mine + 1:
            raise BookFull(order_hash, self.max_orders)
        victim = next((h for h in self.newest_first(top[0]) if evictable(h)), None)
        if victim is None:
            raise BookFull(order_hash, self.max_orders)
        return victim


__all__ = ["Capacity"]
