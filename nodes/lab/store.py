"""What the lab must never lose, written before anything acts on it (write-before-act).

* its X25519 sealing key pair (outputs are sealed to it; a new key would lose every output);
* each job's spec and signed bid, before the bid goes to a relay;
* each lease of its bids, as soon as the chain shows it opening;
* each receipt it accepted, with the period's output, *before* paying for it (a streamed
  period's output is a file, :mod:`nodes.lab.outputs`; its row in ``lab_streams`` holds the
  receipt and how many of its chunks are verified and on disk, each advance written after the
  chunks are synced, so a restart resumes from the last chunk stored);
* each voucher it signs, *before* it is sent: after a restart the unsent best voucher is sent
  again, and a cumulative voucher can never pay twice;
* each hardware challenge it ran and its outcome, before acting on a failure (a provider's
  failures are what the lab's reputation of providers counts: :meth:`LabStore.challenge_record`);
* each chain action the lab decides on outside the intent log (terminate, a proof of cheating, a
  dispute), before it is sent: after a restart the pending ones run again, and each is skipped
  when the chain already shows its effect.

Close and withdraw go through :class:`~nodes.state.DurableChain`'s intent log, which lives in the
same database (schema version 1 is :data:`nodes.state.db.MIGRATIONS`' first script).
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from dataclasses import dataclass
from typing import Literal, cast

from market.protocol import codec
from market.protocol.eip712 import Domain, receipt_hash
from market.protocol.types import Bid, Lease, Receipt, Signed, Voucher
from market.sealing import SealingKeyPair, generate_keypair, public_key_of
from nodes.errors import StoreError
from nodes.jobs.spec import JobSpec
from nodes.state import blocks
from nodes.state.db import MIGRATIONS, StateDB, blob_uint, uint_blob

Phase = Literal["opened", "running", "ended", "closed"]
"""A lease as the lab follows it: ``opened`` (job not yet accepted by the provider), ``running``
(receipts being verified and paid), ``ended`` (nothing more to verify: job done, or the lab stopped
paying), ``closed`` (closed or slashed on-chain)."""
ActionKind = Literal["terminate", "equivocation", "impossible_usage", "dispute"]
ActionStatus = Literal["pending", "done", "failed"]

LAB_MIGRATIONS: tuple[str, ...] = (
    MIGRATIONS[0],  # 1: the intent log (and the provider's tables, unused here)
    # 2: the lab's own records.
    """
    CREATE TABLE lab_meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
    CREATE TABLE lab_jobs (
        idx INTEGER PRIMARY KEY,
        spec BLOB NOT NULL,
        bid BLOB NOT NULL,
        bid_hash BLOB NOT NULL UNIQUE,
        created REAL NOT NULL
    );
    CREATE TABLE lab_leases (
        lease_id BLOB PRIMARY KEY,
        job_idx INTEGER NOT NULL REFERENCES lab_jobs (idx),
        terms BLOB NOT NULL,
        offer_hash BLOB NOT NULL,
        phase TEXT NOT NULL CHECK (phase IN ('opened', 'running', 'ended', 'closed')),
        job_state TEXT NOT NULL DEFAULT '',
        end_at INTEGER NOT NULL,
        failure TEXT NOT NULL DEFAULT '',
        audit_secret BLOB NOT NULL,
        posted INTEGER NOT NULL DEFAULT 0,
        created REAL NOT NULL
    );
    CREATE TABLE lab_receipts (
        lease_id BLOB NOT NULL REFERENCES lab_leases (lease_id),
        seq INTEGER NOT NULL,
        hash BLOB NOT NULL,
        signed BLOB NOT NULL,
        output BLOB NOT NULL,
        created REAL NOT NULL,
        PRIMARY KEY (lease_id, seq)
    );
    CREATE TABLE lab_vouchers (
        lease_id BLOB NOT NULL REFERENCES lab_leases (lease_id),
        amount BLOB NOT NULL,
        receipt_hash BLOB NOT NULL,
        signed BLOB NOT NULL,
        sent INTEGER NOT NULL DEFAULT 0,
        created REAL NOT NULL,
        PRIMARY KEY (lease_id, amount)
    );
    CREATE TABLE lab_actions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        lease_id BLOB NOT NULL REFERENCES lab_leases (lease_id),
        kind TEXT NOT NULL
            CHECK (kind IN ('terminate', 'equivocation', 'impossible_usage', 'dispute')),
        a BLOB NOT NULL,
        b BLOB NOT NULL,
        amount BLOB NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'done', 'failed')),
        reason TEXT NOT NULL DEFAULT '',
        created REAL NOT NULL,
        UNIQUE (lease_id, kind, a)
    );
    """,
    # 3: the hardware challenges the lab ran, passed or failed, per provider.
    """
    CREATE TABLE lab_challenges (
        id INTEGER PRIMARY KEY,
        lease_id BLOB NOT NULL REFERENCES lab_leases (lease_id),
        provider TEXT NOT NULL,
        n INTEGER NOT NULL,
        gpu_class TEXT NOT NULL,
        passed INTEGER NOT NULL,
        elapsed_s REAL NOT NULL,
        deadline_s REAL NOT NULL,
        reason TEXT NOT NULL,
        created REAL NOT NULL
    );
    CREATE INDEX lab_challenges_provider ON lab_challenges (provider);
    """,
    # 4: streamed outputs.
    """
    CREATE TABLE lab_streams (
        lease_id BLOB NOT NULL REFERENCES lab_leases (lease_id),
        seq INTEGER NOT NULL,
        signed BLOB NOT NULL,
        chunks INTEGER NOT NULL,
        next_chunk INTEGER NOT NULL DEFAULT 0,
        size INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (lease_id, seq)
    );
    """,
)
"""Migration ``i`` takes the lab's schema from version ``i`` to ``i + 1``. Append; never edit."""

