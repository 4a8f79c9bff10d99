"""The relay's admission parts, pure: the bounded book's rule (``nodes/relay/capacity.py``), the
rate budgets' check-then-take, labs' funds cached for a while (``nodes/relay/funds.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market.chain.client import LabFunds, MarketClient
from market.errors import BookFull, RpcUnavailable, SignerAtCapacity
from market.matching import Submission
from market.protocol.types import Bid
from nodes.errors import ConfigError, RateLimited
from nodes.relay.admission import Admission
from nodes.relay.book import RelayBook
from nodes.relay.capacity import Capacity
from nodes.relay.config import Limits
from nodes.relay.funds import FundsCache, bid_cost
from nodes.relay.ratelimit import RateLimiter
from nodes.relay.stakes import StakeCache
from nodes.relay.store import Store
from nodes.relay.store_sqlite import SqliteStore
from nodes.relay.stream import Hub
from nodes.wire import OrderStatus
from tests.unit.order_factory import DOMAIN, NOW, Orders

pytestmark = pytest.mark.unit

SIGNERS = [f"0x{i:040x}" for i in range(6)]


def _h(n: int) -> bytes:
    return n.to_bytes(32, "big")


def _offer(cap: Capacity, h: bytes, signer: str) -> tuple[str, bytes | None]:
    """Offer one order to ``cap`` as the relay does: what became of it, and the order evicted."""
    try:
        victim = cap.make_room(h, signer)
    except SignerAtCapacity:
        return "at_capacity", None
    except BookFull:
        return "full", None
    if victim is not None:
        cap.remove(victim)
    cap.add(h, signer)
    return ("evicted" if victim is not None else "added"), victim


@settings(max_examples=300, deadline=None)
@given(
    max_orders=st.integers(1, 12),
    share=st.integers(1, 8),
    steps=st.lists(st.tuples(st.booleans(), st.integers(0, len(SIGNERS) - 1)), max_size=80),
)
def test_the_book_never_exceeds_its_bounds_and_only_a_larger_holder_gives_way(
    max_orders: int, share: int, steps: Sequence[tuple[bool, int]]
) -> None:
    cap = Capacity(max_orders, share)
    held: dict[str, list[bytes]] = {s: [] for s in SIGNERS}  # the model: each signer's orders
    for n, (add, who) in enumerate(steps):
        signer = SIGNERS[who]
        if not add:
            if held[signer]:
                cap.remove(held[signer].pop(0))  # filled, cancelled or expired
            continue
        before = {s: len(hs) for s, hs in held.items()}
        top = max(before.values())
        outcome, victim = _offer(cap, _h(n), signer)
        if before[signer] >= share:
            assert outcome == "at_capacity"
        elif sum(before.values()) < max_orders:
            assert outcome == "added"
        elif top > before[signer] + 1:  # someone holds more than the signer would
            assert outcome == "evicted"
            [owner] = [s for s, hs in held.items() if victim in hs]
            assert before[owner] == top  # the largest holder gives way
            assert held[owner][-1] == victim  # its newest order
            held[owner].pop()
        else:
            assert outcome == "full"
        if outcome in ("added", "evicted"):
            held[signer].append(_h(n))
        assert len(cap) == sum(len(hs) for hs in held.values()) <= max_orders
        assert all(cap.held(s) == len(hs) <= share for s, hs in held.items())
        assert (cap.largest() or ("", 0))[1] == max(len(hs) for hs in held.values())


def test_orders_about_to_enter_count_against_the_share_and_the_room() -> None:
    cap = Capacity(4, 3)
    cap.add(_h(1), SIGNERS[0])
    with pytest.raises(SignerAtCapacity) as info:
        cap.make_room(_h(9), SIGNERS[0], pending=2, pending_total=2)
    assert (info.value.held, info.value.share) == (3, 3)
    # The book holds 1 and 3 are about to enter: full, and nobody holds more than 1 + 1.
    with pytest.raises(BookFull) as full:
        cap.make_room(_h(9), SIGNERS[1], pending=0, pending_total=3)
    assert full.value.capacity == 4


def test_an_order_with_a_fill_in_flight_is_never_evicted() -> None:
    cap = Capacity(3, 3)
    for n in range(3):
        cap.add(_h(n), SIGNERS[0])
    assert cap.make_room(_h(9), SIGNERS[1]) == _h(2)  # the newest of the largest holder
    assert cap.make_room(_h(9), SIGNERS[1], evictable=lambda h: h != _h(2)) == _h(1)
    with pytest.raises(BookFull):
        cap.make_room(_h(9), SIGNERS[1], evictable=lambda h: False)


@settings(max_examples=200, deadline=None)
@given(
    taken=st.lists(st.tuples(st.sampled_from("abc"), st.integers(1, 4)), max_size=6),
    asked=st.dictionaries(st.sampled_from("abcd"), st.integers(0, 6)),
    elapsed=st.floats(0, 3),
)
def test_allows_says_what_check_would(
    taken: list[tuple[str, int]], asked: dict[str, int], elapsed: float
) -> None:
    now = [0.0]
    limiter = RateLimiter(1.0, 5, clock=lambda: now[0])
    for key, cost in taken:
        if limiter.allows({key: cost}):
            limiter.take({key: cost})
    now[0] = elapsed
    try:
        limiter.check(asked)
    except RateLimited:
        assert not limiter.allows(asked)
    else:
        assert limiter.allows(asked)


def test_a_check_takes_nothing_and_both_budgets_are_checked_before_either_is_taken() -> None:
    now = [0.0]
    signers = RateLimiter(1.0, 2, clock=lambda: now[0])
    peers = RateLimiter(1.0, 5, clock=lambda: now[0])
    signers.check({"lab": 2})
    signers.check({"lab": 2})  # a check spends nothing
    signers.take({"lab": 2})
    with pytest.raises(RateLimited):
        signers.check({"lab": 1})
    peers.check({"peer": 1})  # a request whose signer is over its budget takes no peer tokens
    peers.take({"peer": 5})
    with pytest.raises(RateLimited):
        peers.check({"peer": 1})


class _Chain:
    """A MarketClient's ``lab_funds``, counting reads; ``down`` raises as a silent endpoint."""

    def __init__(self) -> None:
        self.reads: list[list[str]] = []
        self.funds = LabFunds(100, 50)
        self.down = False

    def lab_funds(self, labs: Sequence[str]) -> dict[str, LabFunds]:
        if self.down:
            raise RpcUnavailable("http://chain", "ConnectionError")
        self.reads.append(list(labs))
        return dict.fromkeys(labs, self.funds)


