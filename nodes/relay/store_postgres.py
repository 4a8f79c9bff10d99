"""The relay's store in PostgreSQL (``store = "postgresql://user@host:5432/relay"``,
``gpumarket relay --store URL``): the same tables and promises as the SQLite store
(:class:`~nodes.relay.store.Store`), in a database several relay instances can share, beside the
matcher lease (:mod:`nodes.relay.leader`).

    store = PostgresStore.open("postgresql://relay@127.0.0.1:5432/relay")

Migrations: :data:`PG_MIGRATIONS`, applied on open under an advisory lock (instances starting
together migrate once), each in its own transaction with the version it reaches in
``schema_version``; a database at a newer version is refused. Every statement runs under a
timeout (:data:`STATEMENT_TIMEOUT_MS`), and the connection is opened with one
(:data:`CONNECT_TIMEOUT_S`) unless the URL sets its own ``connect_timeout``.

The connection is PostgreSQL's default isolation (read committed), autocommit between the store's
transactions. A call that finds the connection broken (the server restarted) opens a new one first;
a call cut off by a lost connection raises StoreUnavailable and wrote nothing it reports, so the
caller decides whether to try again. Fill intents written under a matcher lease's term are fenced:
the lease row is read ``FOR SHARE`` in the intents' transaction, so they commit only while that
term holds, and another instance's takeover waits for them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

import psycopg
from psycopg import conninfo, sql

from market.chain.forks import WINDOW
from market.matching import Submission
from nodes.errors import LeaseLost, StoreError, StoreUnavailable
from nodes.relay.store import (
    NO_TERM,
    ChainLease,
    FillIntent,
    FillOutcome,
    FillRow,
    order_row,
    row_order,
)

PG_MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: the relay's tables (the SQLite store's, with PostgreSQL's types), the fills' term and the
    # matcher lease (one row per lease name; never deleted, so its term only grows).
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE orders (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        hash BYTEA NOT NULL UNIQUE,
        frame BYTEA NOT NULL
    );
    CREATE TABLE leases (
        lease_id BYTEA PRIMARY KEY,
        offer_hash BYTEA NOT NULL,
        bid_hash BYTEA NOT NULL,
        gpus INTEGER NOT NULL,
        block BIGINT NOT NULL
    );
    CREATE INDEX leases_block ON leases (block);
    CREATE TABLE cancelled (hash BYTEA PRIMARY KEY);
    CREATE TABLE blocks (number BIGINT PRIMARY KEY, hash BYTEA NOT NULL);
    CREATE TABLE nonce_floors (signer TEXT PRIMARY KEY, min_nonce BYTEA NOT NULL);
    CREATE TABLE fills (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        offer_hash BYTEA NOT NULL,
        bid_hash BYTEA NOT NULL,
        gpus INTEGER NOT NULL,
        state TEXT NOT NULL,
        lease_id BYTEA,
        error TEXT NOT NULL DEFAULT '',
        updated DOUBLE PRECISION NOT NULL,
        term BIGINT NOT NULL DEFAULT 0
    );
    CREATE INDEX fills_state ON fills (state, id);
    CREATE TABLE matcher_lease (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        term BIGINT NOT NULL CHECK (term > 0),
        expires TIMESTAMPTZ NOT NULL
    );
    """,
)
"""Migration ``i`` takes the schema from version ``i`` to ``i + 1``. Append; never edit one."""

SCHEMA_VERSION: Final = len(PG_MIGRATIONS)
CONNECT_TIMEOUT_S: Final = 5
STATEMENT_TIMEOUT_MS: Final = 10_000
MIGRATION_LOCK: Final = 0x67706D_72656C6179
"""The advisory lock key instances take while migrating ("gpm" "relay")."""
LEASE_NAME: Final = "matcher"


def redacted(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    try:
        params = conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unparsable URL)"
    user = f"{params['user']}@" if params.get("user") else ""
    host = str(params.get("host", "")) + (f":{params['port']}" if params.get("port") else "")
    return f"postgresql://{user}{host}/{params.get('dbname', '')}"


