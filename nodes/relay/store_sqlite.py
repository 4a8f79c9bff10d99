"""The relay's store in a :class:`~nodes.state.db.StateDB`: the embedded default (``db_path``,
``gpumarket relay --db``), one SQLite file beside one relay. What it keeps and promises is
:class:`~nodes.relay.store.Store`'s.

The database is the daemons' one kind (WAL, ``synchronous=FULL``, migrations by
``user_version``, a newer database refused): :data:`RELAY_MIGRATIONS` are the relay's tables. A
database written by the releases before it (``meta.schema_version`` "2", ``user_version`` 0) holds
the same tables and is adopted as it is; an older layout is refused with what to do.

A relay on SQLite is alone on its database: it holds no matcher lease, and its fill intents carry
the term 0 (:data:`~nodes.relay.store.NO_TERM`).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from market.chain.forks import WINDOW
from market.matching import Submission
from nodes.errors import StoreError
from nodes.relay.store import (
    NO_TERM,
    ChainLease,
    FillIntent,
    FillOutcome,
    FillRow,
    order_row,
    row_order,
)
from nodes.state.db import StateDB

RELAY_MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: the relay's tables. IF NOT EXISTS: a database of the releases before StateDB (its
    # meta.schema_version "2", user_version 0) already holds them and is adopted unchanged.
    """
    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS orders (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        hash BLOB NOT NULL UNIQUE,
        frame BLOB NOT NULL,
        resting INTEGER NOT NULL DEFAULT 1
    );
    CREATE INDEX IF NOT EXISTS orders_resting ON orders (resting, seq);
    CREATE TABLE IF NOT EXISTS leases (
        lease_id BLOB PRIMARY KEY,
        offer_hash BLOB NOT NULL,
        bid_hash BLOB NOT NULL,
        gpus INTEGER NOT NULL,
        block INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS cancelled (hash BLOB PRIMARY KEY);
    CREATE TABLE IF NOT EXISTS blocks (number INTEGER PRIMARY KEY, hash BLOB NOT NULL);
    CREATE TABLE IF NOT EXISTS nonce_floors (signer TEXT PRIMARY KEY, min_nonce BLOB NOT NULL);
    CREATE TABLE IF NOT EXISTS fills (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        offer_hash BLOB NOT NULL,
        bid_hash BLOB NOT NULL,
        gpus INTEGER NOT NULL,
        state TEXT NOT NULL,
        lease_id BLOB,
        error TEXT NOT NULL DEFAULT '',
        updated REAL NOT NULL
    );
    """,
    # 2: orders keyed by a plain rowid (AUTOINCREMENT wrote sqlite_sequence on every insert; a
    # new seq is still above every live row's, so arrival order holds) and without ``resting``
    # and its index (a row leaves with its order, so every row rests; the rows an earlier
    # release kept after their orders left are not copied): an insert updates the table and
    # the hash's index, nothing else.
    """
    CREATE TABLE orders_v2 (
        seq INTEGER PRIMARY KEY,
        hash BLOB NOT NULL UNIQUE,
        frame BLOB NOT NULL
    );
    INSERT INTO orders_v2 (seq, hash, frame)
        SELECT seq, hash, frame FROM orders WHERE resting = 1 ORDER BY seq;
    DROP TABLE orders;
    ALTER TABLE orders_v2 RENAME TO orders;
    """,
)
"""Migration ``i`` takes the relay's schema from version ``i`` to ``i + 1``. Append; never edit."""

SCHEMA_VERSION: Final = len(RELAY_MIGRATIONS)
LEGACY_SCHEMA_VERSION: Final = "2"
"""``meta.schema_version`` of the last layout before StateDB, the only one adopted."""

_Statement = tuple[str, tuple[object, ...]]


class SqliteStore:
    """One relay's SQLite database. Open with :meth:`open`; :meth:`close` when done."""

    def __init__(self, db: StateDB) -> None:
        self.db = db
        self.path = db.path

    @classmethod
    def open(cls, path: Path) -> SqliteStore:
        """Open (creating if needed) and migrate; StoreError if the file is no relay database
        this release reads."""
        db = StateDB.open(path, migrations=RELAY_MIGRATIONS)
        store = cls(db)
        try:
            legacy = store.get_meta("schema_version")
            if legacy is not None and legacy != LEGACY_SCHEMA_VERSION:
                raise StoreError(
                    str(path),
                    f"schema version {legacy} of an early relay release, which this one does not "
                    "migrate: its resting orders are signed and can be submitted again; give this "
                    "relay a new --db, or remove the old file",
                )
        except (StoreError, sqlite3.DatabaseError) as exc:
            db.close()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(str(path), f"not a relay database: {exc}") from exc
        return store

    @property
    def location(self) -> str:
        return str(self.path)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (all or nothing); SQLite's refusals become StoreError."""
        try:
            with self.db.transaction() as conn:
                yield conn
        except sqlite3.Error as exc:
            raise StoreError(str(self.path), f"write refused: {exc}") from exc

    def _write(self, statements: Iterable[_Statement]) -> None:
        with self._transaction() as conn:
            for sql, args in statements:
                conn.execute(sql, args)

    def _rows(self, sql: str, args: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        return self.db.query(sql, args)

    # --- meta ------------------------------------------------------------------------------

    def bind_chain(self, identity: str) -> None:
        """Tie the database to one chain and deployment, or refuse another: a relay restarted
        against a fresh devnet (same chain id and contract addresses, new blocks) must not serve
        orders and a cursor from the old one. ``identity`` names the chain id, the market's
        address and the deployment block's hash."""
        stored = self.get_meta("chain")
        if stored is None:
            self.set_meta("chain", identity)
        elif stored != identity:
            raise StoreError(
                str(self.path),
                f"it follows another chain or deployment ({stored}), not this one ({identity}): "
                "give this relay a new --db, or remove the old file",
            )

    def get_meta(self, key: str) -> str | None:
        rows = self._rows("SELECT value FROM meta WHERE key = ?", (key,))
        return None if not rows else str(rows[0][0])

    def set_meta(self, key: str, value: str) -> None:
        self._write([("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))])

    # --- orders ----------------------------------------------------------------------------

    def add_orders(
        self, orders: Iterable[tuple[bytes, Submission]], evicted: Iterable[bytes] = ()
    ) -> None:
        """Keep accepted orders, in the order given (their arrival order), and forget the orders
        ``evicted`` to make room for them, in one transaction."""
        rows = [(h, order_row(sub)) for h, sub in orders]
        with self._transaction() as conn:
            conn.executemany("DELETE FROM orders WHERE hash = ?", ((h,) for h in evicted))
            conn.executemany("INSERT INTO orders (hash, frame) VALUES (?, ?)", rows)

    def mark_gone(self, hashes: Iterable[bytes]) -> None:
        """These orders left the book (filled, cancelled, expired, evicted): their rows go."""
        with self._transaction() as conn:
            conn.executemany("DELETE FROM orders WHERE hash = ?", ((h,) for h in hashes))

    def resting_orders(self) -> Iterator[tuple[bytes, Submission]]:
        """Orders still resting, in arrival order."""
        for h, frame in self._rows("SELECT hash, frame FROM orders ORDER BY seq"):
            yield bytes(h), row_order(bytes(frame), bytes(h), str(self.path))

    def count_orders(self) -> int:
        return int(self._rows("SELECT COUNT(*) FROM orders")[0][0])

    # --- what the chain said ---------------------------------------------------------------

    def apply_chain(
        self,
        leases: Iterable[ChainLease],
        cancelled: Iterable[bytes],
        floors: Iterable[tuple[str, int]],
        next_block: int,
        applied: tuple[int, bytes] | None = None,
        window: int = WINDOW,
    ) -> list[ChainLease]:
        """Record a range of blocks' events and that the relay has read up to ``next_block``,
        with ``applied`` (the last block's number and hash) among the last ``window`` blocks'
        hashes, in one transaction. Returns the leases not seen before."""
        with self._transaction() as conn:
            fresh: list[ChainLease] = []
            for x in leases:
                cursor = conn.execute(
                    "INSERT OR IGNORE INTO leases VALUES (?, ?, ?, ?, ?)",
                    (x.lease_id, x.offer_hash, x.bid_hash, x.gpus, x.block),
                )
                if cursor.rowcount:
                    fresh.append(x)
            conn.executemany(
                "INSERT OR IGNORE INTO cancelled VALUES (?)", ((h,) for h in cancelled)
            )
            conn.executemany(
                "INSERT INTO nonce_floors VALUES (?, ?) ON CONFLICT (signer) DO UPDATE "
                "SET min_nonce = excluded.min_nonce WHERE excluded.min_nonce > min_nonce",
                ((signer, n.to_bytes(32, "big")) for signer, n in floors),
            )
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('next_block', ?)", (str(next_block),))
            if applied is not None:
                number, block_hash = applied
                conn.execute("INSERT OR REPLACE INTO blocks VALUES (?, ?)", (number, block_hash))
                conn.execute("DELETE FROM blocks WHERE number <= ?", (number - window,))
        return fresh

    def applied_blocks(self) -> dict[int, bytes]:
        """The hashes of the last blocks applied (each poll's last block), by number."""
        rows = self._rows("SELECT number, hash FROM blocks ORDER BY number")
        return {int(n): bytes(h) for n, h in rows}

    def rewind(self, fork: int) -> None:
        """The chain replaced the blocks from ``fork`` on: forget their leases and hashes, and read
        again from ``fork``, in one transaction. Orders they had removed are gone already."""
        self._write(
            [
                ("DELETE FROM leases WHERE block >= ?", (fork,)),
                ("DELETE FROM blocks WHERE number >= ?", (fork,)),
                ("INSERT OR REPLACE INTO meta VALUES ('next_block', ?)", (str(fork),)),
            ]
        )

    def next_block(self) -> int | None:
        value = self.get_meta("next_block")
        return None if value is None else int(value)

    def filled_by_order(self) -> dict[bytes, int]:
        """GPUs filled on-chain per order hash, over every lease seen."""
        filled: dict[bytes, int] = {}
        for column in ("offer_hash", "bid_hash"):
            for h, gpus in self._rows(f"SELECT {column}, SUM(gpus) FROM leases GROUP BY {column}"):
                filled[bytes(h)] = filled.get(bytes(h), 0) + int(gpus)
        return filled

    def leases(self) -> list[ChainLease]:
        rows = self._rows("SELECT lease_id, offer_hash, bid_hash, gpus, block FROM leases")
        return [ChainLease(bytes(i), bytes(o), bytes(b), int(g), int(n)) for i, o, b, g, n in rows]

    def cancelled(self) -> list[bytes]:
        return [bytes(r[0]) for r in self._rows("SELECT hash FROM cancelled")]

    def nonce_floors(self) -> dict[str, int]:
        rows = self._rows("SELECT signer, min_nonce FROM nonce_floors")
        return {str(s): int.from_bytes(n, "big") for s, n in rows}

    # --- fills -----------------------------------------------------------------------------

    def record_intents(
        self, fills: Sequence[tuple[bytes, bytes, int]], term: int = NO_TERM
    ) -> list[int]:
        """Write that fills (offer hash, bid hash, GPUs) are about to be sent, in one
        transaction; returns their ids, in order. Only ``NO_TERM``: no lease is held here."""
        if term != NO_TERM:
            raise StoreError(
                str(self.path), f"term {term}: the matcher lease lives in PostgreSQL (--store)"
            )
        now = time.time()
        ids: list[int] = []
        with self._transaction() as conn:
            for offer_hash, bid_hash, gpus in fills:
                cursor = conn.execute(
                    "INSERT INTO fills (offer_hash, bid_hash, gpus, state, updated) "
                    "VALUES (?, ?, ?, 'intent', ?)",
                    (offer_hash, bid_hash, gpus, now),
                )
                ids.append(int(cursor.lastrowid or 0))
        return ids

    def finish_fills(self, outcomes: Iterable[FillOutcome]) -> None:
        """Record what became of sent fills, in one transaction."""
        now = time.time()
        with self._transaction() as conn:
            conn.executemany(
                "UPDATE fills SET state = ?, lease_id = ?, error = ?, updated = ? WHERE id = ?",
                ((o.state, o.lease_id, o.error, now, o.fill_id) for o in outcomes),
            )

    def fills(self, state: str | None = None) -> list[FillRow]:
        """(id, offer hash, bid hash, gpus, state) of recorded fills, oldest first."""
        sql = "SELECT id, offer_hash, bid_hash, gpus, state FROM fills"
        rows = (
            self._rows(sql + " WHERE state = ? ORDER BY id", (state,))
            if state is not None
            else self._rows(sql + " ORDER BY id")
        )
        return [(int(i), bytes(o), bytes(b), int(g), str(s)) for i, o, b, g, s in rows]

    def open_intents(self, before_term: int) -> list[FillIntent]:
        """Intents not yet finished, all of the term 0 here."""
        if before_term <= NO_TERM:
            return []
        return [FillIntent(i, o, b, g, NO_TERM) for i, o, b, g, _ in self.fills("intent")]


__all__ = ["LEGACY_SCHEMA_VERSION", "RELAY_MIGRATIONS", "SCHEMA_VERSION", "SqliteStore"]
