"""explain(): every reason with its numbers, and changes that really make the order match."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market.matching import (
    Change,
    Constraint,
    OrderBook,
    ReasonCode,
    Requirements,
    explain,
)
from market.protocol.types import Bid, Offer
from tests.unit.order_factory import LAB_KEYS, NOW, PROVIDER_KEYS, Orders

pytestmark = pytest.mark.unit


def _bid(price: int = 10, gpus: int = 4, duration: int = 3600, **kw: object) -> Bid:
    fields: dict[str, object] = {
        "lab": LAB_KEYS[0].address,
        "gpu_model": "H100-80GB",
        "gpu_count": gpus,
        "max_price_per_gpu_second": price,
        "duration": duration,
        "expiry": NOW + 3600,
        "nonce": 10**9,
    }
    fields.update(kw)
    return Bid(**fields)  # type: ignore[arg-type]


def _apply(bid: Bid, reqs: Requirements, change: Change) -> tuple[Bid, Requirements]:
    """The bid and requirements with one suggested change applied."""
    if change.field == "requirements.min_memory_gib":
        return bid, dataclasses.replace(reqs, min_memory_gib=int(change.suggested))
    if change.field == "requirements.constraints":
        return bid, dataclasses.replace(reqs, constraints=())
    assert isinstance(change.suggested, int)
    return dataclasses.replace(bid, **{change.field: change.suggested}), reqs


def test_matching_bid_has_no_reasons() -> None:
    book = OrderBook()
    book.submit(Orders().offer(price=10, gpus=8), NOW)
    result = explain(book, _bid(price=10), NOW)
    assert result.matchable
    assert result.reasons == ()
    assert result.available_gpus == 8


def test_price_reason_gives_best_ask_and_the_price_that_fills() -> None:
    book = OrderBook()
    orders = Orders()
    book.submit(orders.offer(price=12, gpus=2, provider=0), NOW)
    book.submit(orders.offer(price=15, gpus=4, provider=1), NOW)
    result = explain(book, _bid(price=10, gpus=4), NOW)
    assert not result.matchable
    [reason] = result.reasons
    assert reason.code is ReasonCode.PRICE_NOT_CROSSED
    assert dict(reason.values) == {"best_ask": 12, "max_price": 10}
    assert result.changes == (Change("max_price_per_gpu_second", 10, 15),)


def test_not_enough_gpus_suggests_the_available_count() -> None:
    book = OrderBook()
    book.submit(Orders().offer(price=10, gpus=3), NOW)
    reqs = Requirements(all_or_none=True)
    result = explain(book, _bid(gpus=8), NOW, requirements=reqs)
    assert not result.matchable
    assert [r.code for r in result.reasons] == [ReasonCode.NOT_ENOUGH_GPUS]
    assert dict(result.reasons[0].values) == {"available": 3, "at_any_price": 3, "asked": 8}
    assert result.changes == (Change("gpu_count", 8, 3),)
    assert explain(book, _bid(gpus=8), NOW).matchable  # a partial fill is acceptable


def test_no_offer_of_the_model_names_the_models_that_exist() -> None:
    book = OrderBook()
    book.submit(Orders().offer(model="A100-80GB"), NOW)
    result = explain(book, _bid(), NOW)
    [reason] = result.reasons
    assert reason.code is ReasonCode.NO_COUNTERPARTY
    assert reason.values["models_available"] == "A100-80GB"


def test_own_order_problems_come_first() -> None:
    book = OrderBook()
    book.submit(Orders().offer(), NOW)
    book.raise_nonce_floor(LAB_KEYS[0].address, 10**10)
    result = explain(book, _bid(expiry=NOW - 5), NOW)
    assert result.codes() == {ReasonCode.ORDER_EXPIRED, ReasonCode.NONCE_CANCELLED}
    expired = next(r for r in result.reasons if r.code is ReasonCode.ORDER_EXPIRED)
    assert dict(expired.values) == {"expiry": NOW - 5, "now": NOW}


def test_under_staked_providers_are_reported_for_bids_and_offers() -> None:
    stakes = {PROVIDER_KEYS[0].address: 100}
    book = OrderBook(min_stake=100, stake_of=stakes.get)
    orders = Orders()
    book.submit(orders.offer(provider=0), NOW)
    stakes[PROVIDER_KEYS[0].address] = 40
    result = explain(book, _bid(), NOW)
    assert result.codes() == {ReasonCode.COUNTERPARTY_NOT_ELIGIBLE, ReasonCode.NOT_ENOUGH_GPUS}
    mine = explain(book, orders.offer(provider=0).signed.message, NOW)
    [reason] = mine.reasons
    assert reason.code is ReasonCode.PROVIDER_NOT_ELIGIBLE
    assert dict(reason.values) == {"free_stake": 40, "min_stake": 100}


def test_provider_learns_why_its_offer_does_not_match() -> None:
    book = OrderBook()
    orders = Orders()
    book.submit(orders.bid(price=12, duration=7200, lab=0), NOW)
    book.submit(orders.bid(price=12, duration=600, lab=1), NOW)
    offer = orders.offer(price=10, min_duration=1800, max_duration=3600).signed.message
    result = explain(book, offer, NOW)
    assert not result.matchable
    assert result.codes() == {ReasonCode.DURATION_OUT_OF_RANGE}
    assert set(result.changes) == {
        Change("min_duration", 1800, 600),
        Change("max_duration", 3600, 7200),
    }
    wide = dataclasses.replace(offer, min_duration=600)
    assert explain(book, wide, NOW).matchable


# --- near misses: one field off, the reason named, every suggested change works ---------------

near_misses = st.sampled_from(["price", "duration_short", "duration_long", "memory", "attrs"])


@given(
    miss=near_misses,
    price=st.integers(2, 1000),
    gpus=st.integers(1, 8),
    duration=st.integers(120, 10_000),
    extra=st.integers(1, 500),
)
@settings(max_examples=80, deadline=None)
def test_near_miss_bids_get_the_right_reason_and_a_working_change(
    miss: str, price: int, gpus: int, duration: int, extra: int
) -> None:
    orders = Orders()
    book = OrderBook()
    offer_kw: dict[str, object] = {
        "price": price,
        "gpus": gpus,
        "min_duration": duration // 2,
        "max_duration": duration * 2,
        "memory_gib": 80,
        "attributes": {"interconnect": "nvlink"},
    }
    bid = _bid(price=price, gpus=gpus, duration=duration)
    reqs = Requirements(
        min_memory_gib=80, constraints=(Constraint("interconnect", "eq", "nvlink"),)
    )
    expected = {
        "price": ReasonCode.PRICE_NOT_CROSSED,
        "duration_short": ReasonCode.DURATION_OUT_OF_RANGE,
        "duration_long": ReasonCode.DURATION_OUT_OF_RANGE,
        "memory": ReasonCode.MEMORY_TOO_SMALL,
        "attrs": ReasonCode.ATTRIBUTES_UNMET,
    }[miss]
    if miss == "price":
        offer_kw["price"] = price + extra
    elif miss == "duration_short":
        offer_kw["min_duration"] = duration + extra
        offer_kw["max_duration"] = duration + 2 * extra
    elif miss == "duration_long":
        offer_kw["max_duration"] = duration - 1
    elif miss == "memory":
        offer_kw["memory_gib"] = 80 - min(extra, 79)
    else:
        offer_kw["attributes"] = {"interconnect": "pcie"}
    book.submit(orders.offer(**offer_kw), NOW)  # type: ignore[arg-type]
    result = explain(book, bid, NOW, requirements=reqs)
    assert not result.matchable
    assert expected in result.codes()
    assert result.changes, "a one-field miss must come with a fix"
    for change in result.changes:
        fixed_bid, fixed_reqs = _apply(bid, reqs, change)
        assert explain(book, fixed_bid, NOW, requirements=fixed_reqs).matchable, change


@given(
    prices=st.lists(st.integers(1, 50), min_size=1, max_size=10),
    max_price=st.integers(1, 50),
    want=st.integers(1, 30),
)
@settings(max_examples=60, deadline=None)
def test_suggested_price_is_the_lowest_that_fills(
    prices: list[int], max_price: int, want: int
) -> None:
    orders = Orders()
    book = OrderBook()
    for i, p in enumerate(prices):
        book.submit(orders.offer(price=p, gpus=3, provider=i % 4), NOW)
    reqs = Requirements(all_or_none=True)
    result = explain(book, _bid(price=max_price, gpus=want), NOW, requirements=reqs)
    enough_at = [p for p in sorted(prices) if 3 * sum(1 for q in prices if q <= p) >= want]
    if enough_at and enough_at[0] <= max_price:
        assert result.matchable
    elif enough_at:
        assert Change("max_price_per_gpu_second", max_price, enough_at[0]) in result.changes
        assert not any(
            explain(book, _bid(price=q, gpus=want), NOW, requirements=reqs).matchable
            for q in range(max_price, enough_at[0])
        )
    else:
        assert ReasonCode.NOT_ENOUGH_GPUS in result.codes()


def test_explain_uses_what_remains_of_a_resting_order() -> None:
    orders = Orders()
    book = OrderBook()
    bid = orders.bid(price=10, gpus=6)
    book.submit(orders.offer(price=10, gpus=2), NOW)
    book.submit(bid, NOW)
    message = bid.signed.message
    result = explain(book, message, NOW, order_hash=bid.hash)
    assert result.codes() == {ReasonCode.NO_COUNTERPARTY}
    book.submit(orders.offer(price=11, gpus=8, provider=1), NOW)
    result = explain(book, message, NOW, order_hash=bid.hash)
    assert result.changes == (Change("max_price_per_gpu_second", 10, 11),)
    assert isinstance(message, Bid)
    assert not isinstance(message, Offer)
