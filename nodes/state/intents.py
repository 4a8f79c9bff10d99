"""The intent log: every chain action is written down before it is sent.

An intent moves through these states, each change committed before the step it enables::

    pending ──> sent ──> done        the transaction was mined and did what it was for
       │          │ └──> failed      it was mined and reverted (``reason`` says why)
       └──────────┴────> obsolete    the chain already shows the effect, or it can no longer happen

``pending``: the action is decided (kind and arguments stored) and nothing is signed yet.
``sent``: the signed transaction (raw bytes, hash, nonce) is stored *before* it is broadcast, so a
crash in between leaves bytes that can be broadcast again unchanged: the same hash, never a second
payment. Which state a crash leaves and what restarting does is in :mod:`nodes.state.durable`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, cast

import msgpack

from nodes.errors import StoreError
from nodes.state.db import StateDB

IntentStatus = Literal["pending", "sent", "done", "failed", "obsolete"]
OPEN_STATUSES: tuple[IntentStatus, ...] = ("pending", "sent")


@dataclass(frozen=True, slots=True)
class Intent:
    """One row of the log. ``args`` is the action's msgpack encoding (see nodes.state.actions)."""

    id: int
    kind: str
    args: bytes
    status: IntentStatus
    tx_hash: bytes | None
    tx_nonce: int | None
    raw_tx: bytes | None
    attempts: int
    result: Mapping[str, int]
    reason: str

    @property
    def open(self) -> bool:
        """Not yet known to be finished: reconcile it before acting again."""
        return self.status in OPEN_STATUSES


def pack_result(result: Mapping[str, int]) -> bytes:
    """Results are str -> int maps; ints above 64 bits travel as decimal strings."""
    packed: bytes = msgpack.packb(
        {k: (str(v) if v >= 2**63 else v) for k, v in result.items()}, use_bin_type=True
    )
    return packed


def unpack_result(raw: bytes | None) -> dict[str, int]:
    if not raw:
        return {}
    data = msgpack.unpackb(raw, raw=False)
    return {str(k): int(v) for k, v in data.items()}


class IntentLog:
    """The ``intents`` table of a :class:`~nodes.state.db.StateDB`."""

    def __init__(self, db: StateDB) -> None:
        self.db = db

    def create(self, kind: str, args: bytes) -> Intent:
        """Record a new pending intent (committed on return)."""
        now = time.time()
        with self.db.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO intents (kind, args, status, created, updated) "
                "VALUES (?, ?, 'pending', ?, ?)",
                (kind, args, now, now),
            )
            intent_id = cur.lastrowid
        if intent_id is None:
            raise StoreError(str(self.db.path), "an intent row was not created")
        return self.get(intent_id)

    def mark_sent(
        self, intent_id: int, args: bytes, tx_hash: bytes, nonce: int, raw_tx: bytes
    ) -> Intent:
        """Record the signed transaction, before broadcasting it. ``args`` may narrow the
        action to what the chain still lacks (a batch without the items already paid)."""
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE intents SET status = 'sent', args = ?, tx_hash = ?, tx_nonce = ?, "
                "raw_tx = ?, attempts = attempts + 1, updated = ? WHERE id = ?",
                (args, tx_hash, nonce, raw_tx, time.time(), intent_id),
            )
        return self.get(intent_id)

    def finish(
        self,
        intent_id: int,
        status: Literal["done", "failed", "obsolete"],
        *,
        result: Mapping[str, int] | None = None,
        reason: str = "",
    ) -> Intent:
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE intents SET status = ?, result = ?, reason = ?, updated = ? WHERE id = ?",
                (status, pack_result(result or {}), reason, time.time(), intent_id),
            )
        return self.get(intent_id)

    def get(self, intent_id: int) -> Intent:
        rows = self.db.query("SELECT * FROM intents WHERE id = ?", (intent_id,))
        if not rows:
            raise StoreError(str(self.db.path), f"no intent with id {intent_id}")
        row = rows[0]
        return Intent(
            id=row["id"],
            kind=row["kind"],
            args=row["args"],
            status=cast(IntentStatus, row["status"]),
            tx_hash=row["tx_hash"],
            tx_nonce=row["tx_nonce"],
            raw_tx=row["raw_tx"],
            attempts=row["attempts"],
            result=unpack_result(row["result"]),
            reason=row["reason"],
        )

    def open_intents(self) -> list[Intent]:
        """Intents not known to be finished, oldest first: what a restart must reconcile."""
        rows = self.db.query(
            "SELECT id FROM intents WHERE status IN ('pending', 'sent') ORDER BY id"
        )
        return [self.get(r["id"]) for r in rows]

    def all(self) -> list[Intent]:
        return [self.get(r["id"]) for r in self.db.query("SELECT id FROM intents ORDER BY id")]


__all__ = ["OPEN_STATUSES", "Intent", "IntentLog", "IntentStatus", "pack_result", "unpack_result"]