def check_url(url: str) -> str:
    """``url`` if it is a PostgreSQL connection URL psycopg reads; ValueError saying why not."""
    if not url.startswith(("postgresql://", "postgres://")):
        scheme = url.split("://", 1)[0] + "://" if "://" in url else "no scheme"
        raise ValueError(f"must be a postgresql:// URL, got {scheme}")
    try:
        conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise ValueError(f"not a connection URL psycopg reads: {exc}") from None
    return url


def connect(url: str) -> psycopg.Connection[tuple[Any, ...]]:
    """An autocommit connection to ``url`` with the store's timeouts; StoreUnavailable if the
    server cannot be reached or refuses us."""
    given = conninfo.conninfo_to_dict(url)
    defaults: dict[str, str | int] = {
        "connect_timeout": CONNECT_TIMEOUT_S,
        "application_name": "gpumarket-relay",
    }
    extra = {k: v for k, v in defaults.items() if k not in given}
    try:
        conn = psycopg.connect(conninfo.make_conninfo(url, **extra), autocommit=True)
        conn.execute(
            sql.SQL("SET statement_timeout = {}").format(sql.Literal(STATEMENT_TIMEOUT_MS))
        )
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(
            redacted(url),
            f"cannot connect: {_first_line(exc)}; is the server running, and the URL right "
            "(user, host, port, database)?",
        ) from exc
    return conn