_SEALING_KEY = "sealing_key"
_CURSOR = "next_block"
_APPLIED = "applied_blocks"


@dataclass(frozen=True, slots=True)
class JobRecord:
    idx: int
    spec: JobSpec
    bid: Signed[Bid]
    bid_hash: bytes


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    lease: Lease
    job_idx: int
    offer_hash: bytes
    phase: Phase
    job_state: str
    end_at: int
    failure: str
    audit_secret: bytes
    posted: bool


@dataclass(frozen=True, slots=True)
class ChallengeOutcome:
    """A hardware challenge as the lab ran it: ``passed``, or why not (``reason``)."""

    n: int
    gpu_class: str
    passed: bool
    elapsed_s: float
    deadline_s: float
    reason: str = ""


@dataclass(frozen=True, slots=True)
class StreamProgress:
    """A streamed period being fetched: its receipt (verified but for its output), its chunk
    count, and the chunks verified and stored so far (``size`` bytes of its file)."""

    signed: Signed[Receipt]
    chunks: int
    next_chunk: int
    size: int

    @property
    def complete(self) -> bool:
        return self.next_chunk >= self.chunks


@dataclass(frozen=True, slots=True)
class LabAction:
    """A chain action decided on and stored before it is sent. ``a``/``b`` hold the evidence
    (codec-encoded signed receipts), ``amount`` the cumulative payment of a termination."""

    id: int
    lease_id: bytes
    kind: ActionKind
    a: bytes
    b: bytes
    amount: int
    status: ActionStatus
    reason: str


