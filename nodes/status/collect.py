"""Reading one account's standing from the chain (``collect_status``)."""

from __future__ import annotations

from dataclasses import dataclass

from eth_typing import ChecksumAddress

from market.chain.client import MarketClient
from market.chain.events import ChainEvent
from market.chain.history import DEFAULT_CHUNK_BLOCKS
from market.protocol.types import (
    Lease,
    LeaseId,
    LeaseState,
    TokenAmount,
    checksum_address,
)
from nodes.status.model import (
    _CLAIM_EVENTS,
    _STATUS_NAMES,
    ClaimView,
    LeaseStatusName,
    LeaseView,
    Role,
    StakeView,
    Status,
)


def collect_status(client: MarketClient, address: str) -> Status:
    """Read ``address``'s standing from the chain: events up to the head block, then the current
    state of each lease found. Raises DeploymentError when no market answers at the deployment's
    addresses (a reset chain, or a deployment file for another chain with the same id)."""
    return _collect(client, checksum_address(address))


def _collect(client: MarketClient, account: ChecksumAddress) -> Status:
    head = client.head()
    opened, trails = _read_leases(client, account, head.number)
    info = client.provider_info(account)
    stake = (
        StakeView(
            stake=TokenAmount(info.stake),
            unbonding=TokenAmount(info.unbonding),
            unbond_ready_at=info.unbond_ready_at,
            min_stake=TokenAmount(client.min_stake()),
        )
        if info.registered
        else None
    )
    leases = tuple(
        _lease_view(client, account, terms, trails.get(terms.id), head.timestamp)
        for terms in opened
    )
    return Status(
        address=account,
        chain_id=client.contracts.deployment.chain_id,
        block=head.number,
        chain_time=head.timestamp,
        balance=TokenAmount(client.balance_of(account)),
        withdrawable=TokenAmount(client.withdrawable(account)),
        provider=stake,
        leases=leases,
    )


@dataclass(slots=True)
class _ClaimTrail:
    """The last receipt posted for a lease, from its events, and whether the lab disputed it."""

    seq: int
    amount: int
    ready_at: int
    disputed: bool = False


def _read_leases(
    client: MarketClient, account: ChecksumAddress, to_block: int
) -> tuple[list[Lease], dict[bytes, _ClaimTrail]]:
    """The terms of every lease ``account`` is party to, in opening order, and the claim trail of
    every lease, from the events in ``[deploy block, to_block]`` (read in chunks)."""
    opened: list[Lease] = []
    trails: dict[bytes, _ClaimTrail] = {}
    start = client.contracts.deployment.deploy_block
    for low in range(start, to_block + 1, DEFAULT_CHUNK_BLOCKS):
        for event in client.events(low, min(low + DEFAULT_CHUNK_BLOCKS - 1, to_block)):
            if event.name == "LeaseOpened":
                terms: Lease = event.args["lease"]
                if account in (terms.provider, terms.lab):
                    opened.append(terms)
            elif event.name in _CLAIM_EVENTS:
                _follow_claim(trails, event)
    return opened, trails


def _follow_claim(trails: dict[bytes, _ClaimTrail], event: ChainEvent) -> None:
    lease_id = bytes(event.args["lease_id"])
    if event.name == "ReceiptPosted":
        trails[lease_id] = _ClaimTrail(
            seq=event.args["receipt"].seq,
            amount=int(event.args["amount"]),
            ready_at=int(event.args["ready_at"]),
        )
    elif (trail := trails.get(lease_id)) is not None:  # ClaimDisputed or ClaimFinalized
        trail.disputed = event.name == "ClaimDisputed"


def _lease_view(
    client: MarketClient,
    account: ChecksumAddress,
    terms: Lease,
    trail: _ClaimTrail | None,
    now: int,
) -> LeaseView:
    state = client.lease_state(terms.id)
    status: LeaseStatusName = "slashed" if state.slashed else _STATUS_NAMES[state.status]
    role: Role = "provider" if terms.provider == account else "lab"
    claim = None
    if status in ("active", "terminated"):
        claim = _claim_view(client, terms.id, state, trail, now)
    return LeaseView(
        id=terms.id,
        role=role,
        counterparty=terms.lab if role == "provider" else terms.provider,
        gpus=terms.gpus,
        price_per_gpu_second=TokenAmount(terms.price_per_gpu_second),
        escrow=terms.escrow,
        paid=TokenAmount(state.paid),
        status=status,
        start=terms.start,
        end=state.end,
        end_in_s=state.end - now,
        claim=claim,
    )


def _claim_view(
    client: MarketClient, lease_id: LeaseId, state: LeaseState, trail: _ClaimTrail | None, now: int
) -> ClaimView | None:
    slot = client.claim_slot(lease_id)
    if slot.ready_at != 0:
        return ClaimView(
            state="ready" if now >= slot.ready_at else "pending",
            seq=slot.seq,
            amount=TokenAmount(slot.amount),
            due=TokenAmount(max(0, slot.amount - state.paid)),
            ready_at=slot.ready_at,
            ready_in_s=max(0, slot.ready_at - now),
        )
    if trail is not None and trail.disputed:
        return ClaimView(
            state="disputed",
            seq=trail.seq,
            amount=TokenAmount(trail.amount),
            due=TokenAmount(0),
            ready_at=trail.ready_at,
            ready_in_s=max(0, trail.ready_at - now),
        )
    return None


# --- rendering ---------------------------------------------------------------------------------


__all__ = ["collect_status"]
