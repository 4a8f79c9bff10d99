"""The relay's pure parts: rate limits, metrics text, structured logs, the store, exports."""

from __future__ import annotations

import importlib
import json
import logging
import math
import pkgutil
import re
from pathlib import Path

import pytest

import nodes.relay
import nodes.wire
from market.errors import MarketError
from market.matching import Submission
from nodes.errors import ConfigError, NodeError, RateLimited, StoreError
from nodes.logs import FORMAT_ENV, EventFormatter, get_logger, log_format
from nodes.relay.metrics import RelayMetrics
from nodes.relay.ratelimit import RateLimiter
from nodes.relay.store import ChainLease, FillOutcome, order_row
from nodes.relay.store_sqlite import RELAY_MIGRATIONS, SqliteStore
from nodes.state.db import StateDB
from tests.unit.order_factory import Orders

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_the_burst_then_refuses_with_the_wait() -> None:
    clock = Clock()
    limiter = RateLimiter(2.0, 3, clock=clock)
    limiter.take({"a": 3})
    with pytest.raises(RateLimited) as info:
        limiter.take({"a": 1})
    assert (info.value.key, info.value.retry_after_s) == ("a", 0.5)
    clock.now += 0.5
    limiter.take({"a": 1})


def test_bucket_takes_all_or_nothing_across_keys() -> None:
    limiter = RateLimiter(1.0, 2, clock=Clock())
    limiter.take({"a": 2})
    with pytest.raises(RateLimited, match="a is over"):
        limiter.take({"b": 1, "a": 1})
    limiter.take({"b": 2})  # b lost nothing to the refused request


def test_a_cost_above_the_burst_can_never_pass() -> None:
    limiter = RateLimiter(1.0, 2, clock=Clock())
    with pytest.raises(RateLimited) as info:
        limiter.take({"a": 3})
    assert math.isinf(info.value.retry_after_s)


def test_bucket_refills_up_to_the_burst_only() -> None:
    clock = Clock()
    limiter = RateLimiter(10.0, 2, clock=clock)
    limiter.take({"a": 2})
    clock.now += 1000
    limiter.take({"a": 2})
    with pytest.raises(RateLimited):
        limiter.take({"a": 1})


def test_metrics_render_in_prometheus_text_format() -> None:
    m = RelayMetrics()
    m.orders.inc(status="accepted")
    m.orders.inc(2, status="order_expired")
    m.gauge("gpumarket_relay_book_orders", "Orders.", lambda: [((("side", "bid"),), 3)])
    text = m.render()
    assert "# TYPE gpumarket_relay_orders_total counter\n" in text
    assert 'gpumarket_relay_orders_total{status="accepted"} 1.0\n' in text
    assert 'gpumarket_relay_orders_total{status="order_expired"} 2.0\n' in text
    assert "# TYPE gpumarket_relay_book_orders gauge\n" in text
    assert 'gpumarket_relay_book_orders{side="bid"} 3.0\n' in text
    assert "_created" not in text
    assert m.orders.value(status="order_expired") == 2
    assert m.orders.value(status="never") == 0
    m.requests.inc(endpoint='/v1/"x"\n', status="200")
    assert 'endpoint="/v1/\\"x\\"\\n"' in m.render()


def test_each_daemon_counts_in_its_own_registry() -> None:
    a, b = RelayMetrics(), RelayMetrics()
    a.evicted.inc()
    assert (a.evicted.value(), b.evicted.value()) == (1, 0)
    assert "gpumarket_relay_orders_evicted_total 0.0\n" in b.render()


def test_events_carry_their_name_and_fields(caplog: pytest.LogCaptureFixture) -> None:
    log = get_logger("gpumarket.test").bind(relay="r1")
    with caplog.at_level(logging.INFO, logger="gpumarket.test"):
        log.info("order_accepted", hash=b"\x01\x02", note="two words")
        log.debug("not_logged_at_info")
    (record,) = caplog.records
    assert record.event == "order_accepted"  # type: ignore[attr-defined]
    assert record.fields == {"relay": "r1", "hash": b"\x01\x02", "note": "two words"}  # type: ignore[attr-defined]
    assert record.getMessage() == "order_accepted relay=r1 hash=0x0102 note='two words'"
    line = EventFormatter().format(record)
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ info gpumarket.test order_accepted relay=r1 "
        r"hash=0x0102 note='two words'",
        line,
    )
    assert json.loads(EventFormatter("json").format(record)) == {
        "timestamp": line.split()[0],
        "level": "info",
        "logger": "gpumarket.test",
        "event": "order_accepted",
        "relay": "r1",
        "hash": "0x0102",
        "note": "two words",
    }


def test_log_format_comes_from_the_environment_and_refuses_unknown_names() -> None:
    assert log_format({}) == "keyvalue"
    assert log_format({FORMAT_ENV: "JSON"}) == "json"
    with pytest.raises(ConfigError, match="'xml' is not one of keyvalue, json"):
        log_format({FORMAT_ENV: "xml"})


def test_a_failure_is_logged_with_its_traceback_on_the_lines_after(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="gpumarket.test"):
        try:
            raise ValueError("boom")
        except ValueError:
            get_logger("gpumarket.test").error("request_failed", exc_info=True, endpoint="/x")
    first, *rest = EventFormatter().format(caplog.records[-1]).splitlines()
    assert first.endswith(" error gpumarket.test request_failed endpoint=/x")
    assert rest[-1] == "ValueError: boom"
    exception = json.loads(EventFormatter("json").format(caplog.records[-1]))["exception"]
    assert exception.splitlines()[-1] == "ValueError: boom"


