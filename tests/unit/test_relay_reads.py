"""The relay's read API without a relay: which offers ``/v1/offers`` keeps and in what order, its
query's refusals, the read answers in msgpack and JSON, and the lab's bid-fate events."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from multidict import MultiDict

from market.errors import DecodeError, UnknownMessageType
from market.matching import OrderBook, Resting, explain
from market.protocol.types import Billing
from market.reputation import Reputation
from nodes.daemon.explain import log_no_match
from nodes.lab.fates import BidFates
from nodes.lab.store import JobRecord
from nodes.logs import get_logger
from nodes.relay.reads import (
    OfferFilter,
    bid_view,
    explain_pair,
    offer_filter,
    offer_view,
    select_offers,
)
from nodes.wire.frames import decode_read, decode_read_json, encode, encode_json
from nodes.wire.reads import (
    BidList,
    ModelList,
    ModelSummary,
    OfferList,
    TokenView,
)
from tests.unit.order_factory import NOW, Orders

pytestmark = pytest.mark.unit

Events = list[tuple[str, int, dict[str, object]]]
TUSD = TokenView("tUSD", 6)


@pytest.fixture
def events() -> Iterator[Events]:
    """(event, level, fields) of every record under gpumarket.test."""
    seen: Events = []
    handler = logging.Handler()
    handler.emit = lambda r: seen.append((r.event, r.levelno, r.fields))  # type: ignore[attr-defined,method-assign]
    logger = logging.getLogger("gpumarket.test")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield seen
    logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)


def resting_offers(orders: Orders, *specs: dict[str, object]) -> list[Resting]:
    book = OrderBook()
    for spec in specs:
        book.submit(orders.offer(**spec), NOW)  # type: ignore[arg-type]
    return list(book.offers("H100-80GB", NOW))


def test_offers_come_cheapest_first_then_most_gpus_left_then_earliest() -> None:
    orders = Orders()
    entries = resting_offers(
        orders,
        {"price": 9, "gpus": 8},
        {"price": 4, "gpus": 2},
        {"price": 4, "gpus": 8},
        {"price": 4, "gpus": 2, "provider": 1},
    )
    chosen = select_offers(reversed(entries), OfferFilter())
    assert [(e.price, e.remaining, e.seq) for e in chosen] == [
        (4, 8, 3), (4, 2, 2), (4, 2, 4), (9, 8, 1),
    ]  # fmt: skip


def test_the_filter_keeps_offers_by_gpus_price_billing_memory_and_limit() -> None:
    orders = Orders()
    entries = resting_offers(
        orders,
        {"price": 3, "gpus": 2},
        {"price": 5, "gpus": 8, "memory_gib": 40},
        {"price": 7, "gpus": 8, "billing": (Billing.METERED,)},
    )

    def prices(wanted: OfferFilter) -> list[int]:
        return [e.price for e in select_offers(entries, wanted)]

    assert prices(OfferFilter()) == [3, 5, 7]
    assert prices(OfferFilter(gpus=4)) == [5, 7]
    assert prices(OfferFilter(max_price=5)) == [3, 5]
    assert prices(OfferFilter(billing=Billing.METERED)) == [7]
    assert prices(OfferFilter(billing=Billing.RENTAL)) == [3, 5]
    assert prices(OfferFilter(min_memory_gib=80)) == [3, 7]
    assert prices(OfferFilter(limit=1)) == [3]


def test_the_offers_query_is_read_and_its_bad_values_refused() -> None:
    query = MultiDict(model="H100-80GB", gpus="2", maxPrice="7", billing="metered", limit="500")
    assert offer_filter(query, max_page=100) == OfferFilter(
        model="H100-80GB", gpus=2, max_price=7, billing=Billing.METERED, limit=100
    )
    assert offer_filter(MultiDict(), max_page=100) == OfferFilter()
    with pytest.raises(DecodeError, match="gpus must be a whole number"):
        offer_filter(MultiDict(gpus="-1"), max_page=100)
    with pytest.raises(DecodeError, match="billing must be rental or metered"):
        offer_filter(MultiDict(billing="hourly"), max_page=100)


def test_read_answers_travel_in_msgpack_and_in_json_alike() -> None:
    orders = Orders()
    (entry,) = resting_offers(orders, {"price": 2**70, "gpus": 4})
    reputation = Reputation(entry.signer, leases_opened=3, leases_completed=2)
    offers = OfferList(NOW, TUSD, (offer_view(entry, reputation), offer_view(entry, None)))
    assert decode_read(encode(offers), OfferList) == offers
    assert decode_read_json(encode_json(offers), OfferList) == offers
    models = ModelList(NOW, TUSD, (ModelSummary("H100-80GB", 1, 0, 4, 0, best_ask=2**70),))
    assert decode_read_json(encode_json(models), ModelList) == models
    body = encode_json(offers).decode()
    assert '"pricePerGpuSecond":1180591620717411303424' in body
    assert f'"provider":"{entry.signer}"' in body
    assert '"token":{"symbol":"tUSD","decimals":6}' in body
    assert '"orderHash":"0x' + entry.hash.hex() + '"' in body
    with pytest.raises(UnknownMessageType):
        decode_read(encode(models), OfferList)


def test_a_bid_view_carries_its_explanation_both_ways() -> None:
    orders, book = Orders(), OrderBook()
    book.submit(orders.offer(price=6), NOW)
    low = orders.bid(price=2)
    book.submit(low, NOW)
    explanation = explain(book, low.signed.message, NOW, order_hash=low.hash)
    view = bid_view(low.hash, low.signed.message, 4, "unmatched", None, explanation)  # type: ignore[arg-type]
    answer = BidList(low.signer, NOW, TUSD, (view,))
    again = decode_read_json(encode_json(answer), BidList)
    assert again == answer
    assert again.bids[0].explanation is not None
    assert [str(r.code) for r in again.bids[0].explanation.reasons] == ["price_not_crossed"]


def test_a_filled_order_is_not_logged_as_no_match(events: Events) -> None:
    orders, book = Orders(), OrderBook()
    book.submit(orders.offer(price=3, gpus=4), NOW)
    filled = orders.bid(price=5, gpus=4)
    assert book.submit(filled, NOW)  # matched on arrival
    for fill in book.match_all(NOW):
        book.settle(fill)
    explanation = explain(book, filled.signed.message, NOW, order_hash=filled.hash)
    log_no_match(get_logger("gpumarket.test"), filled.hash, explanation)
    assert [(name, level) for name, level, _ in events] == [("order_filled", logging.DEBUG)]


def test_the_lab_logs_each_change_of_its_bids_fate_once(events: Events) -> None:
    orders, book = Orders(), OrderBook()
    book.submit(orders.offer(price=6), NOW)
    low = orders.bid(price=2)
    explanation = explain(book, low.signed.message, NOW, order_hash=low.hash)
    job = JobRecord(0, None, low.signed, low.hash)  # type: ignore[arg-type]
    fates = BidFates(None, get_logger("gpumarket.test"))  # type: ignore[arg-type]
    bid = low.signed.message
    unmatched = bid_view(low.hash, bid, 4, "unmatched", None, explanation)  # type: ignore[arg-type]
    fates.update(job, unmatched)
    fates.update(job, unmatched)
    failed = bid_view(low.hash, bid, 0, "fill_failed", None)
    failed = failed.__class__(**{**{f: getattr(failed, f) for f in failed.__struct_fields__},
                                 "error": "ERC20InsufficientAllowance(...)"})  # fmt: skip
    fates.update(job, failed)
    names = [(name, fields.get("reasons"), fields.get("error")) for name, _, fields in events]
    assert names == [
        ("no_match", "price_not_crossed", None),
        ("bid_fill_failed", None, "ERC20InsufficientAllowance(...)"),
    ]


def test_a_pair_is_explained_against_that_offer_alone() -> None:
    orders, book = Orders(), OrderBook()
    small, big = orders.offer(price=6, gpus=2), orders.offer(price=3, gpus=8)
    low = orders.bid(price=1, gpus=4)
    for order in (small, big, low):
        book.add(order, NOW)
    entry = {o.hash: book.get(o.hash) for o in (small, big, low)}
    alone = explain_pair(book, entry[small.hash], entry[low.hash], NOW)  # type: ignore[arg-type]
    assert [str(r.code) for r in alone.reasons] == ["price_not_crossed", "not_enough_gpus"]
    cheap = explain_pair(book, entry[big.hash], entry[low.hash], NOW)  # type: ignore[arg-type]
    assert [str(r.code) for r in cheap.reasons] == ["price_not_crossed"]
    assert [c.suggested for c in cheap.changes] == [3]
    late = explain_pair(book, entry[big.hash], entry[low.hash], NOW + 7200)  # type: ignore[arg-type]
    assert [str(r.code) for r in late.reasons] == ["order_expired"]
