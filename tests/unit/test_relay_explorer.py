"""The explorer without a relay: the book by price level, the lease summaries, the explorer's
answers in msgpack and in JSON (the shapes its pages read), and its pages' files, which load
nothing from outside the relay."""

from __future__ import annotations

import json
import re
from typing import cast

import pytest

from market.chain.client import MarketClient
from market.chain.leases import OpenedLease
from market.matching import OrderBook
from market.protocol.types import checksum_address
from market.reputation import Reputation
from nodes.relay.explorer import FILES, STATIC, LeaseIndex, levels, summary
from nodes.wire.explorer import (
    AccountView,
    Depth,
    LeaseList,
    PriceHistory,
    ProviderList,
    ProviderView,
)
from nodes.wire.frames import decode_read, encode, encode_json
from nodes.wire.reads import TokenView
from tests.unit.order_factory import MODEL, NOW, Orders

pytestmark = pytest.mark.unit

TUSD = TokenView("tUSD", 6)
PROVIDER = checksum_address("0x" + "ab" * 20)
LAB = checksum_address("0x" + "cd" * 20)
LEASE = OpenedLease(
    lease_id=b"\x01" * 32, bid_hash=b"\x02" * 32, time=NOW, model=MODEL, memory_gib=80, gpus=2,
    price_per_gpu_second=500, duration=600, provider=PROVIDER, lab=LAB,
)  # fmt: skip


def test_the_book_is_grouped_by_price_asks_cheapest_first_bids_dearest_first() -> None:
    orders, book = Orders(), OrderBook()
    for order in (orders.offer(9, 8), orders.offer(4, 2), orders.offer(4, 3, provider=1)):
        book.submit(order, NOW)
    for order in (orders.bid(2, 1), orders.bid(3, 4), orders.bid(2, 2, lab=1)):
        book.submit(order, NOW)
    asks = levels(book.offers(MODEL, NOW), ascending=True)
    bids = levels(book.bids(MODEL, NOW), ascending=False)
    assert [(a.price_per_gpu_second, a.gpus, a.orders) for a in asks] == [(4, 5, 2), (9, 8, 1)]
    assert [(b.price_per_gpu_second, b.gpus, b.orders) for b in bids] == [(3, 4, 1), (2, 3, 2)]


def test_a_lease_summary_ends_when_its_term_runs_out() -> None:
    view = summary(LEASE, "open")
    assert (view.time, view.ends, view.gpus, view.price_per_gpu_second) == (NOW, NOW + 600, 2, 500)
    assert (view.provider, view.lab) == (PROVIDER, LAB)


def test_a_lease_is_open_until_its_term_runs_out_or_an_event_ends_it() -> None:
    index = LeaseIndex(cast(MarketClient, None))
    assert index.state(LEASE, NOW + 599) == "open"
    assert index.state(LEASE, NOW + 600) == "expired"
    index.ended[LEASE.lease_id] = "terminated"
    assert index.summary(LEASE, NOW + 1).state == "terminated"


def test_explorer_answers_travel_in_msgpack_and_json_with_the_keys_the_pages_read() -> None:
    lease = summary(LEASE, "open")
    leases = LeaseList(NOW, 42, TUSD, 1, (lease,))
    assert decode_read(encode(leases), LeaseList) == leases
    doc = json.loads(encode_json(leases))
    assert (doc["type"], doc["body"]["open"], doc["body"]["headBlock"]) == ("LeaseList", 1, 42)
    (row,) = doc["body"]["leases"]
    assert row == {
        "leaseId": "0x" + "01" * 32, "bidHash": "0x" + "02" * 32, "time": NOW, "ends": NOW + 600,
        "model": MODEL, "memoryGib": 80, "gpus": 2, "pricePerGpuSecond": 500, "duration": 600,
        "provider": PROVIDER, "lab": LAB, "state": "open",
    }  # fmt: skip
    history = PriceHistory(MODEL, NOW, TUSD, (lease,))
    assert decode_read(encode(history), PriceHistory) == history
    depth = Depth(MODEL, NOW, TUSD, levels([], ascending=True), ())
    assert json.loads(encode_json(depth))["body"]["token"] == {
        "symbol": "tUSD",
        "decimals": 6,
    }


def test_providers_and_accounts_carry_stake_and_reputation() -> None:
    reputation = Reputation(PROVIDER, leases_opened=3, tokens_earned=10**6)
    provider = ProviderView(PROVIDER, True, 1000 * 10**6, 10**6, "http://p", 1, 8, reputation)
    providers = ProviderList(NOW, TUSD, (provider,))
    assert decode_read(encode(providers), ProviderList) == providers
    body = json.loads(encode_json(providers))["body"]["providers"][0]
    assert (body["stake"], body["locked"], body["gpusOffered"]) == (10**9, 10**6, 8)
    assert (body["reputation"]["leasesOpened"], body["reputation"]["tokensEarned"]) == (3, 10**6)
    account = AccountView(LAB, NOW, TUSD, 5 * 10**6, None, (), (), (summary(LEASE, "open"),))
    assert decode_read(encode(account), AccountView) == account
    doc = json.loads(encode_json(account))["body"]
    assert (doc["balance"], doc["provider"], len(doc["leases"])) == (5 * 10**6, None, 1)


def test_the_pages_load_nothing_from_outside_the_relay() -> None:
    names = ["index.html", *FILES]
    for name in names:
        text = (STATIC / name).read_text(encoding="utf-8")
        assert not re.search(r"(src|href)\s*=\s*[\"'](https?:)?//", text), name
        assert "https://" not in text, name
        assert "http://" not in text, name
        assert "@import" not in text, name
    index = (STATIC / "index.html").read_text(encoding="utf-8")
    assert '<script src="/explorer/app.js">' in index
    assert '<link rel="stylesheet" href="/explorer/style.css">' in index