def test_store_keeps_orders_in_arrival_order_and_chain_state(tmp_path: Path) -> None:
    orders = Orders()
    a, b = orders.offer(), orders.bid()
    store = SqliteStore.open(tmp_path / "relay.sqlite")
    store.add_orders([(a.hash, Submission(a.signed)), (b.hash, Submission(b.signed))])
    lease = ChainLease(b"\x07" * 32, a.hash, b.hash, 3, 10)
    assert store.apply_chain([lease], [b"\x09" * 32], [("0xabc", 5)], next_block=11) == [lease]
    assert store.apply_chain([lease], [], [("0xabc", 4)], next_block=12) == []  # replay: no change
    store.close()

    again = SqliteStore.open(tmp_path / "relay.sqlite")
    assert [h for h, _ in again.resting_orders()] == [a.hash, b.hash]
    assert [s.signed for _, s in again.resting_orders()] == [a.signed, b.signed]
    assert again.filled_by_order() == {a.hash: 3, b.hash: 3}
    assert again.cancelled() == [b"\x09" * 32]
    assert again.nonce_floors() == {"0xabc": 5}
    assert again.next_block() == 12
    again.mark_gone([a.hash])
    assert [h for h, _ in again.resting_orders()] == [b.hash]
    first, second = again.record_intents([(a.hash, b.hash, 3), (a.hash, b.hash, 1)])
    assert again.fills("intent") == [
        (first, a.hash, b.hash, 3, "intent"),
        (second, a.hash, b.hash, 1, "intent"),
    ]
    again.finish_fills([FillOutcome(first, "opened", lease_id=b"\x07" * 32)])
    again.finish_fills([FillOutcome(second, "failed", error="MarketOrderExpired")])
    assert again.fills("intent") == []
    assert [row[4] for row in again.fills()] == ["opened", "failed"]
    again.close()


def test_store_keeps_only_resting_orders_so_it_stays_as_bounded_as_the_book(
    tmp_path: Path,
) -> None:
    orders = Orders()
    a, b, c = orders.offer(), orders.bid(), orders.bid()
    store = SqliteStore.open(tmp_path / "relay.sqlite")
    store.add_orders([(a.hash, Submission(a.signed)), (b.hash, Submission(b.signed))])
    store.mark_gone([a.hash])  # filled, cancelled, expired: the row goes
    assert store.count_orders() == 1
    store.add_orders([(c.hash, Submission(c.signed))], evicted=[b.hash])  # one transaction
    assert [h for h, _ in store.resting_orders()] == [c.hash]
    assert store.count_orders() == 1
    store.close()


def test_a_database_at_schema_1_keeps_its_resting_orders_in_arrival_order(
    tmp_path: Path,
) -> None:
    """Schema 1 kept rows of orders gone (``resting = 0``) and an AUTOINCREMENT seq; schema 2
    copies the resting rows, in their order, and drops the others."""
    orders = Orders()
    a, b, c = orders.offer(), orders.bid(), orders.bid()
    path = tmp_path / "relay.sqlite"
    v1 = StateDB.open(path, migrations=RELAY_MIGRATIONS[:1])
    with v1.transaction() as conn:
        for h, signed, resting in ((c, c.signed, 1), (a, a.signed, 0), (b, b.signed, 1)):
            row = order_row(Submission(signed))
            conn.execute(
                "INSERT INTO orders (hash, frame, resting) VALUES (?, ?, ?)", (h.hash, row, resting)
            )
    v1.close()
    store = SqliteStore.open(path)
    assert [h for h, _ in store.resting_orders()] == [c.hash, b.hash]
    store.add_orders([(a.hash, Submission(a.signed))])
    assert [h for h, _ in store.resting_orders()] == [c.hash, b.hash, a.hash]
    store.mark_gone([a.hash])
    store.add_orders([(a.hash, Submission(a.signed))])  # its seq is after every live row's
    assert [h for h, _ in store.resting_orders()] == [c.hash, b.hash, a.hash]
    store.close()


def test_store_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    store = SqliteStore.open(tmp_path / "relay.sqlite")
    store.set_meta("schema_version", "99")
    store.close()
    with pytest.raises(StoreError, match="schema version 99"):
        SqliteStore.open(tmp_path / "relay.sqlite")


def test_store_refuses_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "relay.sqlite"
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(StoreError, match="unreadable"):
        SqliteStore.open(path)


def test_node_errors_are_market_errors() -> None:
    assert issubclass(NodeError, MarketError)
    assert issubclass(StoreError, NodeError)


@pytest.mark.parametrize("package", [nodes.relay, nodes.wire])
def test_package_faces_export_what_they_declare(package: object) -> None:
    exported = package.__all__  # type: ignore[attr-defined]
    assert exported == sorted(exported, key=lambda n: (not n.isupper(), n))
    assert all(hasattr(package, name) for name in exported)


@pytest.mark.parametrize(
    "module",
    [
        "nodes.logs",
        "market.sealing",
        *(
            f"{pkg.__name__}.{m.name}"
            for pkg in (nodes.relay, nodes.wire)
            for m in pkgutil.iter_modules(pkg.__path__)
        ),
    ],
)
def test_every_module_declares_what_it_exports(module: str) -> None:
    mod = importlib.import_module(module)
    assert mod.__all__
    assert all(hasattr(mod, name) for name in mod.__all__)
