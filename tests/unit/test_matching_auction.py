"""The uniform-price call auction: the clearing rule and its properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market.matching import Constraint, OrderBook, Requirements, clearing_price, run_auction, unfit
from tests.unit.order_factory import MODEL as MODEL_NAME
from tests.unit.order_factory import NOW, Orders

pytestmark = pytest.mark.unit


def test_clearing_price_maximises_volume() -> None:
    offers = [(5, 4), (8, 4), (12, 4)]
    bids = [(15, 3), (9, 3), (6, 3)]
    # p=8: demand 6 (15, 9), supply 8 -> volume 6; p=9 the same volume with imbalance 2.
    assert clearing_price(offers, bids) == (8, 6, 6, 8)


def test_ties_go_to_the_smallest_imbalance_then_the_lowest_price() -> None:
    # p=10 and p=11 both trade 4 GPUs with balanced sides: the lower one wins.
    assert clearing_price([(10, 4)], [(11, 4)]) == (10, 4, 4, 4)
    # p=5: demand 6, supply 2 (imbalance 4); p=7: demand 2, supply 2 (imbalance 0).
    assert clearing_price([(5, 2), (7, 2)], [(7, 2), (6, 4)]) == (7, 2, 2, 4)


def test_nothing_crosses_nothing_clears() -> None:
    assert clearing_price([(10, 4)], [(9, 4)]) is None
    assert clearing_price([], [(9, 4)]) is None


def test_auction_fills_at_offers_prices_within_the_clearing_price() -> None:
    orders = Orders()
    book = OrderBook()
    for price, provider in ((5, 0), (8, 1), (12, 2)):
        book.add(orders.offer(price=price, gpus=4, provider=provider), NOW)
    for price, lab in ((15, 0), (9, 1), (6, 2)):
        book.add(orders.bid(price=price, gpus=3, lab=lab), NOW)
    [clearing] = run_auction(book, NOW)
    assert (clearing.price, clearing.volume) == (8, 6)
    assert clearing.filled == 6
    assert sorted(f.price_per_gpu_second for f in clearing.fills) == [5, 5, 8]
    assert {f.bid.message.max_price_per_gpu_second for f in clearing.fills} == {15, 9}
    assert run_auction(book, NOW)[0].filled == 0  # reserved GPUs are not sold twice


def test_all_or_none_bids_are_filled_whole_or_not_at_all() -> None:
    orders = Orders()
    book = OrderBook()
    book.add(orders.offer(price=5, gpus=4), NOW)
    big = orders.bid(price=10, gpus=6, requirements=Requirements(all_or_none=True))
    book.add(big, NOW)
    book.add(orders.bid(price=9, gpus=2, lab=1), NOW)
    [clearing] = run_auction(book, NOW)
    assert [(f.bid_hash == big.hash, f.gpus) for f in clearing.fills] == [(False, 2)]


def test_auction_pairs_only_offers_whose_signed_terms_fit() -> None:
    orders = Orders()
    book = OrderBook()
    book.add(orders.offer(price=5, gpus=4, attributes={"region": "us-east"}), NOW)  # first
    eu = orders.offer(price=5, gpus=4, provider=1, attributes={"region": "eu-west"})
    book.add(eu, NOW)
    reqs = Requirements(constraints=(Constraint("region", "eq", "eu-west"),))
    book.add(orders.bid(price=10, gpus=4, requirements=reqs), NOW)
    [clearing] = run_auction(book, NOW)
    assert [(f.offer_hash, f.gpus) for f in clearing.fills] == [(eu.hash, 4)]
    assert all(unfit(f.offer.message, f.bid.message) is None for f in clearing.fills)


sides = st.lists(st.tuples(st.integers(1, 30), st.integers(1, 6)), max_size=12)


@given(offers=sides, bids=sides)
@settings(max_examples=80, deadline=None)
def test_auction_properties(offers: list[tuple[int, int]], bids: list[tuple[int, int]]) -> None:
    orders = Orders()
    book = OrderBook()
    for i, (price, gpus) in enumerate(offers):
        book.add(orders.offer(price=price, gpus=gpus, provider=i % 4), NOW)
    for i, (price, gpus) in enumerate(bids):
        book.add(orders.bid(price=price, gpus=gpus, lab=i % 4), NOW)
    clearings = run_auction(book, NOW)
    found = clearing_price(offers, bids)
    if found is None:
        assert all(c.filled == 0 for c in clearings)
        return
    [clearing] = clearings
    p = clearing.price
    assert p is not None
    for fill in clearing.fills:
        assert fill.bid.message.max_price_per_gpu_second >= p  # no filled bid below p*
        assert fill.offer.message.price_per_gpu_second <= p  # no filled offer above p*
    # Every order fits every other here, so the allocation reaches the volume p* admits...
    assert clearing.filled == clearing.volume
    # ...and no other price would trade more.
    for q in range(1, 32):
        demand = sum(g for price, g in bids if price >= q)
        supply = sum(g for price, g in offers if price <= q)
        assert min(demand, supply) <= clearing.volume


def test_the_clearing_price_is_one_at_which_fitting_orders_trade() -> None:
    """By price and quantity alone p=3 is best (4 GPUs asked, 4 offered at 3), but the only bid
    needs 80 GiB, which only the offer at 9 has: the auction clears at 9 and trades 4, where a
    price chosen ignoring fit would trade nothing."""
    orders = Orders()
    book = OrderBook()
    book.add(orders.offer(price=3, gpus=4, memory_gib=40), NOW)
    big = orders.offer(price=9, gpus=4, memory_gib=80, provider=1)
    book.add(big, NOW)
    book.add(orders.bid(price=10, gpus=4, requirements=Requirements(min_memory_gib=80)), NOW)
    assert clearing_price([(3, 4), (9, 4)], [(10, 4)]) == (3, 4, 4, 4)
    [clearing] = run_auction(book, NOW)
    assert (clearing.price, clearing.filled) == (9, 4)
    assert [f.offer_hash for f in clearing.fills] == [big.hash]


@given(
    asks=st.lists(
        st.tuples(st.integers(1, 20), st.integers(1, 4), st.booleans()), min_size=1, max_size=5
    ),
    wants=st.lists(
        st.tuples(st.integers(1, 20), st.integers(1, 4), st.booleans()), min_size=1, max_size=5
    ),
)
@settings(max_examples=150, deadline=None)
def test_no_single_price_trades_more_fitting_gpus_than_the_clearing_price(
    asks: list[tuple[int, int, bool]], wants: list[tuple[int, int, bool]]
) -> None:
    """Exhaustive check of rule 3: the clearing trades at least what any candidate price would,
    each fill fits, and every fill's ask <= p* <= its bid's maximum."""

    def build() -> OrderBook:
        orders = Orders()
        book = OrderBook()
        for i, (price, gpus, big) in enumerate(asks):
            book.add(orders.offer(price=price, gpus=gpus, memory_gib=80 if big else 40,
                                  provider=i % 4), NOW)  # fmt: skip
        for i, (price, gpus, needs_big) in enumerate(wants):
            reqs = Requirements(min_memory_gib=80 if needs_big else 0)
            book.add(orders.bid(price=price, gpus=gpus, lab=i % 4, requirements=reqs), NOW)
        return book

    [clearing] = run_auction(build(), NOW)
    prices = {p for p, _, _ in asks} | {p for p, _, _ in wants}
    for p in prices:
        assert clearing.filled >= _traded_at(build(), p)
    for f in clearing.fills:
        assert clearing.price is not None
        assert f.offer.message.price_per_gpu_second <= clearing.price
        assert clearing.price <= f.bid.message.max_price_per_gpu_second
        assert unfit(f.offer.message, f.bid.message) is None


def _traded_at(book: OrderBook, price: int) -> int:
    """GPUs a greedy allocation would trade at ``price`` (rule 2 at that one price)."""
    from market.matching.auction import _plan_whole

    sellers = [o for o in book.offers(MODEL_NAME, NOW) if o.price <= price]
    buyers = [b for b in book.bids(MODEL_NAME, NOW) if b.price >= price]
    return sum(g for _, _, g in _plan_whole(sellers, buyers))
