"""What a provider must never lose, written before anything acts on it (write-before-act).

* a lease's terms, as soon as it is seen opening;
* every receipt it signs, *before* the receipt leaves the process: after a restart the chain
  resumes from the last stored receipt, so it can never sign two different receipts for one
  ``seq`` (equivocation, which is slashable); the store refuses such a second receipt outright;
* every voucher a lab sends, once its signature by the lease's voucher key checks, *before* it is
  acknowledged or claimed: a voucher acknowledged and then lost would be money lost.

``claimable()`` is then what the chain owes: for each open lease, the best voucher, if it is worth
more than what the chain was last seen to have paid.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

from market.protocol import codec
from market.protocol.eip712 import Domain, receipt_hash
from market.protocol.signing import verify_voucher
from market.protocol.types import Lease, Receipt, Signed, Voucher
from nodes.errors import StoreError
from nodes.state.db import StateDB, blob_uint, uint_blob


class Records:
    """Leases, receipts issued and vouchers received, in a :class:`StateDB`."""

    def __init__(self, db: StateDB, domain: Domain) -> None:
        self.db = db
        self.domain = domain

    # --- leases ------------------------------------------------------------------------------

    def save_lease(self, lease: Lease) -> None:
        """Remember a lease's terms (a no-op when already known)."""
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO leases (lease_id, terms, paid, created) VALUES (?, ?, ?, ?)",
                (lease.id, codec.encode(lease), uint_blob(0), time.time()),
            )

    def lease(self, lease_id: bytes) -> Lease | None:
        rows = self.db.query("SELECT terms FROM leases WHERE lease_id = ?", (lease_id,))
        return codec.decode_as(rows[0]["terms"], Lease) if rows else None

    def open_leases(self) -> list[Lease]:
        rows = self.db.query("SELECT terms FROM leases WHERE closed = 0 ORDER BY created")
        return [codec.decode_as(r["terms"], Lease) for r in rows]

    def record_paid(self, lease_id: bytes, paid: int) -> None:
        """What the chain says the lease has paid; kept as the highest value seen."""
        with self.db.transaction() as conn:
            row = conn.execute("SELECT paid FROM leases WHERE lease_id = ?", (lease_id,)).fetchone()
            if row is None:
                raise StoreError(str(self.db.path), f"unknown lease 0x{lease_id.hex()}")
            if paid > blob_uint(row[0]):
                conn.execute(
                    "UPDATE leases SET paid = ? WHERE lease_id = ?", (uint_blob(paid), lease_id)
                )

    def paid(self, lease_id: bytes) -> int:
        rows = self.db.query("SELECT paid FROM leases WHERE lease_id = ?", (lease_id,))
        return blob_uint(rows[0]["paid"]) if rows else 0

    def forget_lease(self, lease_id: bytes) -> None:
        """A reorganisation removed a lease nothing was signed or received for: forget it."""
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM leases WHERE lease_id = ?", (lease_id,))

    def mark_closed(self, lease_id: bytes) -> None:
        """The lease closed; its stake lock may still be held (see :meth:`awaiting_release`)."""
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE leases SET closed = 1 WHERE lease_id = ? AND closed = 0", (lease_id,)
            )

    def awaiting_release(self) -> list[Lease]:
        """Closed leases whose stake lock was not seen released yet."""
        rows = self.db.query("SELECT terms FROM leases WHERE closed = 1 ORDER BY created")
        return [codec.decode_as(r["terms"], Lease) for r in rows]

    def mark_released(self, lease_id: bytes) -> None:
        """The lease's stake lock went back to the provider (or a slash took it)."""
        with self.db.transaction() as conn:
            conn.execute("UPDATE leases SET closed = 2 WHERE lease_id = ?", (lease_id,))

    # --- receipts ----------------------------------------------------------------------------

    def save_receipt(
        self,
        signed: Signed[Receipt],
        also: Callable[[sqlite3.Connection], None] | None = None,
    ) -> bytes:
        """Store a receipt this provider signed; returns its hash. Storing the same receipt again
        is a no-op; a *different* receipt for a stored ``seq`` is refused (it would equivocate).
        ``also`` runs inside the same transaction when the receipt is new (what must be stored
        with it, or not at all: the period's output)."""
        r = signed.message
        h = receipt_hash(self.domain, r)
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT hash FROM receipts WHERE lease_id = ? AND seq = ?", (r.lease_id, r.seq)
            ).fetchone()
            if row is not None:
                if bytes(row[0]) != h:
                    raise StoreError(
                        str(self.db.path),
                        f"lease 0x{r.lease_id.hex()} already has another receipt {r.seq}; "
                        "signing a second one would be equivocation",
                    )
                return h
            conn.execute(
                "INSERT INTO receipts (lease_id, seq, hash, signed, created) "
                "VALUES (?, ?, ?, ?, ?)",
                (r.lease_id, r.seq, h, codec.encode(signed), time.time()),
            )
            if also is not None:
                also(conn)
        return h

    def receipts(self, lease_id: bytes) -> list[Signed[Receipt]]:
        rows = self.db.query(
            "SELECT signed FROM receipts WHERE lease_id = ? ORDER BY seq", (lease_id,)
        )
        return [codec.decode_as(r["signed"], Signed[Receipt]) for r in rows]

    def latest_receipt(self, lease_id: bytes) -> Signed[Receipt] | None:
        """The head to resume a lease's ReceiptChain from (None before the first receipt)."""
        rows = self.db.query(
            "SELECT signed FROM receipts WHERE lease_id = ? ORDER BY seq DESC LIMIT 1", (lease_id,)
        )
        return codec.decode_as(rows[0]["signed"], Signed[Receipt]) if rows else None

    # --- vouchers ----------------------------------------------------------------------------

    def save_voucher(self, signed: Signed[Voucher]) -> bool:
        """Check a lab's voucher (known lease, signed by the lease's voucher key) and store it;
        True when it is new. Raises InvalidSignature for a voucher that key did not sign.

        The voucher key is the one the lab's bid named (``lease.voucher_key``; the lab's own
        when it named none): the only ECDSA signature ``claim`` accepts, so a voucher signed by
        any other key, the lab's own included, could never be claimed."""
        v = signed.message
        lease = self.lease(v.lease_id)
        if lease is None:
            raise StoreError(str(self.db.path), f"voucher for unknown lease 0x{v.lease_id.hex()}")
        verify_voucher(self.domain, signed, lease.voucher_key)
        with self.db.transaction() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO vouchers (lease_id, amount, receipt_hash, signed, created) "
                "VALUES (?, ?, ?, ?, ?)",
                (v.lease_id, uint_blob(v.cumulative_amount), v.receipt_hash,
                 codec.encode(signed), time.time()),
            )  # fmt: skip
        return cur.rowcount == 1

    def best_voucher(self, lease_id: bytes) -> Signed[Voucher] | None:
        """The voucher for the largest cumulative amount."""
        rows = self.db.query(
            "SELECT signed FROM vouchers WHERE lease_id = ? ORDER BY amount DESC LIMIT 1",
            (lease_id,),
        )
        return codec.decode_as(rows[0]["signed"], Signed[Voucher]) if rows else None

    def claimable(self) -> list[tuple[Lease, Signed[Voucher]]]:
        """For each open lease, its best voucher when it is worth more than the recorded paid."""
        out = []
        for lease in self.open_leases():
            best = self.best_voucher(lease.id)
            if best is None:
                continue
            worth = min(best.message.cumulative_amount, lease.escrow)
            if worth > self.paid(lease.id):
                out.append((lease, best))
        return out


__all__ = ["Records"]