class LabStore:
    """The lab's records in a :class:`StateDB` (opened with :data:`LAB_MIGRATIONS`)."""

    def __init__(self, db: StateDB, domain: Domain) -> None:
        if db.version != len(LAB_MIGRATIONS):
            raise StoreError(str(db.path), "open it with migrations=LAB_MIGRATIONS")
        self.db = db
        self.domain = domain

    # --- meta --------------------------------------------------------------------------------

    def _meta(self, key: str) -> bytes | None:
        rows = self.db.query("SELECT value FROM lab_meta WHERE key = ?", (key,))
        return bytes(rows[0]["value"]) if rows else None

    def sealing_key(self) -> SealingKeyPair:
        """The lab's X25519 key pair, generated and stored on first use."""
        with self.db.transaction() as conn:
            row = conn.execute("SELECT value FROM lab_meta WHERE key = ?", (_SEALING_KEY,))
            found = row.fetchone()
            if found is None:
                keys = generate_keypair()
                conn.execute(
                    "INSERT INTO lab_meta (key, value) VALUES (?, ?)", (_SEALING_KEY, keys.private)
                )
                return keys
        private = bytes(found[0])
        return SealingKeyPair(public=public_key_of(private), private=private)

    def cursor(self) -> int | None:
        """The next block whose events the lab has not applied (None before the first)."""
        raw = self._meta(_CURSOR)
        return None if raw is None else blob_uint(raw)

    def set_cursor(self, next_block: int, applied: tuple[int, bytes] | None = None) -> None:
        """Events are applied up to ``next_block``; ``applied``: the last block's number and
        hash, kept in the window of applied blocks (``nodes/state/blocks.py``)."""
        with self.db.transaction() as conn:
            self._set_meta(conn, _CURSOR, uint_blob(next_block))
            if applied is not None:
                window = blocks.remember(self.applied_blocks(), *applied)
                self._set_meta(conn, _APPLIED, blocks.pack(window))

    def applied_blocks(self) -> dict[int, bytes]:
        """The last applied blocks' hashes, by number."""
        return blocks.unpack(self._meta(_APPLIED), str(self.db.path))

    def rewind(self, fork: int) -> None:
        """The chain replaced the blocks from ``fork`` on: read again from there."""
        with self.db.transaction() as conn:
            self._set_meta(conn, _CURSOR, uint_blob(fork))
            self._set_meta(conn, _APPLIED, blocks.pack(blocks.before(self.applied_blocks(), fork)))

    def _set_meta(self, conn: sqlite3.Connection, key: str, value: bytes) -> None:
        conn.execute(
            "INSERT INTO lab_meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # --- jobs --------------------------------------------------------------------------------

    def save_job(self, idx: int, spec: JobSpec, bid: Signed[Bid], bid_hash: bytes) -> None:
        """Store job ``idx``'s spec and signed bid; refused if the job is already stored."""
        if bid.message.job_spec_hash != spec.hash:
            raise StoreError(str(self.db.path), f"job {idx}: the bid does not commit to the spec")
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM lab_jobs WHERE idx = ?", (idx,)).fetchone():
                raise StoreError(str(self.db.path), f"job {idx} is already stored")
            conn.execute(
                "INSERT INTO lab_jobs (idx, spec, bid, bid_hash, created) VALUES (?, ?, ?, ?, ?)",
                (idx, spec.encode(), codec.encode(bid), bid_hash, time.time()),
            )

    def jobs(self) -> list[JobRecord]:
        rows = self.db.query("SELECT * FROM lab_jobs ORDER BY idx")
        return [
            JobRecord(
                r["idx"],
                JobSpec.decode(r["spec"]),
                codec.decode_as(r["bid"], Signed[Bid]),
                bytes(r["bid_hash"]),
            )
            for r in rows
        ]

    def job_for_bid(self, bid_hash: bytes) -> int | None:
        rows = self.db.query("SELECT idx FROM lab_jobs WHERE bid_hash = ?", (bid_hash,))
        return int(rows[0]["idx"]) if rows else None

    # --- leases ------------------------------------------------------------------------------

    def save_lease(self, lease: Lease, job_idx: int, offer_hash: bytes) -> bool:
        """Remember a lease of job ``job_idx`` (with a fresh audit secret); False if known."""
        with self.db.transaction() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO lab_leases (lease_id, job_idx, terms, offer_hash, phase, "
                "end_at, audit_secret, created) VALUES (?, ?, ?, ?, 'opened', ?, ?, ?)",
                (lease.id, job_idx, codec.encode(lease), offer_hash, lease.end,
                 secrets.token_bytes(32), time.time()),
            )  # fmt: skip
        return cur.rowcount == 1

    def forget_lease(self, lease_id: bytes) -> None:
        """A reorganisation removed the lease from the chain: forget it and everything about it
        (receipts, vouchers, actions, challenges), so that a lease that opens again on the new
        branch is a new one."""
        with self.db.transaction() as conn:
            for table in ("lab_challenges", "lab_actions", "lab_vouchers", "lab_receipts"):
                conn.execute(f"DELETE FROM {table} WHERE lease_id = ?", (lease_id,))
            conn.execute("DELETE FROM lab_leases WHERE lease_id = ?", (lease_id,))

    def lease(self, lease_id: bytes) -> LeaseRecord | None:
        rows = self.db.query("SELECT * FROM lab_leases WHERE lease_id = ?", (lease_id,))
        return _lease_record(rows[0]) if rows else None

    def leases(self, *phases: Phase) -> list[LeaseRecord]:
        """Every lease (in the order they opened), or those in ``phases``."""
        rows = self.db.query("SELECT * FROM lab_leases ORDER BY created, rowid")
        records = [_lease_record(r) for r in rows]
        return [r for r in records if not phases or r.phase in phases]

    def update_lease(
        self,
        lease_id: bytes,
        *,
        phase: Phase | None = None,
        job_state: str | None = None,
        end_at: int | None = None,
        failure: str | None = None,
        posted: bool | None = None,
    ) -> None:
        """Change a lease's fields; a closed lease's phase stays closed, a failure stays first."""
        current = self.lease(lease_id)
        if current is None:
            raise StoreError(str(self.db.path), f"unknown lease 0x{lease_id.hex()}")
        new_phase = current.phase if phase is None or current.phase == "closed" else phase
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE lab_leases SET phase = ?, job_state = ?, end_at = ?, failure = ?, "
                "posted = ? WHERE lease_id = ?",
                (
                    new_phase,
                    current.job_state if job_state is None else job_state,
                    current.end_at if end_at is None else min(end_at, current.end_at),
                    current.failure or (failure or ""),
                    int(current.posted if posted is None else posted),
                    lease_id,
                ),
            )

    # --- receipts ----------------------------------------------------------------------------

    def accept_receipt(self, signed: Signed[Receipt], output: bytes) -> bytes:
        """Store a verified receipt with its period's output; returns its hash. The same receipt
        again is a no-op; a *different* one for a stored ``seq`` is refused (it is equivocation:
        keep both as evidence, do not overwrite)."""
        r = signed.message
        h = receipt_hash(self.domain, r)
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT hash FROM lab_receipts WHERE lease_id = ? AND seq = ?", (r.lease_id, r.seq)
            ).fetchone()
            if row is not None:
                if bytes(row[0]) != h:
                    raise StoreError(
                        str(self.db.path),
                        f"lease 0x{r.lease_id.hex()} already has another receipt {r.seq}",
                    )
                return h
            conn.execute(
                "INSERT INTO lab_receipts (lease_id, seq, hash, signed, output, created) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (r.lease_id, r.seq, h, codec.encode(signed), output, time.time()),
            )
        return h

    def receipt(self, lease_id: bytes, seq: int) -> Signed[Receipt] | None:
        rows = self.db.query(
            "SELECT signed FROM lab_receipts WHERE lease_id = ? AND seq = ?", (lease_id, seq)
        )
        return codec.decode_as(rows[0]["signed"], Signed[Receipt]) if rows else None

    def has_receipt_hash(self, lease_id: bytes, digest: bytes) -> bool:
        rows = self.db.query(
            "SELECT 1 FROM lab_receipts WHERE lease_id = ? AND hash = ?", (lease_id, digest)
        )
        return bool(rows)

    def head(self, lease_id: bytes) -> Signed[Receipt] | None:
        """The last accepted receipt (None before the first)."""
        rows = self.db.query(
            "SELECT signed FROM lab_receipts WHERE lease_id = ? ORDER BY seq DESC LIMIT 1",
            (lease_id,),
        )
        return codec.decode_as(rows[0]["signed"], Signed[Receipt]) if rows else None

    def output_parts(self, lease_id: bytes) -> list[tuple[int, bytes, int | None]]:
        """Every accepted period's output, in seq order: ``(seq, inline output, None)``, or
        ``(seq, b"", size)`` for a streamed one (its bytes are in its file)."""
        rows = self.db.query(
            "SELECT r.seq, r.output, s.size FROM lab_receipts r LEFT JOIN lab_streams s "
            "ON s.lease_id = r.lease_id AND s.seq = r.seq WHERE r.lease_id = ? ORDER BY r.seq",
            (lease_id,),
        )
        return [
            (int(r["seq"]), bytes(r["output"]), None if r["size"] is None else int(r["size"]))
            for r in rows
        ]

    def output_size(self, lease_id: bytes) -> int:
        """Bytes of output accepted so far, inline and streamed."""
        return sum(
            len(data) if size is None else size for _, data, size in self.output_parts(lease_id)
        )

    # --- streamed outputs --------------------------------------------------------------------

    def stream(self, lease_id: bytes, seq: int) -> StreamProgress | None:
        rows = self.db.query(
            "SELECT * FROM lab_streams WHERE lease_id = ? AND seq = ?", (lease_id, seq)
        )
        if not rows:
            return None
        r = rows[0]
        return StreamProgress(
            codec.decode_as(r["signed"], Signed[Receipt]),
            int(r["chunks"]),
            int(r["next_chunk"]),
            int(r["size"]),
        )

    def begin_stream(self, signed: Signed[Receipt], chunks: int) -> StreamProgress:
        """Start fetching a streamed period (its receipt verified but for its output); the one
        already started for its seq if any (the caller compares the receipts)."""
        r = signed.message
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO lab_streams (lease_id, seq, signed, chunks) "
                "VALUES (?, ?, ?, ?)",
                (r.lease_id, r.seq, codec.encode(signed), chunks),
            )
        started = self.stream(r.lease_id, r.seq)
        if started is None:  # cannot happen: inserted or found in the transaction above
            raise StoreError(str(self.db.path), f"stream {r.seq} vanished")
        return started

    def advance_stream(self, lease_id: bytes, seq: int, next_chunk: int, size: int) -> None:
        """Chunks up to ``next_chunk`` are verified and synced to the period's file."""
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE lab_streams SET next_chunk = ?, size = ? "
                "WHERE lease_id = ? AND seq = ? AND next_chunk < ?",
                (next_chunk, size, lease_id, seq, next_chunk),
            )

    def output(self, lease_id: bytes) -> bytes:
        """The job's inline output received so far: every accepted period's, in seq order
        (streamed periods' are in their files: :meth:`output_parts`)."""
        rows = self.db.query(
            "SELECT output FROM lab_receipts WHERE lease_id = ? ORDER BY seq", (lease_id,)
        )
        return b"".join(bytes(r["output"]) for r in rows)

    # --- vouchers ----------------------------------------------------------------------------

    def save_voucher(self, signed: Signed[Voucher]) -> bool:
        """Store a voucher before it is sent; True when new."""
        v = signed.message
        with self.db.transaction() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO lab_vouchers (lease_id, amount, receipt_hash, signed, "
                "created) VALUES (?, ?, ?, ?, ?)",
                (v.lease_id, uint_blob(v.cumulative_amount), v.receipt_hash,
                 codec.encode(signed), time.time()),
            )  # fmt: skip
        return cur.rowcount == 1

    def best_voucher(self, lease_id: bytes) -> tuple[Signed[Voucher], bool] | None:
        """The voucher for the largest amount, and whether the provider acknowledged it."""
        rows = self.db.query(
            "SELECT signed, sent FROM lab_vouchers WHERE lease_id = ? ORDER BY amount DESC LIMIT 1",
            (lease_id,),
        )
        if not rows:
            return None
        return codec.decode_as(rows[0]["signed"], Signed[Voucher]), bool(rows[0]["sent"])

    def vouched(self, lease_id: bytes) -> int:
        """The most the lab has signed for the lease (0 before the first voucher)."""
        best = self.best_voucher(lease_id)
        return 0 if best is None else best[0].message.cumulative_amount

    def mark_sent(self, lease_id: bytes, amount: int) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE lab_vouchers SET sent = 1 WHERE lease_id = ? AND amount = ?",
                (lease_id, uint_blob(amount)),
            )

    # --- actions -----------------------------------------------------------------------------

    # --- hardware challenges -----------------------------------------------------------------

    def add_challenge(self, lease_id: bytes, provider: str, outcome: ChallengeOutcome) -> None:
        """Record a challenge's outcome (before acting on it)."""
        o = outcome
        with self.db.transaction() as conn:
            conn.execute(
            "INSERT INTO lab_challenges (lease_id, provider, n, gpu_class, passed, elapsed_s, "
            "deadline_s, reason, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (lease_id, provider, o.n, o.gpu_class, int(o.passed), o.elapsed_s, o.deadline_s,
             o.reason, time.time()),
        )  # fmt: skip

    def challenge_record(self, provider: str) -> tuple[int, int]:
        """(challenges passed, challenges failed) by ``provider`` for this lab."""
        rows = self.db.query(
            "SELECT COALESCE(SUM(passed), 0) AS ok, COUNT(*) AS total FROM lab_challenges "
            "WHERE provider = ?",
            (provider,),
        )
        ok, total = int(rows[0]["ok"]), int(rows[0]["total"])
        return ok, total - ok

    def add_action(
        self, lease_id: bytes, kind: ActionKind, a: bytes = b"", b: bytes = b"", amount: int = 0
    ) -> bool:
        """Decide on an action (stored before it is sent); False if the same one is stored."""
        with self.db.transaction() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO lab_actions (lease_id, kind, a, b, amount, status, "
                "created) VALUES (?, ?, ?, ?, ?, 'pending', ?)",
                (lease_id, kind, a, b, uint_blob(amount), time.time()),
            )
        return cur.rowcount == 1

    def terminating(self, lease_id: bytes) -> bool:
        """Whether the lab has decided to terminate the lease (its job over, or it failed)."""
        rows = self.db.query(
            "SELECT 1 FROM lab_actions WHERE lease_id = ? AND kind = 'terminate' LIMIT 1",
            (lease_id,),
        )
        return bool(rows)

    def actions(self, *statuses: ActionStatus) -> list[LabAction]:
        rows = self.db.query("SELECT * FROM lab_actions ORDER BY id")
        out = [
            LabAction(
                r["id"],
                bytes(r["lease_id"]),
                cast(ActionKind, r["kind"]),
                bytes(r["a"]),
                bytes(r["b"]),
                blob_uint(r["amount"]),
                cast(ActionStatus, r["status"]),
                r["reason"],
            )
            for r in rows
        ]
        return [a for a in out if not statuses or a.status in statuses]

    def finish_action(self, action_id: int, status: ActionStatus, reason: str = "") -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE lab_actions SET status = ?, reason = ? WHERE id = ?",
                (status, reason, action_id),
            )


def _lease_record(row: sqlite3.Row) -> LeaseRecord:
    return LeaseRecord(
        lease=codec.decode_as(row["terms"], Lease),
        job_idx=int(row["job_idx"]),
        offer_hash=bytes(row["offer_hash"]),
        phase=cast(Phase, row["phase"]),
        job_state=str(row["job_state"]),
        end_at=int(row["end_at"]),
        failure=str(row["failure"]),
        audit_secret=bytes(row["audit_secret"]),
        posted=bool(row["posted"]),
    )


__all__ = [
    "LAB_MIGRATIONS",
    "ActionKind",
    "ActionStatus",
    "ChallengeOutcome",
    "JobRecord",
    "LabAction",
    "LabStore",
    "LeaseRecord",
    "Phase",
    "StreamProgress",
]
