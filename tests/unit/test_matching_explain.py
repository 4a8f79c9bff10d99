"""explain(): every reason with its numbers, and changes that really make the order match."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market.matching import (
    REASON_OF,
    Change,
    Constraint,
    OrderBook,
    ReasonCode,
    Requirements,
    encode_attributes,
    explain,
    unfit,
)
from market.matching.constraints import LANE_BITS, VOCABULARY
from market.matching.term_reasons import failures, features_text
from market.protocol.types import ALL_BILLING_MODES, Bid, Billing, Offer
from tests.unit.order_factory import LAB_KEYS, NOW, PROVIDER_KEYS, Orders

pytestmark = pytest.mark.unit


def _bid(
    price: int = 10,
    gpus: int = 4,
    duration: int = 3600,
    requirements: Requirements | None = None,
    **kw: object,
) -> Bid:
    """An unsigned bid (explain needs none), its requirements as its signed fields."""
    fields: dict[str, object] = {
        "lab": LAB_KEYS[0].address,
        "gpu_model": "H100-80GB",
        "gpu_count": gpus,
        "max_price_per_gpu_second": price,
        "duration": duration,
        "expiry": NOW + 3600,
        "nonce": 10**9,
        **(requirements or Requirements()).bid_fields(),
    }
    fields.update(kw)
    return Bid(**fields)  # type: ignore[arg-type]


def _apply(order: Offer | Bid, change: Change) -> Offer | Bid:
    """The order with one suggested change applied: a change names a field of the order."""
    return dataclasses.replace(order, **{change.field: change.suggested})


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
    result = explain(book, _bid(gpus=8, all_or_none=True), NOW)
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


# --- near misses: one term off, the reason named, every suggested change works ---------------

near_misses = st.sampled_from(
    [
        "price",
        "duration_short",
        "duration_long",
        "memory",
        "bandwidth",
        "features_missing",
        "feature_not_accepted",
        "billing",
    ]
)
_EXPECTED = {
    "price": ReasonCode.PRICE_NOT_CROSSED,
    "duration_short": ReasonCode.DURATION_OUT_OF_RANGE,
    "duration_long": ReasonCode.DURATION_OUT_OF_RANGE,
    "memory": ReasonCode.MEMORY_TOO_SMALL,
    "bandwidth": ReasonCode.BANDWIDTH_TOO_LOW,
    "features_missing": ReasonCode.FEATURES_MISSING,
    "feature_not_accepted": ReasonCode.FEATURE_NOT_ACCEPTED,
    "billing": ReasonCode.BILLING_NOT_OFFERED,
}
_REQS = Requirements(
    min_memory_gib=80,
    constraints=(
        Constraint("interconnect", "eq", "nvlink"),
        Constraint("capabilities", "has", "ecc"),
        Constraint("bandwidth_gbps", "ge", 200),
    ),
)


def _near_miss(miss: str, price: int, duration: int, extra: int) -> dict[str, object]:
    """Offer keywords that fit ``_REQS`` at ``price`` and ``duration`` except on ``miss``."""
    kw: dict[str, object] = {
        "price": price,
        "min_duration": duration // 2,
        "max_duration": duration * 2,
        "memory_gib": 80,
        "bandwidth_gbps": 200,
        "attributes": {"interconnect": "nvlink", "capabilities": ("ecc", "mig")},
    }
    if miss == "price":
        kw["price"] = price + extra
    elif miss == "duration_short":
        kw["min_duration"] = duration + extra
        kw["max_duration"] = duration + 2 * extra
    elif miss == "duration_long":
        kw["max_duration"] = duration - 1
    elif miss == "memory":
        kw["memory_gib"] = 80 - min(extra, 79)
    elif miss == "bandwidth":
        kw["bandwidth_gbps"] = 200 - min(extra, 200)
    elif miss == "features_missing":
        kw["attributes"] = {"interconnect": "nvlink", "capabilities": ("mig",)}
    elif miss == "feature_not_accepted":
        kw["attributes"] = {"interconnect": "pcie", "capabilities": ("ecc",)}
    else:
        kw["billing"] = (Billing.METERED,)
    return kw


@given(
    miss=near_misses,
    price=st.integers(2, 1000),
    gpus=st.integers(1, 8),
    duration=st.integers(120, 10_000),
    extra=st.integers(1, 500),
)
@settings(max_examples=120, deadline=None)
def test_near_miss_bids_get_the_right_reason_and_a_working_change(
    miss: str, price: int, gpus: int, duration: int, extra: int
) -> None:
    book = OrderBook()
    book.submit(Orders().offer(gpus=gpus, **_near_miss(miss, price, duration, extra)), NOW)  # type: ignore[arg-type]
    bid = _bid(price=price, gpus=gpus, duration=duration, requirements=_REQS)
    result = explain(book, bid, NOW)
    assert not result.matchable
    assert _EXPECTED[miss] in result.codes()
    assert result.changes, "a one-term miss must come with a fix"
    for change in result.changes:
        assert explain(book, _apply(bid, change), NOW).matchable, change


@given(miss=near_misses, price=st.integers(2, 1000), duration=st.integers(120, 10_000))
@settings(max_examples=80, deadline=None)
def test_near_miss_offers_get_the_right_reason(miss: str, price: int, duration: int) -> None:
    orders = Orders()
    book = OrderBook()
    book.submit(orders.bid(price=price, duration=duration, requirements=_REQS), NOW)
    offer = orders.offer(**_near_miss(miss, price, duration, 7)).signed.message  # type: ignore[arg-type]
    result = explain(book, offer, NOW)
    assert not result.matchable
    assert result.codes() == {_EXPECTED[miss]}
    for change in result.changes:  # price, durations and billing modes are the provider's
        assert explain(book, _apply(offer, change), NOW).matchable, change
    hardware = ("memory", "bandwidth", "features_missing", "feature_not_accepted")
    assert bool(result.changes) == (miss not in hardware)


def test_hardware_reasons_carry_the_numbers_of_the_offers_and_the_bid() -> None:
    orders = Orders()
    book = OrderBook()
    attrs = {"interconnect": "pcie", "region": "us-east", "capabilities": ("mig",)}
    book.submit(orders.offer(memory_gib=40, bandwidth_gbps=100, attributes=attrs), NOW)
    book.submit(orders.offer(memory_gib=48, bandwidth_gbps=50, attributes=attrs, provider=1), NOW)
    reqs = Requirements(
        min_memory_gib=80,
        constraints=(
            Constraint("bandwidth_gbps", "ge", 400),
            Constraint("capabilities", "has", "ecc"),
            Constraint("interconnect", "in", ("nvlink", "nvswitch")),
        ),
    )
    result = explain(book, _bid(requirements=reqs), NOW)
    by_code = {r.code: dict(r.values) for r in result.reasons}
    assert by_code[ReasonCode.MEMORY_TOO_SMALL] == {"min_memory_gib": 80, "max_offered_gib": 48}
    assert by_code[ReasonCode.BANDWIDTH_TOO_LOW] == {
        "min_bandwidth_gbps": 400,
        "max_offered_gbps": 100,
    }
    ecc = encode_attributes({"capabilities": ("ecc",)})
    assert by_code[ReasonCode.FEATURES_MISSING] == {
        "offers": 2,
        "required_features": ecc,
        "missing_features": ecc,
        "missing": "capabilities=ecc",
    }
    pcie, wanted = 0b001, 0b110
    assert by_code[ReasonCode.FEATURE_NOT_ACCEPTED] == {
        "offers": 2,
        "lane": 0,
        "attribute": "interconnect",
        "accepted": wanted,
        "offered": pcie,
        "accepted_values": "nvlink,nvswitch",
        "offered_values": "pcie",
    }
    assert result.changes == ()  # every offer misses on several terms: no single change


def test_billing_reason_names_the_modes_and_the_change_of_either_side() -> None:
    orders = Orders()
    book = OrderBook()
    book.submit(orders.offer(billing=(Billing.RENTAL,)), NOW)
    metered = _bid(billing=Billing.METERED)
    result = explain(book, metered, NOW)
    assert result.codes() == {ReasonCode.BILLING_NOT_OFFERED, ReasonCode.NOT_ENOUGH_GPUS}
    reason = result.reasons[0]
    assert dict(reason.values) == {"billing": 1, "offers": 1, "billing_modes": 0b01}
    assert result.changes == (Change("billing", 1, 0),)
    assert explain(book, _apply(metered, result.changes[0]), NOW).matchable
    book = OrderBook()
    book.submit(orders.bid(requirements=Requirements(billing=Billing.METERED)), NOW)
    mine = explain(book, orders.offer().signed.message, NOW)
    assert mine.changes == (Change("billing_modes", 0b01, 0b11),)
    assert dict(mine.reasons[0].values) == {"bids": 1, "billing_modes": 0b01, "wanted_modes": 0b10}


def test_features_text_names_values_and_bits_outside_the_vocabulary() -> None:
    bits = encode_attributes({"region": "eu-west", "capabilities": ("ecc", "mig")})
    assert features_text(bits) == "region=eu-west; capabilities=ecc,mig"
    assert features_text(1 << (15 * LANE_BITS + 3)) == "lane 15=bit 3"
    assert features_text(1 << 9) == "interconnect=bit 9"  # lane 0 has 3 values
    assert features_text(0) == "none"
    assert len(VOCABULARY) <= 16


# --- explain's term checks are the fit rule's --------------------------------------------------

features = st.builds(
    lambda a, b, c: a | b << 16 | c << (15 * LANE_BITS),
    st.integers(0, 7),
    st.integers(0, 3),
    st.integers(0, 3),
)
offers = st.builds(
    Offer,
    provider=st.just(PROVIDER_KEYS[0].address),
    gpu_model=st.sampled_from(["H100-80GB", "A100-80GB"]),
    gpu_count=st.just(1),
    memory_gib=st.sampled_from([40, 80]),
    price_per_gpu_second=st.just(1),
    min_duration=st.sampled_from([60, 600]),
    max_duration=st.just(3600),
    expiry=st.just(NOW),
    nonce=st.just(1),
    bandwidth_gbps=st.sampled_from([0, 100, 400]),
    features=features,
    billing_modes=st.integers(1, ALL_BILLING_MODES),
)
bids = st.builds(
    Bid,
    lab=st.just(LAB_KEYS[0].address),
    gpu_model=st.sampled_from(["H100-80GB", "A100-80GB"]),
    gpu_count=st.just(1),
    max_price_per_gpu_second=st.just(1),
    duration=st.sampled_from([60, 600, 7200]),
    expiry=st.just(NOW),
    nonce=st.just(1),
    min_memory_gib=st.sampled_from([0, 80]),
    min_bandwidth_gbps=st.sampled_from([0, 100, 400]),
    required_features=features,
    accepted_features=features,
    billing=st.sampled_from(list(Billing)),
)


@given(offer=offers, bid=bids)
@settings(max_examples=300, deadline=None)
def test_explain_checks_the_terms_the_fit_rule_checks(offer: Offer, bid: Bid) -> None:
    failed = failures(offer, bid, True)
    why = unfit(offer, bid)
    if offer.gpu_model != bid.gpu_model:  # explain only pairs orders of one model
        assert why is not None
        assert REASON_OF[why] is ReasonCode.NO_COUNTERPARTY
        return
    if why is None:
        assert failed == []
    else:
        assert failed[0] is REASON_OF[why]  # the first term explain names is the contract's


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
    result = explain(book, _bid(price=max_price, gpus=want, all_or_none=True), NOW)
    enough_at = [p for p in sorted(prices) if 3 * sum(1 for q in prices if q <= p) >= want]
    if enough_at and enough_at[0] <= max_price:
        assert result.matchable
    elif enough_at:
        assert Change("max_price_per_gpu_second", max_price, enough_at[0]) in result.changes
        assert not any(
            explain(book, _bid(price=q, gpus=want, all_or_none=True), NOW).matchable
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
