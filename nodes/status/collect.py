"""Reading one account's standing from the chain (``collect_status``)."""

from __future__ import annotations

from eth_typing import ChecksumAddress

from market.chain.client import MarketClient
from market.chain.history import DEFAULT_CHUNK_BLOCKS
from market.protocol.types import (
    Lease,
    LeaseId,
    LeaseState,
    TokenAmount,
    checksum_address,
)
from nodes.status.model import (
    _STATUS_NAMES,
    ClaimState,
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
    opened = _read_leases(client, account, head.number)
    info = client.provider_info(account)
    stake = (
        StakeView(
            stake=TokenAmount(info.stake),
            locked=TokenAmount(info.locked),
            unbonding=TokenAmount(info.unbonding),
            unbond_ready_at=info.unbond_ready_at,
            min_stake=TokenAmount(client.min_stake()),
        )
        if info.registered
        else None
    )
    leases = tuple(_lease_view(client, account, terms, head.timestamp) for terms in opened)
    return Status(
        address=account,
        chain_id=client.contracts.deployment.chain_id,
        block=head.number,
        chain_time=head.timestamp,
        balance=TokenAmount(client.balance_of(account)),
        withdrawable=TokenAmount(client.withdrawable(account)),
        provider=stake,
        leases=leases,
        token=client.token_metadata(),
    )


def _read_leases(client: MarketClient, account: ChecksumAddress, to_block: int) -> list[Lease]:
    """The terms of every lease ``account`` is party to, in opening order, from the events in
    ``[deploy block, to_block]`` (read in chunks)."""
    opened: list[Lease] = []
    start = client.contracts.deployment.deploy_block
    for low in range(start, to_block + 1, DEFAULT_CHUNK_BLOCKS):
        for event in client.events(low, min(low + DEFAULT_CHUNK_BLOCKS - 1, to_block)):
            if event.name == "LeaseOpened":
                terms: Lease = event.args["lease"]
                if account in (terms.provider, terms.lab):
                    opened.append(terms)
    return opened


def _lease_view(
    client: MarketClient,
    account: ChecksumAddress,
    terms: Lease,
    now: int,
) -> LeaseView:
    state = client.lease_state(terms.id)
    status: LeaseStatusName = "slashed" if state.slashed else _STATUS_NAMES[state.status]
    role: Role = "provider" if terms.provider == account else "lab"
    claim = None
    if status in ("active", "terminated") or state.disputed:
        claim = _claim_view(client, terms.id, state, now)
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
    client: MarketClient, lease_id: LeaseId, state: LeaseState, now: int
) -> ClaimView | None:
    slot = client.claim_slot(lease_id)
    if slot.ready_at == 0:
        return None
    # A disputed claim is payable from its ruling deadline unless the arbiter rules for the lab.
    ready_at = slot.ruling_deadline if slot.disputed else slot.ready_at
    ready: ClaimState = "ready" if now >= ready_at else "pending"
    return ClaimView(
        state="disputed" if slot.disputed else ready,
        seq=slot.seq,
        amount=TokenAmount(slot.amount),
        due=TokenAmount(max(0, slot.amount - state.paid)),
        ready_at=ready_at,
        ready_in_s=max(0, ready_at - now),
    )


# --- rendering ---------------------------------------------------------------------------------


__all__ = ["collect_status"]