def test_funds_are_read_in_one_batch_and_kept_for_their_ttl() -> None:
    chain = _Chain()
    now = [0.0]
    cache = FundsCache(cast(MarketClient, chain), 5.0, clock=lambda: now[0])
    asyncio.run(cache.ensure(["b", "a", "a"]))
    assert chain.reads == [["a", "b"]]
    assert cache.funds_of("a") == LabFunds(100, 50)
    assert LabFunds(100, 50).spendable == 50
    now[0] = 4.9
    asyncio.run(cache.ensure(["a", "c"]))
    assert chain.reads == [["a", "b"], ["c"]]
    now[0] = 5.0
    chain.funds = LabFunds(0, 0)
    asyncio.run(cache.ensure(["a"]))
    assert cache.funds_of("a") == LabFunds(0, 0)


def test_a_failed_read_keeps_nothing_and_raises() -> None:
    chain = _Chain()
    chain.down = True
    cache = FundsCache(cast(MarketClient, chain), 5.0)
    with pytest.raises(RpcUnavailable):
        asyncio.run(cache.ensure(["a"]))
    assert cache.funds_of("a") is None


@given(price=st.integers(0, 2**64), gpus=st.integers(1, 2**32 - 1), secs=st.integers(1, 2**40))
def test_a_bid_costs_at_most_its_price_times_gpus_times_duration(
    price: int, gpus: int, secs: int
) -> None:
    bid = Orders().bid(price, gpus, duration=secs).signed.message
    assert isinstance(bid, Bid)
    assert bid_cost(bid) == price * gpus * secs


