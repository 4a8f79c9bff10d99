"""The order book: admission, price-time priority, fit, partial fills, chain sync, invariants."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market.errors import (
    DuplicateOrder,
    InvalidSignature,
    OrderCancelled,
    OrderExpired,
    OrderFilled,
    ProviderNotEligible,
    WrongArgumentType,
)
from market.matching import (
    Constraint,
    OrderBook,
    Requirements,
    VerifiedOrder,
    fits,
    unfit,
    verify_orders,
)
from market.protocol.signing import SigningKey
from market.protocol.types import Billing, Signed
from tests.unit.order_factory import DOMAIN, LAB_KEYS, NOW, PROVIDER_KEYS, Orders

pytestmark = pytest.mark.unit


@pytest.fixture
def orders() -> Orders:
    return Orders()


def test_bid_fills_from_cheapest_offer_at_the_offers_price(orders: Orders) -> None:
    book = OrderBook()
    book.submit(orders.offer(price=12), NOW)
    cheap = orders.offer(price=9, provider=1)
    book.submit(cheap, NOW)
    [fill] = book.submit(orders.bid(price=15, gpus=4), NOW)
    assert fill.offer_hash == cheap.hash
    assert fill.gpus == 4
    assert fill.price_per_gpu_second == 9
    assert fill.escrow == 9 * 4 * 3600


def test_earlier_offer_wins_at_the_same_price(orders: Orders) -> None:
    book = OrderBook()
    first = orders.offer(price=10, provider=0)
    book.submit(first, NOW)
    book.submit(orders.offer(price=10, provider=1), NOW)
    [fill] = book.submit(orders.bid(price=10, gpus=2), NOW)
    assert fill.offer_hash == first.hash


def test_large_bid_is_served_by_several_providers_as_a_cluster(orders: Orders) -> None:
    book = OrderBook()
    for p in range(3):
        book.submit(orders.offer(price=10 + p, gpus=4, provider=p), NOW)
    fills = book.submit(orders.bid(price=20, gpus=10), NOW)
    assert [(f.price_per_gpu_second, f.gpus) for f in fills] == [(10, 4), (11, 4), (12, 2)]
    assert len({f.bid_hash for f in fills}) == 1
    [left] = book.offers("H100-80GB")
    assert (left.price, left.remaining) == (12, 2)


def test_one_offer_serves_several_bids_dearest_first(orders: Orders) -> None:
    book = OrderBook()
    low = orders.bid(price=10, gpus=3, lab=0)
    high = orders.bid(price=14, gpus=3, lab=1)
    book.submit(low, NOW)
    book.submit(high, NOW)
    fills = book.submit(orders.offer(price=10, gpus=4), NOW)
    assert [(f.bid_hash, f.gpus) for f in fills] == [(high.hash, 3), (low.hash, 1)]
    assert book.get(low.hash) is not None
    assert book.get(low.hash).remaining == 2


def test_no_match_when_prices_do_not_cross(orders: Orders) -> None:
    book = OrderBook()
    book.submit(orders.offer(price=11), NOW)
    assert book.submit(orders.bid(price=10), NOW) == []
    assert book.best_offer_price("H100-80GB") == 11
    assert book.best_bid_price("H100-80GB") == 10


def test_gpu_models_never_match_across(orders: Orders) -> None:
    book = OrderBook()
    book.submit(orders.offer(price=1, model="A100-40GB"), NOW)
    assert book.submit(orders.bid(price=100, model="A100-80GB"), NOW) == []


@pytest.mark.parametrize(
    ("offer_kw", "bid_kw"),
    [
        ({"min_duration": 7200}, {"duration": 3600}),
        ({"max_duration": 1800}, {"duration": 3600}),
        ({"memory_gib": 40}, {"requirements": Requirements(min_memory_gib=80)}),
        (
            {"attributes": {"interconnect": "pcie"}},
            {
                "requirements": Requirements(
                    constraints=(Constraint("interconnect", "eq", "nvlink"),)
                )
            },
        ),
        (
            {"attributes": {"region": "us-east"}, "bandwidth_gbps": 100},
            {"requirements": Requirements(constraints=(Constraint("bandwidth_gbps", "ge", 400),))},
        ),
        (
            {"attributes": {"capabilities": ("mig",)}},
            {"requirements": Requirements(constraints=(Constraint("capabilities", "has", "ecc"),))},
        ),
        ({}, {"requirements": Requirements(billing=Billing.METERED)}),
    ],
)
def test_offers_that_do_not_fit_the_bid_are_skipped(
    orders: Orders, offer_kw: dict[str, object], bid_kw: dict[str, object]
) -> None:
    book = OrderBook()
    misfit = orders.offer(price=5, provider=0, **offer_kw)  # type: ignore[arg-type]
    book.submit(misfit, NOW)
    good = orders.offer(
        price=8,
        provider=1,
        attributes={"interconnect": "nvlink", "capabilities": ("ecc",)},
        bandwidth_gbps=800,
        billing=(Billing.RENTAL, Billing.METERED),
    )
    book.submit(good, NOW)
    [fill] = book.submit(orders.bid(price=10, **bid_kw), NOW)  # type: ignore[arg-type]
    assert fill.offer_hash == good.hash


def test_all_or_none_bid_waits_until_it_can_be_filled_whole(orders: Orders) -> None:
    book = OrderBook()
    book.submit(orders.offer(price=10, gpus=4, provider=0), NOW)
    whole = orders.bid(price=10, gpus=6, requirements=Requirements(all_or_none=True))
    assert book.submit(whole, NOW) == []
    fills = book.submit(orders.offer(price=10, gpus=4, provider=1), NOW)
    assert sorted(f.gpus for f in fills) == [2, 4]
    assert {f.bid_hash for f in fills} == {whole.hash}


def test_offers_of_ineligible_providers_are_refused_and_skipped(orders: Orders) -> None:
    stakes: dict[str, int | None] = {PROVIDER_KEYS[0].address: 100, PROVIDER_KEYS[1].address: 50}
    book = OrderBook(min_stake=100, stake_of=lambda a: stakes.get(a))
    with pytest.raises(ProviderNotEligible) as err:
        book.submit(orders.offer(provider=1), NOW)
    assert (err.value.free_stake, err.value.min_stake) == (50, 100)
    with pytest.raises(ProviderNotEligible, match="not registered"):
        book.submit(orders.offer(provider=2), NOW)
    book.submit(orders.offer(price=10, provider=0), NOW)
    stakes[PROVIDER_KEYS[0].address] = 99  # unstaked since
    assert book.submit(orders.bid(price=10), NOW) == []


def test_admission_errors_are_typed_and_change_nothing(orders: Orders) -> None:
    book = OrderBook()
    offer = orders.offer()
    book.submit(offer, NOW)
    with pytest.raises(DuplicateOrder):
        book.submit(offer, NOW)
    with pytest.raises(OrderExpired) as expired:
        book.submit(orders.offer(expiry=NOW - 1), NOW)
    assert (expired.value.expiry, expired.value.now) == (NOW - 1, NOW)
    with pytest.raises(OrderFilled):
        book.add(orders.offer(gpus=2), NOW, filled=2)
    book.raise_nonce_floor(LAB_KEYS[0].address, 10**6)
    with pytest.raises(OrderCancelled) as cancelled:
        book.submit(orders.bid(nonce=5), NOW)
    assert (cancelled.value.nonce, cancelled.value.min_nonce) == (5, 10**6)
    assert len(book) == 1


def test_expiry_is_inclusive_of_the_boundary_second(orders: Orders) -> None:
    book = OrderBook()
    book.submit(orders.offer(expiry=NOW + 10), NOW)
    assert book.submit(orders.bid(), NOW + 10) != []  # valid while now <= expiry
    book2 = OrderBook()
    late = orders.offer(expiry=NOW + 10)
    book2.submit(late, NOW)
    assert book2.expire(NOW + 10) == []
    assert book2.submit(orders.bid(), NOW + 11) == []
    assert late.hash not in book2  # dropped when the matcher met it expired


def test_cancel_by_hash_and_by_nonce_floor_remove_orders(orders: Orders) -> None:
    book = OrderBook()
    a = orders.offer(provider=0)
    b = orders.offer(provider=0)
    c = orders.offer(provider=1)
    for o in (a, b, c):
        book.submit(o, NOW)
    book.cancel(a.hash)
    assert a.hash not in book
    assert book.is_cancelled(a.hash)
    with pytest.raises(OrderCancelled):
        book.submit(a, NOW)
    m = b.signed.message.nonce
    assert book.raise_nonce_floor(PROVIDER_KEYS[0].address, m + 1) == 1
    assert [o.hash for o in book.offers("H100-80GB")] == [c.hash]


def test_pending_fills_settle_or_release(orders: Orders) -> None:
    book = OrderBook()
    offer = orders.offer(gpus=4)
    book.submit(offer, NOW)
    [fill] = book.submit(orders.bid(gpus=4), NOW)
    assert list(book.offers("H100-80GB")) == []
    book.release(fill)  # openLease failed: the GPUs come back, priority kept
    [entry] = book.offers("H100-80GB")
    assert entry.remaining == 4
    [again] = book.submit(orders.bid(gpus=3, lab=1), NOW)
    book.settle(again)
    assert entry.filled == 3
    assert entry.pending == 0
    assert entry.remaining == 1


def test_sync_filled_applies_fills_made_by_other_matchers(orders: Orders) -> None:
    book = OrderBook()
    offer = orders.offer(gpus=8)
    book.submit(offer, NOW)
    book.sync_filled(offer.hash, 6)
    book.sync_filled(offer.hash, 5)  # stale event: ignored
    [fill] = book.submit(orders.bid(gpus=4), NOW)
    assert fill.gpus == 2
    book.sync_filled(offer.hash, 8)
    assert offer.hash in book  # still pending
    book.settle(fill)
    assert offer.hash not in book
    with pytest.raises(OrderFilled):  # replaying a filled order does not bring it back
        book.submit(offer, NOW)


def test_reset_filled_gives_back_gpus_a_reorganisation_undid_and_keeps_pending_ones(
    orders: Orders,
) -> None:
    book = OrderBook()
    offer = orders.offer(gpus=8)
    book.submit(offer, NOW)
    book.sync_filled(offer.hash, 5)
    [pending] = book.submit(orders.bid(gpus=3), NOW)  # the rest in flight: out of the book
    assert [e.hash for e in book.offers(offer.signed.message.gpu_model)] == []
    book.reset_filled(offer.hash, 1)  # the chain now holds one GPU filled
    entry = book.get(offer.hash)
    assert entry is not None
    assert (entry.filled, entry.pending, entry.remaining) == (1, 3, 4)
    [again] = book.submit(orders.bid(gpus=4), NOW)  # back in the book, at its place in time
    assert (again.offer_hash, again.gpus) == (offer.hash, 4)
    book.settle(pending)
    book.reset_filled(offer.hash, 8)  # filled on the new branch: gone once nothing is pending
    assert offer.hash in book
    book.release(again)
    assert offer.hash not in book


def test_verification_rejects_bad_signatures_and_tampered_terms(orders: Orders) -> None:
    good = orders.offer().signed
    forged = Signed(dataclasses.replace(good.message, price_per_gpu_second=1), good.signature)
    other = SigningKey(b"\x77" * 32).sign(DOMAIN, good.message)
    more_memory = Signed(dataclasses.replace(good.message, memory_gib=141), good.signature)
    nvlink = Signed(dataclasses.replace(good.message, features=1 << 1), good.signature)
    valid, rejected = verify_orders(DOMAIN, [good, forged, other, more_memory, nvlink])
    assert [v.signed for v in valid] == [good]
    assert [r.index for r in rejected] == [1, 2, 3, 4]
    assert all(isinstance(r.error, InvalidSignature) for r in rejected)
    assert rejected[1].error.recovered == SigningKey(b"\x77" * 32).address  # type: ignore[union-attr]


def test_verified_orders_cannot_be_made_without_verification(orders: Orders) -> None:
    signed = orders.offer().signed
    with pytest.raises(WrongArgumentType, match="made by verify_orders"):
        VerifiedOrder(signed, b"\0" * 32)  # type: ignore[arg-type]


# --- properties --------------------------------------------------------------------------------

order_specs = st.lists(
    st.tuples(
        st.booleans(),  # offer?
        st.integers(1, 20),  # price
        st.integers(1, 8),  # gpus
        st.sampled_from([600, 3600, 7200]),  # duration (bid) / max duration (offer)
        st.integers(0, 3),  # who
        st.booleans(),  # all-or-none (bids)
        st.integers(0, 3),  # hardware and billing terms, from the tables below
    ),
    max_size=40,
)
Spec = tuple[bool, int, int, int, int, bool, int]
_OFFER_TERMS: list[dict[str, object]] = [
    {},
    {"memory_gib": 40, "attributes": {"interconnect": "pcie", "region": "us-east"}},
    {
        "bandwidth_gbps": 400,
        "attributes": {"interconnect": "nvlink", "capabilities": ("ecc",)},
        "billing": (Billing.RENTAL, Billing.METERED),
    },
    {"memory_gib": 141, "billing": (Billing.METERED,), "attributes": {"region": "eu-west"}},
]
_BID_TERMS = [
    Requirements(),
    Requirements(min_memory_gib=80, constraints=(Constraint("capabilities", "has", "ecc"),)),
    Requirements(constraints=(Constraint("region", "in", ("eu-west", "uk")),)),
    Requirements(billing=Billing.METERED, constraints=(Constraint("bandwidth_gbps", "ge", 100),)),
]


def _build(specs: list[Spec]) -> list[VerifiedOrder]:
    orders = Orders()
    built = []
    for is_offer, price, gpus, duration, who, aon, terms in specs:
        if is_offer:
            built.append(
                orders.offer(
                    price=price,
                    gpus=gpus,
                    provider=who,
                    max_duration=duration,
                    **_OFFER_TERMS[terms],  # type: ignore[arg-type]
                )
            )
        else:
            reqs = dataclasses.replace(_BID_TERMS[terms], all_or_none=aon)
            built.append(
                orders.bid(price=price, gpus=gpus, lab=who, duration=duration, requirements=reqs)
            )
    return built


def _run(built: list[VerifiedOrder]) -> list[tuple[bytes, bytes, int]]:
    book = OrderBook()
    out = []
    for order in built:
        out.extend((f.offer_hash, f.bid_hash, f.gpus) for f in book.submit(order, NOW))
    return out


@given(order_specs)
@settings(max_examples=60, deadline=None)
def test_book_invariants_hold_for_any_order_flow(specs: list[Spec]) -> None:
    built = _build(specs)
    book = OrderBook()
    taken: dict[bytes, int] = {}
    size = {o.hash: o.signed.message.gpu_count for o in built}
    for order in built:
        for fill in book.submit(order, NOW):
            o, b = fill.offer.message, fill.bid.message
            assert o.price_per_gpu_second <= b.max_price_per_gpu_second  # crosses
            assert unfit(o, b) is None  # every signed term fits, as openLease checks them
            assert fill.gpus > 0
            taken[fill.offer_hash] = taken.get(fill.offer_hash, 0) + fill.gpus
            taken[fill.bid_hash] = taken.get(fill.bid_hash, 0) + fill.gpus
    assert all(taken[h] <= size[h] for h in taken)  # fills never exceed order sizes
    # At rest, no crossing pair fits (all-or-none bids that cannot fill whole aside).
    offers = list(book.offers("H100-80GB"))
    for bid in book.bids("H100-80GB"):
        crossing = [o for o in offers if o.price <= bid.price and fits(o, bid)]
        if bid.all_or_none:
            assert sum(o.remaining for o in crossing) < bid.remaining
        else:
            assert crossing == []
    # Priority: resting offers are in (price, arrival) order.
    keys = [(o.price, o.seq) for o in offers]
    assert keys == sorted(keys)
    # The bid side's duration index counts exactly the bids resting in its levels.
    side = book._bids.get("H100-80GB")
    if side is not None:
        resting = Counter(e.duration for level in side.levels.values() for e in level)
        assert side.durations == dict(resting)
        assert side.sorted_durations == sorted(resting)


@given(order_specs)
@settings(max_examples=30, deadline=None)
def test_matching_is_deterministic(specs: list[Spec]) -> None:
    built = _build(specs)
    assert _run(built) == _run(built)


@given(st.lists(st.tuples(st.integers(1, 20), st.integers(1, 8)), min_size=1, max_size=12))
@settings(max_examples=40, deadline=None)
def test_a_bid_takes_offers_in_price_time_priority(offers: list[tuple[int, int]]) -> None:
    factory = Orders()
    book = OrderBook()
    built = [factory.offer(price=p, gpus=g, provider=i % 4) for i, (p, g) in enumerate(offers)]
    for o in built:
        book.submit(o, NOW)
    want = sum(g for _, g in offers) // 2 + 1
    fills = book.submit(factory.bid(price=20, gpus=want), NOW)
    expected = sorted(range(len(built)), key=lambda i: (offers[i][0], i))
    taken = [f.offer_hash for f in fills]
    assert taken == [built[i].hash for i in expected][: len(taken)]
    assert sum(f.gpus for f in fills) == want


def test_threaded_verification_gives_the_same_result_as_one_thread(orders: Orders) -> None:
    good = [orders.offer(provider=i % 4).signed for i in range(300)]
    good += [orders.bid(lab=i % 4).signed for i in range(300)]
    forged = Signed(dataclasses.replace(good[7].message, nonce=10**12), good[7].signature)
    batch = [*good[:400], forged, *good[400:]]
    one = verify_orders(DOMAIN, batch, threads=1)
    many = verify_orders(DOMAIN, batch, threads=3)
    assert [v.hash for v in one[0]] == [v.hash for v in many[0]]
    assert len(many[0]) == 600
    assert [r.index for r in many[1]] == [r.index for r in one[1]] == [400]
