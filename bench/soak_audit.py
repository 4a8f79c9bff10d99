"""The soak's ledger audit: every lease of a local market checked against the chain's events and
the daemons' own records, once everything has settled.

Per lease (``LeaseOpened``), with ``received`` the provider's best voucher in its state
(``vouchers``, each signature checked when it arrived) and ``escrow`` the lease's escrow:

* ``lost_pay``: ``min(received, escrow) - paid`` where positive, summed over leases: pay an
  honest provider earned (a voucher it holds, signed by the lab) and was not paid.
* ``paid_mismatches``: a lease whose ``paid`` is not exactly ``max(min(received, escrow),
  terminated)``, ``terminated`` being what the lab paid itself when it terminated the lease
  (``LeaseTerminated.paid``: its best voucher, which may not have reached the provider). A lease
  settled by an optimistic claim (``ClaimFinalized``) or a dispute (``DisputeRuled``), or with a
  minimum charge, is paid by other rules and counted apart (``leases_optimistic``).
* ``refund_mismatches``: a ``LeaseClosed`` whose refund is not ``escrow - paid``, or whose paid
  is not the lease's final paid.
* ``double_claims``: a lease whose ``Claimed`` amounts add up to more than its final paid, a
  receipt hash paid twice on one lease, or a lease closed (refunded) twice.
* ``unsettled``: leases not closed.
* ``disputes``: ``ClaimDisputed`` events. Every party is honest: a dispute is a lab refusing an
  honest provider's optimistic claim, a finding (``disputes_open``: still awaiting a ruling at
  the end, their amount and bonds held by the market).
* ``supply_conserved``: the token's total supply equals the balances of every account of the
  devnet plus the market's (no token went anywhere else, none was created).
* ``market_accounted``: the market holds exactly what it owes: every account's withdrawable
  credit plus every provider's stake (bonded and unbonding) plus the escrow of leases not closed
  (less what they paid) plus, for each dispute awaiting a ruling, its bond and (once the lease
  is closed) the disputed amount held back from the refund.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from market.chain.client import MarketClient
from market.protocol.types import Lease, LeaseState, LeaseStatus
from nodes.localnet import LocalMarket


@dataclass
class Audit:
    leases: int = 0
    closed: int = 0
    lost_pay: int = 0
    lost_pay_leases: int = 0
    double_claims: int = 0
    paid_mismatches: int = 0
    refund_mismatches: int = 0
    unsettled: int = 0
    disputes: int = 0
    disputes_open: int = 0
    leases_optimistic: int = 0
    leases_terminated: int = 0
    paid_total: int = 0
    refund_total: int = 0
    supply_conserved: bool = False
    market_accounted: bool = False
    findings: list[str] = field(default_factory=list)
    """One line per lease that failed a check: what the audit saw."""

    @property
    def clean(self) -> bool:
        return not (
            self.lost_pay or self.double_claims or self.paid_mismatches
            or self.refund_mismatches or self.unsettled or self.disputes
        ) and self.supply_conserved and self.market_accounted  # fmt: skip

    def figures(self) -> dict[str, int | bool]:
        return {
            "leases": self.leases,
            "leases_closed": self.closed,
            "leases_optimistic": self.leases_optimistic,
            "leases_terminated_by_lab": self.leases_terminated,
            "lost_pay": self.lost_pay,
            "lost_pay_leases": self.lost_pay_leases,
            "double_claims": self.double_claims,
            "paid_mismatches": self.paid_mismatches,
            "refund_mismatches": self.refund_mismatches,
            "unsettled": self.unsettled,
            "disputes": self.disputes,
            "disputes_open": self.disputes_open,
            "paid_total": self.paid_total,
            "refund_total": self.refund_total,
            "supply_conserved": self.supply_conserved,
            "market_accounted": self.market_accounted,
        }


def _best(folder: Path, pattern: str, table: str) -> dict[bytes, int]:
    """The largest voucher amount per lease in the ``table`` of every state file matching."""
    best: dict[bytes, int] = {}
    for path in sorted(folder.glob(pattern)):
        with sqlite3.connect(path) as db:
            rows = db.execute(f"SELECT lease_id, MAX(amount) FROM {table} GROUP BY lease_id")
            for lease_id, amount in rows:
                best[bytes(lease_id)] = max(best.get(bytes(lease_id), 0), int.from_bytes(amount))
    return best


def audit(net: LocalMarket) -> Audit:
    """Check every lease of ``net``'s market (call once every daemon has settled)."""
    reader = MarketClient.connect(net.contracts.deployment)
    events = reader.events()
    leases: list[Lease] = [e.args["lease"] for e in events if e.name == "LeaseOpened"]
    by_lease: dict[bytes, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for e in events:
        if "lease_id" in e.args:
            by_lease[bytes(e.args["lease_id"])][e.name].append(dict(e.args))
    received = _best(net.folder, "provider*/state.sqlite", "vouchers")
    states = reader.lease_states([lease.id for lease in leases])
    out = Audit(leases=len(leases))
    for lease in leases:
        state, seen = states[lease.id], by_lease[lease.id]
        name = f"lease 0x{lease.id.hex()[:16]}"
        escrow, paid = lease.escrow, state.paid
        out.paid_total += paid
        if state.status is not LeaseStatus.CLOSED:
            out.unsettled += 1
            out.findings.append(f"{name} is {state.status.name}")
        else:
            out.closed += 1
        best = min(received.get(lease.id, 0), escrow)
        if best > paid:
            out.lost_pay += best - paid
            out.lost_pay_leases += 1
            out.findings.append(f"{name} paid {paid} < voucher {best} the provider holds")
        claims = seen["Claimed"]
        hashes = [c["receipt_hash"] for c in claims if c["amount"] and any(c["receipt_hash"])]
        closes = seen["LeaseClosed"]
        if (
            sum(int(c["amount"]) for c in claims) > paid
            or len(hashes) != len(set(hashes))
            or len(closes) > 1
        ):
            out.double_claims += 1
            out.findings.append(f"{name} paid twice: claims {claims}, closes {closes}")
        for close in closes:
            out.refund_total += int(close["refund"])
            if close["paid"] != paid or (not state.disputed and close["refund"] != escrow - paid):
                out.refund_mismatches += 1
                out.findings.append(f"{name} closed {close}; escrow {escrow}, paid {paid}")
        for dispute in seen["ClaimDisputed"]:
            out.disputes += 1
            out.findings.append(f"{name} claim disputed: {dispute}")
        if seen["ClaimFinalized"] or seen["DisputeRuled"] or lease.min_charge:
            out.leases_optimistic += 1
            continue
        terminated = [int(t["paid"]) for t in seen["LeaseTerminated"]]
        out.leases_terminated += bool(terminated)
        expected = max([best, *terminated])
        if paid != expected:
            out.paid_mismatches += 1
            out.findings.append(
                f"{name} paid {paid}, expected {expected} (provider's voucher {best}, "
                f"terminated {terminated})"
            )
    out.supply_conserved, out.market_accounted, out.disputes_open = _conservation(
        net, reader, leases, states
    )
    return out


def _conservation(
    net: LocalMarket, reader: MarketClient, leases: list[Lease], states: dict[bytes, LeaseState]
) -> tuple[bool, bool, int]:
    disputes_open = 0
    market = net.contracts.market.address
    accounts = [a.address for a in net.dev.accounts]
    holders = [*accounts, market]
    supply = reader.total_supply()
    conserved = supply == sum(net.balance(a) for a in holders)
    credits = sum(reader.withdrawable(a) for a in holders)
    stakes = 0
    for a in accounts:
        info = reader.provider_info(a)
        stakes += info.stake + info.unbonding
    held = 0
    for lease in leases:
        state = states[lease.id]
        if state.status is not LeaseStatus.CLOSED:
            held += lease.escrow - state.paid
        pending = reader.pending_claim(lease.id)
        if pending is not None and pending.disputed:
            disputes_open += 1
            held += pending.bond
            if state.status is LeaseStatus.CLOSED:  # the close held the disputed part back
                held += max(0, min(pending.amount, lease.escrow) - state.paid)
    return conserved, net.balance(market) == credits + stakes + held, disputes_open
