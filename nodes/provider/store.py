"""The provider agent's own tables, beside :mod:`nodes.state.records`' (same SQLite file).

* ``agent_meta``: the X25519 sealing key (generated once: it is registered on-chain), the
  block the event follower resumes from and the hashes of the last blocks it applied;
* ``jobs``: one row per lease seen opening: the bid hash the lab's job must match, the job spec
  once the lab sends it (stored before the job starts), its state, and how much of its stdout
  the receipts already commit;
* ``periods``: each receipt's output sealed to the lab and its metrics, written in the receipt's
  own transaction (:meth:`Meter.close_period`'s ``also``), so a receipt is never stored without
  what it commits to;
* ``period_streams``: for a period whose output is streamed, the byte range of the job's output
  file it commits and its chunk hashes (the bytes stay in the file:
  :mod:`~nodes.provider.outputs`); its ``periods`` row has an empty ``sealed_output``.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from market.sealing import generate_keypair
from nodes.provider.outputs import StreamedOutput
from nodes.state import blocks
from nodes.state.db import MIGRATIONS, StateDB
from nodes.wire import JobState

PROVIDER_MIGRATIONS: Final = (
    *MIGRATIONS,
    """
    CREATE TABLE agent_meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
    CREATE TABLE jobs (
        lease_id BLOB PRIMARY KEY,
        bid_hash BLOB NOT NULL,
        model TEXT NOT NULL,
        gpus INTEGER NOT NULL,
        spec BLOB,
        state TEXT NOT NULL DEFAULT 'waiting',
        error TEXT NOT NULL DEFAULT '',
        out_offset INTEGER NOT NULL DEFAULT 0,
        end_time INTEGER NOT NULL,
        ended_at REAL,
        created REAL NOT NULL
    );
    CREATE TABLE offers (
        hash BLOB PRIMARY KEY,
        model TEXT NOT NULL,
        gpus INTEGER NOT NULL,
        expiry INTEGER NOT NULL
    );
    CREATE TABLE periods (
        lease_id BLOB NOT NULL,
        seq INTEGER NOT NULL,
        sealed_output BLOB NOT NULL,
        metrics BLOB NOT NULL,
        PRIMARY KEY (lease_id, seq)
    );
    """,
    """
    CREATE TABLE period_streams (
        lease_id BLOB NOT NULL,
        seq INTEGER NOT NULL,
        start INTEGER NOT NULL,
        size INTEGER NOT NULL,
        chunk_size INTEGER NOT NULL,
        hashes BLOB NOT NULL,
        PRIMARY KEY (lease_id, seq)
    );
    """,
)
WAITING: Final = "waiting"
"""A job row's state before the lab's spec arrives; then a :class:`~nodes.wire.JobState`."""


@dataclass(frozen=True, slots=True)
class JobRow:
    lease_id: bytes
    bid_hash: bytes
    model: str
    gpus: int
    spec: bytes | None
    state: str
    error: str
    out_offset: int
    end_time: int
    ended_at: float | None


class AgentStore:
    """The agent's tables in ``db`` (opened with :data:`PROVIDER_MIGRATIONS`)."""

    def __init__(self, db: StateDB) -> None:
        self.db = db

    @classmethod
    def open(cls, path: Path) -> AgentStore:
        return cls(StateDB.open(path, migrations=PROVIDER_MIGRATIONS))

    # --- meta --------------------------------------------------------------------------------

    def sealing_private_key(self) -> bytes:
        """The X25519 private key, generated and stored on first use."""
        rows = self.db.query("SELECT value FROM agent_meta WHERE key = 'sealing_key'")
        if rows:
            return bytes(rows[0]["value"])
        pair = generate_keypair()
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO agent_meta (key, value) VALUES ('sealing_key', ?)",
                (pair.private,),
            )
        return self.sealing_private_key()

    def cursor(self, default: int) -> int:
        rows = self.db.query("SELECT value FROM agent_meta WHERE key = 'cursor'")
        return int.from_bytes(rows[0]["value"], "big") if rows else default

    def set_cursor(self, block: int, applied: tuple[int, bytes] | None = None) -> None:
        """Events are applied up to ``block``; ``applied``: the last block's number and hash,
        kept in the window of applied blocks (``nodes/state/blocks.py``)."""
        with self.db.transaction() as conn:
            self._set_meta(conn, "cursor", block.to_bytes(8, "big"))
            if applied is not None:
                window = blocks.remember(self.applied_blocks(), *applied)
                self._set_meta(conn, "applied_blocks", blocks.pack(window))

    def applied_blocks(self) -> dict[int, bytes]:
        """The last applied blocks' hashes, by number."""
        rows = self.db.query("SELECT value FROM agent_meta WHERE key = 'applied_blocks'")
        return blocks.unpack(bytes(rows[0]["value"]) if rows else None, str(self.db.path))

    def rewind(self, fork: int) -> None:
        """The chain replaced the blocks from ``fork`` on: read again from there."""
        with self.db.transaction() as conn:
            self._set_meta(conn, "cursor", fork.to_bytes(8, "big"))
            kept = blocks.before(self.applied_blocks(), fork)
            self._set_meta(conn, "applied_blocks", blocks.pack(kept))

    def _set_meta(self, conn: sqlite3.Connection, key: str, value: bytes) -> None:
        conn.execute(
            "INSERT INTO agent_meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def forget_lease(self, lease_id: bytes) -> None:
        """A reorganisation removed a lease no receipt was signed for: forget its job, so that
        a lease that opens again on the new branch is a new one."""
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM periods WHERE lease_id = ?", (lease_id,))
            conn.execute("DELETE FROM jobs WHERE lease_id = ?", (lease_id,))

    # --- jobs --------------------------------------------------------------------------------

    def add_lease(
        self, lease_id: bytes, bid_hash: bytes, model: str, gpus: int, end_time: int
    ) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO jobs (lease_id, bid_hash, model, gpus, end_time, created) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (lease_id, bid_hash, model, gpus, end_time, time.time()),
            )

    def leased_gpus(self) -> dict[str, int]:
        """GPUs per model held by leases whose work has not ended."""
        rows = self.db.query(
            "SELECT model, SUM(gpus) AS n FROM jobs WHERE ended_at IS NULL GROUP BY model"
        )
        return {str(r["model"]): int(r["n"]) for r in rows}

    def job(self, lease_id: bytes) -> JobRow | None:
        rows = self.db.query("SELECT * FROM jobs WHERE lease_id = ?", (lease_id,))
        return _row(rows[0]) if rows else None

    def jobs(self, *, ended: bool | None = None) -> list[JobRow]:
        sql = "SELECT * FROM jobs"
        if ended is not None:
            sql += " WHERE ended_at IS NOT NULL" if ended else " WHERE ended_at IS NULL"
        return [_row(r) for r in self.db.query(sql + " ORDER BY created")]

    def set_spec(self, lease_id: bytes, spec: bytes) -> bool:
        """Store the lab's spec (before the job starts); False if the lease has one already."""
        with self.db.transaction() as conn:
            cur = conn.execute(
                "UPDATE jobs SET spec = ?, state = ? WHERE lease_id = ? AND spec IS NULL",
                (spec, JobState.RUNNING.value, lease_id),
            )
        return cur.rowcount == 1

    def set_state(self, lease_id: bytes, state: JobState, error: str = "") -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE jobs SET state = ?, error = ? WHERE lease_id = ?",
                (state.value, error[:4000], lease_id),
            )

    def set_end(self, lease_id: bytes, end_time: int) -> None:
        """A termination brought the lease's end forward."""
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE jobs SET end_time = MIN(end_time, ?) WHERE lease_id = ?",
                (end_time, lease_id),
            )

    def mark_ended(self, lease_id: bytes) -> None:
        """The lease's last period is receipted: from now on only payment is left."""
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE jobs SET ended_at = ? WHERE lease_id = ? AND ended_at IS NULL",
                (time.time(), lease_id),
            )

    # --- offers ------------------------------------------------------------------------------

    def add_offer(self, offer_hash: bytes, model: str, gpus: int, expiry: int) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO offers (hash, model, gpus, expiry) VALUES (?, ?, ?, ?)",
                (offer_hash, model, gpus, expiry),
            )

    def offer_model(self, offer_hash: bytes) -> str | None:
        rows = self.db.query("SELECT model FROM offers WHERE hash = ?", (offer_hash,))
        return str(rows[0]["model"]) if rows else None

    def latest_offer_expiry(self, model: str) -> int:
        rows = self.db.query("SELECT MAX(expiry) AS e FROM offers WHERE model = ?", (model,))
        return int(rows[0]["e"] or 0)

    # --- periods -----------------------------------------------------------------------------

    @staticmethod
    def save_period(
        conn: sqlite3.Connection,
        lease_id: bytes,
        seq: int,
        sealed_output: bytes,
        metrics: bytes,
        out_offset: int,
        streamed: StreamedOutput | None = None,
    ) -> None:
        """Inside the receipt's transaction: the period's delivery and the stdout committed."""
        conn.execute(
            "INSERT INTO periods (lease_id, seq, sealed_output, metrics) VALUES (?, ?, ?, ?)",
            (lease_id, seq, sealed_output, metrics),
        )
        if streamed is not None:
            conn.execute(
                "INSERT INTO period_streams (lease_id, seq, start, size, chunk_size, hashes) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (lease_id, seq, streamed.start, streamed.size, streamed.chunk_size,
                 streamed.packed_hashes()),
            )  # fmt: skip
        conn.execute("UPDATE jobs SET out_offset = ? WHERE lease_id = ?", (out_offset, lease_id))

    def streamed(self, lease_id: bytes, seq: int) -> StreamedOutput | None:
        """Period ``seq``'s streamed output (None when it has none, or inline output)."""
        if seq > _SQLITE_MAX:
            return None
        rows = self.db.query(
            "SELECT start, size, chunk_size, hashes FROM period_streams "
            "WHERE lease_id = ? AND seq = ?",
            (lease_id, seq),
        )
        if not rows:
            return None
        r = rows[0]
        return StreamedOutput.of_row(
            int(r["start"]), int(r["size"]), int(r["chunk_size"]), bytes(r["hashes"])
        )

    def periods(
        self, lease_id: bytes, from_seq: int, limit: int
    ) -> list[tuple[int, bytes, bytes, int]]:
        """Up to ``limit`` periods from ``from_seq`` on. The wire allows any uint64 seq and
        limit; SQLite's integers are signed 64-bit, and no stored seq reaches 2^63 (seqs count
        from 0), so a larger ``from_seq`` finds nothing and a larger limit is no limit."""
        if from_seq > _SQLITE_MAX:
            return []
        limit = min(limit, _SQLITE_MAX)
        rows = self.db.query(
            "SELECT p.seq, p.sealed_output, p.metrics, LENGTH(s.hashes) / 32 AS chunks "
            "FROM periods p LEFT JOIN period_streams s "
            "ON s.lease_id = p.lease_id AND s.seq = p.seq "
            "WHERE p.lease_id = ? AND p.seq >= ? ORDER BY p.seq LIMIT ?",
            (lease_id, from_seq, limit),
        )
        return [
            (int(r["seq"]), bytes(r["sealed_output"]), bytes(r["metrics"]), int(r["chunks"] or 0))
            for r in rows
        ]


_SQLITE_MAX = 2**63 - 1


def _row(r: sqlite3.Row) -> JobRow:
    return JobRow(
        lease_id=bytes(r["lease_id"]),
        bid_hash=bytes(r["bid_hash"]),
        model=str(r["model"]),
        gpus=int(r["gpus"]),
        spec=None if r["spec"] is None else bytes(r["spec"]),
        state=str(r["state"]),
        error=str(r["error"]),
        out_offset=int(r["out_offset"]),
        end_time=int(r["end_time"]),
        ended_at=None if r["ended_at"] is None else float(r["ended_at"]),
    )


__all__ = ["PROVIDER_MIGRATIONS", "WAITING", "AgentStore", "JobRow"]
