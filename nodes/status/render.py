"""Rendering a :class:`~nodes.status.model.Status` as an aligned table or the JSON document."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Final

from market.units import Token, per_gpu_hour
from nodes.status.model import (
    FORMAT_VERSION,
    ROLES,
    ClaimView,
    LeaseView,
    RoleTotals,
    StakeView,
    Status,
)


def status_document(status: Status) -> dict[str, Any]:
    """The JSON document of the package docstring (nodes.status), as Python values."""
    provider = None
    if status.provider is not None:
        p = status.provider
        provider = {
            "stake": p.stake,
            "locked": p.locked,
            "unbonding": p.unbonding,
            "unbond_ready_at": p.unbond_ready_at,
            "free_stake": p.free_stake,
            "min_stake": p.min_stake,
            "eligible": p.eligible,
        }
    return {
        "version": FORMAT_VERSION,
        "address": status.address,
        "chain": {"chain_id": status.chain_id, "block": status.block, "time": status.chain_time},
        "token": {"symbol": status.token.symbol, "decimals": status.token.decimals},
        "balance": status.balance,
        "withdrawable": status.withdrawable,
        "provider": provider,
        "leases": [_lease_document(lease) for lease in status.leases],
        "totals": {role: _totals_document(status.totals(role)) for role in ROLES},
    }


def _lease_document(lease: LeaseView) -> dict[str, Any]:
    c = lease.claim
    claim = None
    if c is not None:
        claim = {
            "state": c.state,
            "seq": c.seq,
            "amount": c.amount,
            "due": c.due,
            "ready_at": c.ready_at,
            "ready_in_s": c.ready_in_s,
        }
    return {
        "id": "0x" + lease.id.hex(),
        "role": lease.role,
        "counterparty": lease.counterparty,
        "gpus": lease.gpus,
        "price_per_gpu_second": lease.price_per_gpu_second,
        "price_per_gpu_hour": per_gpu_hour(lease.price_per_gpu_second),
        "escrow": lease.escrow,
        "paid": lease.paid,
        "status": lease.status,
        "start": lease.start,
        "end": lease.end,
        "end_in_s": lease.end_in_s,
        "claim": claim,
    }


def _totals_document(t: RoleTotals) -> dict[str, int]:
    return {
        "leases": t.leases,
        "open": t.open,
        "escrow_held": t.escrow_held,
        "claims_pending": t.claims_pending,
        "claims_ready": t.claims_ready,
    }


def render_json(status: Status) -> str:
    return json.dumps(status_document(status), indent=2)


_COLUMNS: Final = (
    ("LEASE", "<"),
    ("ROLE", "<"),
    ("COUNTERPARTY", "<"),
    ("GPUS", ">"),
    ("PRICE/GPU-H", ">"),
    ("ESCROW", ">"),
    ("PAID", ">"),
    ("STATUS", "<"),
    ("ENDS", "<"),
    ("CLAIM", "<"),
)


def render_table(status: Status) -> str:
    """The status as aligned text: the account, then one row per lease, then the totals; amounts
    in tokens with the token's symbol, prices per GPU-hour."""
    fmt = status.token.format
    lines = [
        f"account       {status.address}",
        f"chain         id {status.chain_id}, block {status.block}, time {status.chain_time} "
        f"({datetime.fromtimestamp(status.chain_time, UTC):%Y-%m-%d %H:%M:%S} UTC)",
        f"balance       {fmt(status.balance)}",
        f"withdrawable  {fmt(status.withdrawable)}",
        f"provider      {_stake_text(status.provider, status.chain_time, status.token)}",
    ]
    if not status.leases:
        lines.append("leases        none")
    else:
        lines.append(
            f"leases        {len(status.leases)} (amounts in {status.token.symbol}, prices per "
            "GPU-hour, times from chain time)"
        )
        lines.append("")
        lines.extend(_table([_lease_row(lease, status.token) for lease in status.leases]))
        lines.append("")
        for role in ROLES:
            t = status.totals(role)
            if t.leases:
                lines.append(
                    f"as {role:<9}  {t.leases} leases, {t.open} open: escrow held "
                    f"{fmt(t.escrow_held)}, claims pending {fmt(t.claims_pending)}, "
                    f"ready {fmt(t.claims_ready)}"
                )
    return "\n".join(lines)


def _stake_text(stake: StakeView | None, now: int, token: Token) -> str:
    if stake is None:
        return "not registered"
    verdict = "eligible" if stake.eligible else "below the minimum: cannot offer"
    fmt = token.format
    text = (
        f"stake {fmt(stake.stake)}, locked {fmt(stake.locked)}, "
        f"unbonding {fmt(stake.unbonding)}, free {fmt(stake.free_stake)} "
        f"(minimum {fmt(stake.min_stake)}: {verdict})"
    )
    if stake.unbonding:
        text += f"; unbonded {_relative(stake.unbond_ready_at - now)}"
    return text


def _lease_row(lease: LeaseView, token: Token) -> list[str]:
    return [
        "0x" + lease.id.hex()[:12],
        lease.role,
        lease.counterparty,
        str(lease.gpus),
        token.format(per_gpu_hour(lease.price_per_gpu_second)),
        token.format(lease.escrow),
        token.format(lease.paid),
        lease.status,
        _relative(lease.end_in_s),
        _claim_text(lease.claim, token),
    ]


def _claim_text(claim: ClaimView | None, token: Token) -> str:
    if claim is None:
        return "-"
    amount, due = token.format(claim.amount), token.format(claim.due)
    if claim.state == "disputed":
        return f"{amount} disputed"
    if claim.state == "ready":
        return f"{amount} (due {due}) ready now"
    return f"{amount} (due {due}) ready in {_duration(claim.ready_in_s)}"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [
        max(len(header), *(len(row[i]) for row in rows)) for i, (header, _) in enumerate(_COLUMNS)
    ]

    def line(cells: list[str]) -> str:
        parts = (
            f"{cell:{align}{width}}"
            for cell, (_, align), width in zip(cells, _COLUMNS, widths, strict=True)
        )
        return "  ".join(parts).rstrip()

    return [line([header for header, _ in _COLUMNS]), *(line(row) for row in rows)]


def _relative(offset_s: int) -> str:
    """An offset from now: ``in 5m00s``, ``3h10m ago``, ``now``."""
    if offset_s == 0:
        return "now"
    return f"in {_duration(offset_s)}" if offset_s > 0 else f"{_duration(-offset_s)} ago"


def _duration(seconds: int) -> str:
    """A non-negative duration, its two largest units: ``45s``, ``29m50s``, ``1h02m``, ``3d04h``."""
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02}h"
    if hours:
        return f"{hours}h{minutes:02}m"
    if minutes:
        return f"{minutes}m{secs:02}s"
    return f"{secs}s"


__all__ = ["render_json", "render_table", "status_document"]
