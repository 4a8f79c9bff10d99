"""The relay's SQLite store on the daemons' one durable-state system
(:class:`nodes.state.db.StateDB`): its file format and migrations. What both stores promise is
tested against each, SQLite and a real PostgreSQL, in ``tests/integration/test_relay_stores.py``."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from market.matching import Submission
from nodes.errors import StoreError
from nodes.relay.store_sqlite import RELAY_MIGRATIONS, SCHEMA_VERSION, SqliteStore
from tests.unit.order_factory import Orders

# The layout the relay wrote before it moved onto StateDB (meta.schema_version "2").
_PRE_STATEDB_SCHEMA = RELAY_MIGRATIONS[0].replace("IF NOT EXISTS ", "")


def _pragma(path: Path, name: str) -> object:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]


def test_store_is_a_statedb_in_wal_mode_at_the_relay_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "relay.sqlite"
    SqliteStore.open(path).close()
    assert _pragma(path, "user_version") == SCHEMA_VERSION == len(RELAY_MIGRATIONS)
    assert _pragma(path, "journal_mode") == "wal"


def test_database_of_the_release_before_statedb_is_adopted_with_its_rows(tmp_path: Path) -> None:
    orders = Orders()
    a = orders.offer()
    path = tmp_path / "relay.sqlite"
    store = SqliteStore.open(tmp_path / "model.sqlite")
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

    adopted = SqliteStore.open(path)
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
        SqliteStore.open(path)
