"""The relay book's calls for a cluster's stream (``RelayBook.apply_order``, ``withdraw``,
``remote_fill``, ``release_remote``, lease ids counted once), on a real SQLite store: what
another instance did reaches this book exactly once, and a book alone is unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from market.chain.client import MarketClient
from market.matching import Submission
from nodes.relay.book import RelayBook
from nodes.relay.cluster.events import FillChanged
from nodes.relay.stakes import StakeCache
from nodes.relay.store import ChainLease
from nodes.relay.store_sqlite import SqliteStore
from nodes.relay.stream import Hub
from nodes.wire import FillStatus
from tests.unit.order_factory import DOMAIN, MODEL, NOW, Orders


@pytest.fixture
def book(tmp_path: Path) -> Iterator[RelayBook]:
    store = SqliteStore.open(tmp_path / "relay.sqlite")
    stakes = StakeCache(cast(MarketClient, None), 0)
    relay_book = RelayBook(DOMAIN, store, stakes, Hub(64), matching=False)
    relay_book.chain_time = NOW
    relay_book.seen_leases = set()
    try:
        yield relay_book
    finally:
        store.close()


def test_an_order_another_instance_accepted_rests_once(book: RelayBook) -> None:
    orders = Orders()
    offer = orders.offer(gpus=8)
    assert book.apply_order(offer)
    assert not book.apply_order(offer)  # the stream brought it again: nothing changes
    assert book.holds(offer.hash)
    assert [e.remaining for e in book.snapshot(MODEL, 10).offers] == [8]


def test_an_order_accepted_here_is_not_applied_again_from_the_stream(book: RelayBook) -> None:
    bid = Orders().bid(gpus=4)
    book.accept([bid])
    assert not book.apply_order(bid)
    assert [e.remaining for e in book.snapshot(MODEL, 10).bids] == [4]
    assert book.store.count_orders() == 1


def test_a_withdrawn_order_leaves_the_book_and_its_row_without_a_mark(book: RelayBook) -> None:
    bid = Orders().bid(gpus=4)
    book.accept([bid])
    book.withdraw([bid.hash])
    assert not book.holds(bid.hash)
    assert book.store.count_orders() == 0
    assert book.apply_order(bid)  # no mark: it may enter again


def test_a_remote_fill_reserves_then_settles_and_a_late_pending_is_ignored(
    book: RelayBook,
) -> None:
    orders = Orders()
    offer, bid = orders.offer(gpus=8), orders.bid(price=20, gpus=2)
    book.apply_order(offer)
    book.apply_order(bid)
    pending = FillChanged(7, offer.hash, bid.hash, 2, FillStatus.PENDING)
    book.remote_fill(pending)
    assert [e.remaining for e in book.snapshot(MODEL, 10).offers] == [6]
    assert book.snapshot(MODEL, 10).bids == ()  # all of it pending
    book.remote_fill(FillChanged(7, offer.hash, bid.hash, 2, FillStatus.FAILED, error="x"))
    assert [e.remaining for e in book.snapshot(MODEL, 10).offers] == [8]
    book.remote_fill(pending)  # arrives after its outcome: not taken again
    assert [e.remaining for e in book.snapshot(MODEL, 10).offers] == [8]
    assert book.remote_fills() == {}


def test_a_lease_learned_from_the_stream_and_the_chain_counts_once(book: RelayBook) -> None:
    orders = Orders()
    offer, bid = orders.offer(gpus=8), orders.bid(price=20, gpus=2)
    book.apply_order(offer)
    book.apply_order(bid)
    book.remote_fill(FillChanged(3, offer.hash, bid.hash, 2, FillStatus.PENDING))
    lease = ChainLease(b"\x01" * 32, offer.hash, bid.hash, 2, 15)
    book.apply_chain([lease], [], [])  # settles the pending fill of the same pair and size
    book.apply_chain([lease], [], [])  # again (the new leader read the range again)
    assert book.filled == {offer.hash: 2, bid.hash: 2}
    assert [e.remaining for e in book.snapshot(MODEL, 10).offers] == [6]
    assert book.remote_fills() == {}


def test_a_predecessors_fill_that_did_not_land_is_released(book: RelayBook) -> None:
    orders = Orders()
    offer, bid = orders.offer(gpus=8), orders.bid(price=20, gpus=2)
    book.apply_order(offer)
    book.apply_order(bid)
    book.remote_fill(FillChanged(9, offer.hash, bid.hash, 2, FillStatus.PENDING))
    assert list(book.remote_fills()) == [9]
    book.release_remote(9)
    assert [e.remaining for e in book.snapshot(MODEL, 10).offers] == [8]
    assert [e.remaining for e in book.snapshot(MODEL, 10).bids] == [2]


def test_load_counts_the_stored_leases_by_id(tmp_path: Path) -> None:
    store = SqliteStore.open(tmp_path / "relay.sqlite")
    try:
        orders = Orders()
        offer = orders.offer(gpus=8)
        store.add_orders([(offer.hash, Submission(offer.signed))])
        lease = ChainLease(b"\x02" * 32, offer.hash, b"\x03" * 32, 3, 12)
        store.apply_chain([lease], [], [], 13)
        book = RelayBook(DOMAIN, store, StakeCache(cast(MarketClient, None), 0), Hub(8),
                         matching=False)  # fmt: skip
        book.chain_time = NOW
        book.seen_leases = set()
        assert book.load() == 1
        assert book.seen_leases == {lease.lease_id}
        book.apply_chain([lease], [], [])  # the stream brings it again after the load
        assert [e.remaining for e in book.snapshot(MODEL, 10).offers] == [5]
    finally:
        store.close()
