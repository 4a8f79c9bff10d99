"""The relay's store on the daemons' one durable-state system (:class:`nodes.state.db.StateDB`)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from market.matching import Submission
from nodes.errors import StoreError
from nodes.relay.store import RELAY_MIGRATIONS, SCHEMA_VERSION, ChainLease, Store
from tests.unit.order_factory import Orders

# The layout the relay wrote before it moved onto StateDB (meta.schema_version "2").
_PRE_STATEDB_SCHEMA = RELAY_MIGRATIONS[0].replace("IF NOT EXISTS ", "")


def _pragma(path: Path, name: str) -> object:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]


def test_store_is_a_statedb_in_wal_mode_at_the_relay_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "relay.sqlite"
    Store.open(path).close()
    assert _pragma(path, "user_version") == SCHEMA_VERSION == len(RELAY_MIGRATIONS)
    assert _pragma(path, "journal_mode") == "wal"


def test_database_of_the_release_before_statedb_is_adopted_with_its_rows(tmp_path: Path) -> None:
    orders = Orders()
    a = orders.offer()
    path = tmp_path / "relay.sqlite"
    store = Store.open(tmp_path / "model.sqlite")
    store.add_orders([(a.hash, Submission(a.signed))])
    frame = store.db.query("SELECT frame FROM orders")[0][0]
    store.close()
    with sqlite3.connect(path) as conn:
        conn.executescript(_PRE_STATEDB_SCHEMA)
        conn.execute("INSERT INTO meta VALUES ('schema_version', '2')")
        conn.execute("INSERT INTO meta VALUES ('next_block', '41')")
        conn.execute("INSERT INTO orders (hash, frame) VALUES (?, ?)", (a.hash, frame))
        conn.execute("INSERT INTO blocks VALUES (40, ?)", (b"\x04" * 32,))
    assert _pragma(path, "user_version") == 0

    adopted = Store.open(path)
    assert [h for h, _ in adopted.resting_orders()] == [a.hash]
    assert adopted.next_block() == 41
    assert adopted.applied_blocks() == {40: b"\x04" * 32}
    adopted.close()
    assert _pragma(path, "user_version") == SCHEMA_VERSION


def test_database_of_an_early_layout_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "relay.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    with pytest.raises(StoreError, match=r"schema version 1 .* give this relay a new --db"):
        Store.open(path)


def test_database_of_a_newer_release_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "relay.sqlite"
    Store.open(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer than this release's"):
        Store.open(path)


def test_applied_blocks_keep_a_window_and_rewind_forgets_the_replaced_ones(
    tmp_path: Path,
) -> None:
    orders = Orders()
    a, b = orders.offer(), orders.bid()
    store = Store.open(tmp_path / "relay.sqlite")
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
    store.close()


def test_a_failed_batch_writes_nothing(tmp_path: Path) -> None:
    orders = Orders()
    a, b = orders.offer(), orders.bid()
    store = Store.open(tmp_path / "relay.sqlite")
    store.add_orders([(a.hash, Submission(a.signed))])
    with pytest.raises(sqlite3.IntegrityError):  # a's hash again: the whole batch rolls back
        store.add_orders([(b.hash, Submission(b.signed)), (a.hash, Submission(a.signed))])
    assert [h for h, _ in store.resting_orders()] == [a.hash]
    store.close()
