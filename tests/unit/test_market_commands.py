"""The market commands' parts that need no relay: where the relay comes from, the tables, the
prices per GPU-hour in explanations, the max-price conversion and a lab's local receipts and
vouchers for ``gpumarket lease --config``."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from market.matching import OrderBook, explain
from market.protocol.eip712 import order_hash
from market.protocol.types import Bid, Lease, Voucher
from market.receipts import ReceiptChain
from market.units import EVENT_AMOUNTS, Token
from nodes.commands.market import (
    CommandError,
    event_line,
    explanation_lines,
    holdings_lines,
    per_gpu_second_at_most,
    relay_url,
    table,
)
from nodes.jobs.spec import JobSpec, MatmulParams
from nodes.lab.store import LAB_MIGRATIONS, LabStore
from nodes.relay.reads import lease_event
from nodes.state import StateDB
from tests.unit.order_factory import DOMAIN, LAB_KEYS, NOW, PROVIDER_KEYS, Orders

pytestmark = pytest.mark.unit

TUSD = Token("tUSD", 6)


def test_the_relay_is_the_flag_else_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUMARKET_RELAY", "http://env:7000/")
    assert relay_url(argparse.Namespace(relay="http://flag:1", config=None)) == "http://flag:1"
    assert relay_url(argparse.Namespace(relay=None, config=None)) == "http://env:7000"
    monkeypatch.delenv("GPUMARKET_RELAY")
    with pytest.raises(CommandError, match="give --relay URL or set GPUMARKET_RELAY"):
        relay_url(argparse.Namespace(relay=None, config=None))


def test_a_table_aligns_its_columns_under_the_header() -> None:
    assert table([("a", 10), ("bbb", 2)], ("X", "Y")).splitlines() == [
        "X    Y",
        "a    10",
        "bbb  2",
    ]


def test_a_price_change_is_shown_per_gpu_hour_in_tokens() -> None:
    orders, book = Orders(), OrderBook()
    book.submit(orders.offer(price=700), NOW)
    low = orders.bid(price=100)
    lines = explanation_lines(explain(book, low.signed.message, NOW), TUSD)
    assert lines[0].startswith("  reason: price_not_crossed: ")
    assert lines[1] == "  would match with max_price 0.36 tUSD/GPU-hour -> 2.52 tUSD/GPU-hour"


def test_a_max_price_per_gpu_hour_keeps_offers_up_to_it() -> None:
    assert per_gpu_second_at_most(TUSD.parse("2.52")) == 700
    assert per_gpu_second_at_most(TUSD.parse("2.5199")) == 699
    assert per_gpu_second_at_most(0) == 0


def test_the_lab_state_shows_its_last_receipt_and_best_voucher(tmp_path: Path) -> None:
    provider, lab = PROVIDER_KEYS[0], LAB_KEYS[0]
    lease = Lease(provider.address, lab.address, 2, 7, 1_000, 3_600, b"\x01" * 32)
    state = tmp_path / "lab.sqlite"
    db = StateDB.open(state, migrations=LAB_MIGRATIONS)
    store = LabStore(db, DOMAIN)
    assert holdings_lines(state, DOMAIN, lease.id, TUSD)[1:] == [
        "    no receipt accepted",
        "    no voucher signed",
    ]
    spec = JobSpec(bytes(range(32)), MatmulParams(4, 7, 2))
    bid = lab.sign(DOMAIN, Bid(lab.address, "H100-80GB", 2, 9, 3_600, 10_000, 1, spec.hash))
    store.save_job(0, spec, bid, order_hash(DOMAIN, bid.message))
    store.save_lease(lease, 0, b"\x01" * 32)
    chain = ReceiptChain(provider, DOMAIN, lease)
    store.accept_receipt(chain.append(1_100, 100), b"a")
    store.accept_receipt(chain.append(1_200, 300), b"b")
    store.save_voucher(lab.sign(DOMAIN, Voucher(lease.id, 2_100_000)))
    db.close()
    lines = holdings_lines(state, DOMAIN, lease.id, TUSD)
    assert lines[0] == f"  lab state {state}:"
    assert lines[1].startswith("    last receipt accepted: seq 1, period ")
    assert lines[1].endswith(", 300 GPU-seconds in all")
    assert lines[2] == "    best voucher: 2.10 tUSD in all, not yet acknowledged"


def test_a_lease_events_token_amounts_are_shown_in_tokens() -> None:
    event = lease_event(
        "Claimed", 13, {"amount": 1_000, "cumulative_paid": 2_000, "receipt_hash": b"\x01" * 32}
    )
    assert event.amounts == ("amount", "cumulative_paid")
    assert (
        event_line(event, TUSD)
        == "  block 13: Claimed amount=0.001 tUSD cumulative_paid=0.002 tUSD"
    )
    ended = lease_event("LeaseTerminated", 14, {"end": 1_796_610_350, "paid": 1_000})
    assert event_line(ended, TUSD) == (
        "  block 14: LeaseTerminated end=2026-12-07 02:25:50 UTC paid=0.001 tUSD"
    )
    assert ended.times == ("end",)
    assert set(ended.amounts) <= EVENT_AMOUNTS