def migrate(conn: psycopg.Connection[tuple[Any, ...]], where: str) -> None:
    """Bring the database to :data:`SCHEMA_VERSION`, or refuse a newer one (StoreError)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        current = 0 if row is None else int(row[0])
        if current > SCHEMA_VERSION:
            raise StoreError(
                where,
                f"schema version {current} is newer than this release's {SCHEMA_VERSION}; "
                "run a newer gpumarket",
            )
        for version in range(current, SCHEMA_VERSION):
            with conn.transaction():  # a savepoint: a failed script leaves the version before it
                conn.execute(PG_MIGRATIONS[version].encode())
                conn.execute("DELETE FROM schema_version")
                conn.execute("INSERT INTO schema_version VALUES (%s)", (version + 1,))


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class PostgresStore:
    """One relay's state in a PostgreSQL database. Open with :meth:`open`; :meth:`close` when
    done."""

    def __init__(self, url: str, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        self.url = url
        self._conn = conn

    @classmethod
    def open(cls, url: str) -> PostgresStore:
        """Connect and migrate; StoreUnavailable if the server cannot be reached, StoreError if
        the database is of a newer release or refuses the migration."""
        where = redacted(url)
        try:
            check_url(url)
        except ValueError as exc:
            raise StoreError(where, str(exc)) from None
        conn = connect(url)
        try:
            migrate(conn, where)
        except psycopg.OperationalError as exc:
            conn.close()
            raise StoreUnavailable(where, f"lost while migrating: {_first_line(exc)}") from exc
        except psycopg.Error as exc:
            conn.close()
            raise StoreError(where, f"cannot migrate: {_first_line(exc)}") from exc
        except StoreError:
            conn.close()
            raise
        return cls(url, conn)

    @property
    def location(self) -> str:
        return redacted(self.url)

    def close(self) -> None:
        self._conn.close()

    def _connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._conn.broken or self._conn.closed:  # the server restarted: a new session
            self._conn.close()
            self._conn = connect(self.url)
        return self._conn

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        """One transaction: committed on exit, rolled back on an error; psycopg's errors become
        StoreError (StoreUnavailable: the connection was lost)."""
        conn = self._connection()
        try:
            with conn.transaction():
                yield conn
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(self.location, _first_line(exc)) from exc
        except psycopg.Error as exc:
            raise StoreError(self.location, f"refused: {_first_line(exc)}") from exc

    def _rows(self, query: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        with self._transaction() as conn:
            return conn.execute(query.encode(), args).fetchall()

    # --- meta ------------------------------------------------------------------------------

    def bind_chain(self, identity: str) -> None:
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO meta VALUES ('chain', %s) ON CONFLICT (key) DO NOTHING", (identity,)
            )
            row = conn.execute("SELECT value FROM meta WHERE key = 'chain'").fetchone()
        stored = None if row is None else str(row[0])
        if stored != identity:
            raise StoreError(
                self.location,
                f"it follows another chain or deployment ({stored}), not this one ({identity}): "
                "give this relay another database",
            )

    def get_meta(self, key: str) -> str | None:
        rows = self._rows("SELECT value FROM meta WHERE key = %s", (key,))
        return None if not rows else str(rows[0][0])

    def set_meta(self, key: str, value: str) -> None:
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO meta VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = "
                "excluded.value",
                (key, value),
            )

    # --- orders ----------------------------------------------------------------------------

    def add_orders(
        self, orders: Iterable[tuple[bytes, Submission]], evicted: Iterable[bytes] = ()
    ) -> None:
        rows = [(h, order_row(sub)) for h, sub in orders]
        gone = [(h,) for h in evicted]
        with self._transaction() as conn, conn.cursor() as cur:
            if gone:
                cur.executemany("DELETE FROM orders WHERE hash = %s", gone)
            if rows:  # one statement at a time: seq follows the order given
                cur.executemany("INSERT INTO orders (hash, frame) VALUES (%s, %s)", rows)

    def mark_gone(self, hashes: Iterable[bytes]) -> None:
        gone = [(h,) for h in hashes]
        if not gone:
            return
        with self._transaction() as conn, conn.cursor() as cur:
            cur.executemany("DELETE FROM orders WHERE hash = %s", gone)

    def resting_orders(self) -> Iterator[tuple[bytes, Submission]]:
        for h, frame in self._rows("SELECT hash, frame FROM orders ORDER BY seq"):
            yield bytes(h), row_order(bytes(frame), bytes(h), self.location)

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
        fresh: list[ChainLease] = []
        with self._transaction() as conn, conn.cursor() as cur:
            for x in leases:
                cur.execute(
                    "INSERT INTO leases VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (x.lease_id, x.offer_hash, x.bid_hash, x.gpus, x.block),
                )
                if cur.rowcount:
                    fresh.append(x)
            for h in cancelled:
                cur.execute("INSERT INTO cancelled VALUES (%s) ON CONFLICT DO NOTHING", (h,))
            for signer, n in floors:
                cur.execute(
                    "INSERT INTO nonce_floors VALUES (%s, %s) ON CONFLICT (signer) DO UPDATE "
                    "SET min_nonce = excluded.min_nonce "
                    "WHERE excluded.min_nonce > nonce_floors.min_nonce",
                    (signer, n.to_bytes(32, "big")),
                )
            self._set_next_block(cur, next_block)
            if applied is not None:
                number, block_hash = applied
                cur.execute(
                    "INSERT INTO blocks VALUES (%s, %s) ON CONFLICT (number) DO UPDATE "
                    "SET hash = excluded.hash",
                    (number, block_hash),
                )
                cur.execute("DELETE FROM blocks WHERE number <= %s", (number - window,))
        return fresh

    @staticmethod
    def _set_next_block(cur: psycopg.Cursor[tuple[Any, ...]], block: int) -> None:
        cur.execute(
            "INSERT INTO meta VALUES ('next_block', %s) ON CONFLICT (key) DO UPDATE "
            "SET value = excluded.value",
            (str(block),),
        )

    def applied_blocks(self) -> dict[int, bytes]:
        rows = self._rows("SELECT number, hash FROM blocks ORDER BY number")
        return {int(n): bytes(h) for n, h in rows}

    def rewind(self, fork: int) -> None:
        with self._transaction() as conn, conn.cursor() as cur:
            cur.execute("DELETE FROM leases WHERE block >= %s", (fork,))
            cur.execute("DELETE FROM blocks WHERE number >= %s", (fork,))
            self._set_next_block(cur, fork)

    def next_block(self) -> int | None:
        value = self.get_meta("next_block")
        return None if value is None else int(value)

    def filled_by_order(self) -> dict[bytes, int]:
        filled: dict[bytes, int] = {}
        rows = self._rows(
            "SELECT h, SUM(gpus) FROM (SELECT offer_hash AS h, gpus FROM leases UNION ALL "
            "SELECT bid_hash, gpus FROM leases) AS sides GROUP BY h"
        )
        for h, gpus in rows:
            filled[bytes(h)] = int(gpus)
        return filled

    def leases(self) -> list[ChainLease]:
        rows = self._rows("SELECT lease_id, offer_hash, bid_hash, gpus, block FROM leases")
        return [ChainLease(bytes(i), bytes(o), bytes(b), int(g), int(n)) for i, o, b, g, n in rows]

    def cancelled(self) -> list[bytes]:
        return [bytes(r[0]) for r in self._rows("SELECT hash FROM cancelled")]

    def nonce_floors(self) -> dict[str, int]:
        rows = self._rows("SELECT signer, min_nonce FROM nonce_floors")
        return {str(s): int.from_bytes(bytes(n), "big") for s, n in rows}

    # --- fills -----------------------------------------------------------------------------

    def record_intents(
        self, fills: Sequence[tuple[bytes, bytes, int]], term: int = NO_TERM
    ) -> list[int]:
        now = time.time()
        ids: list[int] = []
        with self._transaction() as conn, conn.cursor() as cur:
            if term != NO_TERM:
                # FOR SHARE: a takeover (an UPDATE of this row) waits until these intents commit.
                cur.execute(
                    "SELECT term, expires > clock_timestamp() FROM matcher_lease "
                    "WHERE name = %s FOR SHARE",
                    (LEASE_NAME,),
                )
                row = cur.fetchone()
                if row is None or int(row[0]) != term or not row[1]:
                    raise LeaseLost("", term, None if row is None else int(row[0]))
            for offer_hash, bid_hash, gpus in fills:
                cur.execute(
                    "INSERT INTO fills (offer_hash, bid_hash, gpus, state, updated, term) "
                    "VALUES (%s, %s, %s, 'intent', %s, %s) RETURNING id",
                    (offer_hash, bid_hash, gpus, now, term),
                )
                row = cur.fetchone()
                assert row is not None  # RETURNING of an INSERT that did not fail
                ids.append(int(row[0]))
        return ids

    def finish_fills(self, outcomes: Iterable[FillOutcome]) -> None:
        now = time.time()
        rows = [(o.state, o.lease_id, o.error, now, o.fill_id) for o in outcomes]
        if not rows:
            return
        with self._transaction() as conn, conn.cursor() as cur:
            cur.executemany(
                "UPDATE fills SET state = %s, lease_id = %s, error = %s, updated = %s "
                "WHERE id = %s",
                rows,
            )

    def fills(self, state: str | None = None) -> list[FillRow]:
        query = "SELECT id, offer_hash, bid_hash, gpus, state FROM fills"
        rows = (
            self._rows(query + " WHERE state = %s ORDER BY id", (state,))
            if state is not None
            else self._rows(query + " ORDER BY id")
        )
        return [(int(i), bytes(o), bytes(b), int(g), str(s)) for i, o, b, g, s in rows]

    def open_intents(self, before_term: int) -> list[FillIntent]:
        rows = self._rows(
            "SELECT id, offer_hash, bid_hash, gpus, term FROM fills "
            "WHERE state = 'intent' AND term < %s ORDER BY id",
            (before_term,),
        )
        return [FillIntent(int(i), bytes(o), bytes(b), int(g), int(t)) for i, o, b, g, t in rows]


__all__ = [
    "CONNECT_TIMEOUT_S",
    "LEASE_NAME",
    "PG_MIGRATIONS",
    "SCHEMA_VERSION",
    "STATEMENT_TIMEOUT_MS",
    "PostgresStore",
    "check_url",
    "connect",
    "migrate",
    "redacted",
]