@pytest.fixture
def admission_with(tmp_path: Path) -> Iterator[Callable[[Capacity], Admission]]:
    """Admissions over a real book and store, without a chain: bids only (no stakes to read),
    every lab funded by a fake chain. Their stores are closed after the test."""
    stores: list[Store] = []

    def make(capacity: Capacity) -> Admission:
        store = SqliteStore.open(tmp_path / f"relay{len(stores)}.sqlite")
        stores.append(store)
        stakes = StakeCache(cast(MarketClient, None), 0)
        book = RelayBook(DOMAIN, store, stakes, Hub(16), matching=False, capacity=capacity)
        book.chain_time = NOW
        chain = _Chain()
        chain.funds = LabFunds(10**30, 10**30)
        return Admission(
            book,
            DOMAIN,
            FundsCache(cast(MarketClient, chain), 5.0),
            signer_limit=RateLimiter(1.0, 100),
            peer_limit=RateLimiter(1.0, 100),
        )

    yield make
    for store in stores:
        store.close()


def test_when_the_book_is_full_expired_orders_give_way_before_any_live_one(
    admission_with: Callable[[Capacity], Admission],
) -> None:
    orders = Orders()
    admission = admission_with(Capacity(2, 2))
    short = [orders.bid(lab=0, expiry=NOW + 10) for _ in range(2)]
    admitted = asyncio.run(admission.admit([Submission(o.signed) for o in short]))
    assert [r.status for r in admitted.results] == [OrderStatus.ACCEPTED] * 2
    admission.book.chain_time = NOW + 11  # expired, and no chain poll has swept them yet
    late = orders.bid(lab=1)
    admitted = asyncio.run(admission.admit([Submission(late.signed)], peer="10.0.0.1"))
    assert [r.status for r in admitted.results] == [OrderStatus.ACCEPTED]
    assert admitted.evicted == 0
    assert set(admission.book.book._orders) == {late.hash}
    assert admission.book.store.count_orders() == 1
    assert len(admission.book.capacity) == 1


def test_a_full_book_evicts_the_largest_holders_newest_order_and_forgets_its_row(
    admission_with: Callable[[Capacity], Admission],
) -> None:
    orders = Orders()
    admission = admission_with(Capacity(3, 3))
    mine = [orders.bid(lab=0) for _ in range(3)]
    asyncio.run(admission.admit([Submission(o.signed) for o in mine]))
    theirs = orders.bid(lab=1)
    admitted = asyncio.run(admission.admit([Submission(theirs.signed)]))
    assert [r.status for r in admitted.results] == [OrderStatus.ACCEPTED]
    assert admitted.evicted == 1
    assert set(admission.book.book._orders) == {mine[0].hash, mine[1].hash, theirs.hash}
    assert [h for h, _ in admission.book.store.resting_orders()] == [
        mine[0].hash,
        mine[1].hash,
        theirs.hash,
    ]
    # The evicted order may come back; the book is full and its lab holds more: book_full.
    again = asyncio.run(admission.admit([Submission(mine[2].signed)]))
    assert [r.status for r in again.results] == [OrderStatus.BOOK_FULL]


@pytest.mark.parametrize(
    ("field", "value"),
    [("peer_rate_per_s", 0.0), ("peer_burst", 0), ("max_book_orders", 0), ("funds_ttl_s", -1.0)],
)
def test_limits_refuse_bounds_that_cannot_work(field: str, value: float) -> None:
    with pytest.raises(ConfigError) as info:
        Limits(**{field: value})
    assert (info.value.path, info.value.field) == ("Limits", field)
