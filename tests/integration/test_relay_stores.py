"""What the relay's store promises (:class:`nodes.relay.store.Store`), held by both implementations:
SQLite, and PostgreSQL on a real server (``tests/integration/pg_server.py``)."""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from market.matching import Submission
from market.protocol import codec
from nodes.errors import StoreError, StoreUnavailable
from nodes.relay import store_postgres, store_sqlite
from nodes.relay.store import ChainLease, FillIntent, FillOutcome, Store, order_row
from nodes.relay.store_postgres import PostgresStore, redacted
from nodes.relay.store_sqlite import SqliteStore
from nodes.wire import SubmitOrders, encode
from tests.integration.pg_server import PgServer
from tests.unit.order_factory import Orders

pytestmark = pytest.mark.integration

Opener = Callable[[], Store]


@pytest.fixture(params=["sqlite", "postgres"])
def reopen(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens the test's store (again: the same database each time); closes them all after."""
    opened: list[Store] = []
    if request.param == "sqlite":
        path = tmp_path / "relay.sqlite"

        def open_one() -> Store:
            opened.append(SqliteStore.open(path))
            return opened[-1]
    else:
        url: str = request.getfixturevalue("pg_url")

        def open_one() -> Store:
            opened.append(PostgresStore.open(url))
            return opened[-1]

    yield open_one
    for store in opened:
        store.close()


@pytest.fixture
def store(reopen: Opener) -> Store:
    return reopen()


def _raise_version(store: Store, version: int) -> None:
    """Write a schema version as a newer release would."""
    if isinstance(store, SqliteStore):
        with sqlite3.connect(store.path) as conn:
            conn.execute(f"PRAGMA user_version={version}")
    else:
        assert isinstance(store, PostgresStore)
        with psycopg.connect(store.url, autocommit=True) as conn:
            conn.execute("UPDATE schema_version SET version = %s", (version,))


def test_accepted_orders_survive_a_reopen_in_arrival_order(reopen: Opener) -> None:
    orders = Orders()
    a, b, c = orders.offer(), orders.bid(), orders.offer()
    first = reopen()
    first.add_orders([(c.hash, Submission(c.signed)), (a.hash, Submission(a.signed))])
    first.add_orders([(b.hash, Submission(b.signed))], evicted=[c.hash])
    first.close()
    again = reopen()
    assert [(h, sub.signed) for h, sub in again.resting_orders()] == [
        (a.hash, a.signed),
        (b.hash, b.signed),
    ]
    again.mark_gone([a.hash])
    assert [h for h, _ in again.resting_orders()] == [b.hash]
    assert again.count_orders() == 1


def _write_row(store: Store, h: bytes, frame: bytes) -> None:
    """Put a raw order row in the store's table, as an earlier release (or damage) left it."""
    if isinstance(store, SqliteStore):
        with sqlite3.connect(store.path) as conn:
            conn.execute("INSERT INTO orders (hash, frame) VALUES (?, ?)", (h, frame))
    else:
        assert isinstance(store, PostgresStore)
        with psycopg.connect(store.url, autocommit=True) as conn:
            conn.execute("INSERT INTO orders (hash, frame) VALUES (%s, %s)", (h, frame))


def test_orders_are_kept_as_codec_frames_and_earlier_rows_still_read(reopen: Opener) -> None:
    orders = Orders()
    old, new = orders.offer(), orders.bid()
    store = reopen()
    # The layout before: each order a one-order SubmitOrders frame.
    _write_row(store, old.hash, encode(SubmitOrders((Submission(old.signed),))))
    store.add_orders([(new.hash, Submission(new.signed))])
    assert [(h, sub.signed) for h, sub in store.resting_orders()] == [
        (old.hash, old.signed),
        (new.hash, new.signed),
    ]
    assert order_row(Submission(new.signed)) == codec.encode(new.signed)


def test_a_row_holding_no_order_is_a_store_error_naming_it(store: Store) -> None:
    bad = b"\x07" * 32
    _write_row(store, bad, codec.encode(Orders().offer().signed.message))  # unsigned
    with pytest.raises(StoreError, match=r"order 0x0707.*holds a Offer"):
        list(store.resting_orders())


def test_a_failed_batch_writes_nothing(store: Store) -> None:
    orders = Orders()
    a, b, c, d = orders.offer(), orders.bid(), orders.offer(), orders.bid()
    store.add_orders([(a.hash, Submission(a.signed)), (c.hash, Submission(c.signed))])
    with pytest.raises(StoreError):  # a's hash again: the whole batch rolls back, eviction too
        store.add_orders(
            [(b.hash, Submission(b.signed)), (a.hash, Submission(a.signed))], evicted=[c.hash]
        )
    store.add_orders([(d.hash, Submission(d.signed))])  # and the store goes on
    assert [h for h, _ in store.resting_orders()] == [a.hash, c.hash, d.hash]


def test_applied_blocks_keep_a_window_and_rewind_forgets_the_replaced_ones(store: Store) -> None:
    orders = Orders()
    a, b = orders.offer(), orders.bid()
    for number in range(1, 7):
        store.apply_chain([], [], [], number + 1, applied=(number, bytes([number]) * 32), window=4)
    assert sorted(store.applied_blocks()) == [3, 4, 5, 6]
    early = ChainLease(b"\x01" * 32, a.hash, b.hash, 1, 4)
    late = ChainLease(b"\x02" * 32, a.hash, b.hash, 2, 6)
    assert store.apply_chain([early, late, late], [], [], 7) == [early, late]
    store.rewind(5)
    assert sorted(store.applied_blocks()) == [3, 4]
    assert store.next_block() == 5
    assert store.filled_by_order() == {a.hash: 1, b.hash: 1}  # the lease of block 6 is forgotten


def test_applying_a_range_twice_changes_nothing_and_floors_only_rise(reopen: Opener) -> None:
    orders = Orders()
    a, b = orders.offer(), orders.bid()
    lease = ChainLease(b"\x07" * 32, a.hash, b.hash, 3, 10)
    signer = "0x" + "ab" * 20
    store = reopen()
    args = ([lease], [b.hash, b.hash], [(signer, 2**200)], 11)
    assert store.apply_chain(*args, applied=(10, b"\x0a" * 32)) == [lease]
    assert store.apply_chain(*args, applied=(10, b"\x0a" * 32)) == []
    store.apply_chain([], [], [(signer, 5)], 12)  # a lower floor read late changes nothing
    store.close()
    again = reopen()
    assert again.filled_by_order() == {a.hash: 3, b.hash: 3}
    assert again.cancelled() == [b.hash]
    assert again.nonce_floors() == {signer: 2**200}
    assert again.next_block() == 12
    assert again.applied_blocks() == {10: b"\x0a" * 32}


def test_fill_intents_are_recorded_before_and_finished_after(reopen: Opener) -> None:
    orders = Orders()
    a, b = orders.offer(), orders.bid()
    store = reopen()
    ids = store.record_intents([(a.hash, b.hash, 2), (a.hash, b.hash, 1)])
    assert len(ids) == 2
    assert ids[0] < ids[1]
    store.finish_fills([FillOutcome(ids[0], "opened", lease_id=b"\x09" * 32)])
    store.close()
    again = reopen()  # a crash between sending and finishing leaves the intent to find
    assert again.fills("intent") == [(ids[1], a.hash, b.hash, 1, "intent")]
    assert again.fills() == [
        (ids[0], a.hash, b.hash, 2, "opened"),
        (ids[1], a.hash, b.hash, 1, "intent"),
    ]
    assert again.open_intents(before_term=1) == [FillIntent(ids[1], a.hash, b.hash, 1, 0)]
    assert again.open_intents(before_term=0) == []


def test_meta_and_the_chain_binding_hold_across_a_reopen(reopen: Opener) -> None:
    store = reopen()
    store.bind_chain("31337:0xmarket:0xaaaa")
    store.set_meta("relay_id", "r1")
    store.set_meta("relay_id", "r2")
    store.close()
    again = reopen()
    assert again.get_meta("relay_id") == "r2"
    assert again.get_meta("absent") is None
    again.bind_chain("31337:0xmarket:0xaaaa")  # the same chain: accepted
    with pytest.raises(StoreError, match=r"another chain or deployment \(31337:0xmarket:0xaaaa\)"):
        again.bind_chain("31337:0xmarket:0xbbbb")


def test_a_database_of_a_newer_release_is_refused(reopen: Opener) -> None:
    store = reopen()
    newer = (
        store_sqlite.SCHEMA_VERSION
        if isinstance(store, SqliteStore)
        else store_postgres.SCHEMA_VERSION
    ) + 1
    _raise_version(store, newer)
    store.close()
    with pytest.raises(StoreError, match=f"schema version {newer} is newer than this release's"):
        reopen()


# --- PostgreSQL only ---------------------------------------------------------------------------


def test_postgres_server_down_is_one_clear_store_unavailable() -> None:
    url = f"postgresql://relay:s3cret@127.0.0.1:{_closed_port()}/relay"
    with pytest.raises(StoreUnavailable) as info:
        PostgresStore.open(url)
    assert (
        info.value.url == f"{redacted(url)}" == "postgresql://relay@127.0.0.1:" + url.split(":")[3]
    )
    assert "is the server running" in str(info.value)
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize("url", ["mysql://relay@127.0.0.1/relay", "postgresql://h/d?nokey=1"])
def test_postgres_url_that_is_no_connection_url_is_refused(url: str) -> None:
    with pytest.raises(StoreError) as info:
        PostgresStore.open(url)
    assert not isinstance(info.value, StoreUnavailable)


def test_postgres_store_reconnects_after_the_server_dropped_its_session(
    pg_url: str, postgres: PgServer
) -> None:
    store = PostgresStore.open(pg_url)
    try:
        store.set_meta("k", "v1")
        with psycopg.connect(postgres.url("postgres"), autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'gpumarket-relay' AND datname = %s",
                (pg_url.rsplit("/", 1)[1],),
            )
        with pytest.raises(StoreUnavailable):  # the call that finds the session gone
            store.set_meta("k", "v2")
        store.set_meta("k", "v3")  # the next one opens a new session
        assert store.get_meta("k") == "v3"
    finally:
        store.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again: nothing listens there
