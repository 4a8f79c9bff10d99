"""A daemon's SQLite database: WAL, full sync, schema migrations by version. The one durable-state
system of the three daemons: the provider (``PROVIDER_MIGRATIONS``), the lab (``LAB_MIGRATIONS``)
and the relay (``RELAY_MIGRATIONS``) each open it with their own list of migrations.

    db = StateDB.open(Path("provider.sqlite"))
    with db.transaction() as conn:
        conn.execute("INSERT ...")

The schema's version is SQLite's ``user_version``. :data:`MIGRATIONS` lists the scripts that take a
database from version ``i`` to ``i + 1``; opening applies the missing ones in order, each in its
own transaction, so a crash during a migration leaves the database at the version before it. A
database written by a newer release (a version above ``len(MIGRATIONS)``) is refused, never
guessed at.

Each committed transaction is durable (``synchronous=FULL``): once :meth:`StateDB.transaction`
returns, the rows survive a SIGKILL or a power cut. A StateDB belongs to the thread that opened it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nodes.errors import StoreError

BUSY_TIMEOUT_MS = 5000

MIGRATIONS: tuple[str, ...] = (
    # 1: the intent log, and what write-before-act keeps (leases, receipts issued, vouchers).
    """
    CREATE TABLE intents (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        args BLOB NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'done', 'failed', 'obsolete')),
        tx_hash BLOB,
        tx_nonce INTEGER,
        raw_tx BLOB,
        attempts INTEGER NOT NULL DEFAULT 0,
        result BLOB,
        reason TEXT NOT NULL DEFAULT '',
        created REAL NOT NULL,
        updated REAL NOT NULL
    );
    CREATE INDEX intents_open ON intents (status) WHERE status IN ('pending', 'sent');
    CREATE TABLE leases (
        lease_id BLOB PRIMARY KEY,
        terms BLOB NOT NULL,
        paid BLOB NOT NULL,
        closed INTEGER NOT NULL DEFAULT 0,  -- 0 open, 1 closed, 2 closed and its lock released
        created REAL NOT NULL
    );
    CREATE TABLE receipts (
        lease_id BLOB NOT NULL,
        seq INTEGER NOT NULL,
        hash BLOB NOT NULL,
        signed BLOB NOT NULL,
        created REAL NOT NULL,
        PRIMARY KEY (lease_id, seq)
    );
    CREATE TABLE vouchers (
        lease_id BLOB NOT NULL,
        amount BLOB NOT NULL,
        receipt_hash BLOB NOT NULL,
        signed BLOB NOT NULL,
        created REAL NOT NULL,
        PRIMARY KEY (lease_id, amount)
    );
    """,
)
"""Migration ``i`` takes the schema from version ``i`` to ``i + 1``. Append; never edit one."""

SCHEMA_VERSION = len(MIGRATIONS)


class StateDB:
    """One daemon's SQLite database. Open with :meth:`open`; :meth:`close` when done."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn

    @classmethod
    def open(cls, path: Path, *, migrations: tuple[str, ...] = MIGRATIONS) -> StateDB:
        """Open (creating if needed) and migrate to the latest schema version."""
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(path, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(str(path), f"cannot open: {exc}") from exc
        db = cls(path, conn)
        try:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(str(path), f"journal mode is {mode}, WAL is required")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            db._migrate(migrations)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(str(path), f"unreadable: {exc}") from exc
        except StoreError:
            conn.close()
            raise
        return db

    @property
    def version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self, migrations: tuple[str, ...]) -> None:
        current = self.version
        if current > len(migrations):
            raise StoreError(
                str(self.path),
                f"schema version {current} is newer than this release's {len(migrations)}; "
                "run a newer gpumarket",
            )
        for version in range(current, len(migrations)):
            # executescript commits first, so the script runs inside an explicit BEGIN of its own.
            try:
                self._conn.executescript(
                    f"BEGIN IMMEDIATE;\n{migrations[version]}\n"
                    f"PRAGMA user_version={version + 1};\nCOMMIT;"
                )
            except sqlite3.Error:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run the body in one write transaction: committed on exit, rolled back on an error.

        A transaction opened inside another joins it: its writes commit with the outer one, or
        roll back with it. A daemon groups many records this way (one commit for a range of
        events rather than one per event); whatever acts on them waits for the outer commit."""
        if self._conn.in_transaction:
            yield self._conn
            return
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        """Rows of a read, each indexable by column name."""
        cur = self._conn.execute(sql, params)
        cur.row_factory = sqlite3.Row
        return list(cur.fetchall())

    def close(self) -> None:
        self._conn.close()


def uint_blob(value: int) -> bytes:
    """A uint256 as 32 big-endian bytes: SQLite integers stop at 63 bits, and equal-length blobs
    compare (and sort) like the numbers they hold."""
    return value.to_bytes(32, "big")


def blob_uint(raw: bytes) -> int:
    return int.from_bytes(raw, "big")


__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "StateDB", "blob_uint", "uint_blob"]
