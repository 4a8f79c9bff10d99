"""Lots and batches: an all-or-none cluster is one lot, never split; batches are bounded, keep one
clearing price, and group each lab's matches; a revert names the lots it concerns."""

from __future__ import annotations

from collections import deque
from typing import cast

import pytest

from market.chain.contract_errors import (
    MarketOrderCancelled,
    MarketOrderExpired,
    MarketProviderStakeTooLow,
)
from market.errors import TransactionReverted
from market.matching import Fill, OrderBook, Requirements
from market.protocol.types import Bid, Offer, OrderHash, Signed
from nodes.relay.batches import Lot, lots_of, ordered, take_batch
from nodes.relay.reverts import chain_time_after, concerns, names
from tests.unit.order_factory import NOW, Orders

pytestmark = pytest.mark.unit
AON = Requirements(all_or_none=True)


def _fill(orders: Orders, *, lab: int = 0, provider: int = 0, aon: bool = False) -> Fill:
    o = orders.offer(provider=provider)
    b = orders.bid(lab=lab, requirements=AON if aon else Requirements())
    return Fill(cast(Signed[Offer], o.signed), cast(Signed[Bid], b.signed), 4, o.hash, b.hash)


def _cluster(orders: Orders) -> list[Fill]:
    """An all-or-none bid of 6 GPUs filled by two providers' offers, as the book fills it."""
    book = OrderBook()
    book.add(orders.offer(provider=0, gpus=4, price=3), NOW)
    book.add(orders.offer(provider=1, gpus=4, price=4), NOW)
    return book.submit(orders.bid(gpus=6, price=5, requirements=AON), NOW)


def test_a_cluster_is_one_lot_in_the_place_of_its_first_fill() -> None:
    orders = Orders()
    single = _fill(orders)
    cluster = _cluster(orders)
    assert len(cluster) == 2
    assert lots_of([single, *cluster]) == [Lot((single,)), Lot(tuple(cluster))]
    assert lots_of(cluster, clearing_price=4) == [Lot(tuple(cluster), 4)]


def test_a_batch_is_bounded_but_a_cluster_larger_than_the_bound_goes_whole() -> None:
    orders = Orders()
    cluster = Lot(tuple(_cluster(orders)))
    singles = [Lot((_fill(orders),)) for _ in range(3)]
    queue = deque([cluster, *singles])
    assert take_batch(queue, max_matches=1) == [cluster]
    assert take_batch(queue, max_matches=2) == singles[:2]
    assert take_batch(queue, max_matches=2) == singles[2:]
    assert not queue


def test_a_batch_never_mixes_clearing_prices() -> None:
    orders = Orders()
    at_offers = Lot((_fill(orders),))
    at_five = [Lot((_fill(orders),), 5) for _ in range(2)]
    queue = deque([at_offers, *at_five, Lot((_fill(orders),))])
    assert take_batch(queue) == [at_offers]
    assert take_batch(queue) == at_five
    assert len(queue) == 1


def test_a_batch_is_sent_with_each_labs_matches_together() -> None:
    orders = Orders()
    a1, b1, a2, b2 = (_fill(orders, lab=lab) for lab in (0, 1, 0, 1))
    assert ordered([Lot((a1,)), Lot((b1,)), Lot((a2,)), Lot((b2,))]) == [a1, a2, b1, b2]


def test_a_revert_names_the_fills_of_its_order_or_provider_only() -> None:
    orders = Orders()
    f1, f2 = _fill(orders, provider=0), _fill(orders, provider=1)
    cancelled = MarketOrderCancelled(f1.offer_hash)
    assert (names(f1, cancelled), names(f2, cancelled)) == (True, False)
    understaked = MarketProviderStakeTooLow(f2.offer.message.provider, 1, 100)
    assert (names(f1, understaked), names(f2, understaked)) == (False, True)
    anonymous = TransactionReverted("openLeaseBatch", b"\xfb\x8f\x41\xb2")  # no order named
    assert names(f1, anonymous) is None
    assert [concerns(f, anonymous) for f in (f1, f2)] == [True, True]
    assert not concerns(f2, cancelled)


def test_an_expired_order_moves_the_clock_past_its_expiry() -> None:
    error = MarketOrderExpired(OrderHash(b"\x01" * 32), NOW + 10)
    assert chain_time_after(error) == NOW + 11
    assert chain_time_after(MarketOrderCancelled(b"\x01" * 32)) is None
