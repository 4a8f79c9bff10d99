"""The data of ``gpumarket status``: frozen views of one account's standing (see the package)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from eth_account import Account
from eth_typing import ChecksumAddress

from market.errors import InvalidArgument, InvalidKey
from market.protocol.types import (
    LeaseId,
    LeaseStatus,
    TokenAmount,
    checksum_address,
)
from market.units import Token

FORMAT_VERSION: Final = 2
Role = Literal["provider", "lab"]
LeaseStatusName = Literal["active", "terminated", "closed", "slashed"]
ClaimState = Literal["pending", "ready", "disputed"]
ROLES: Final[tuple[Role, ...]] = ("provider", "lab")
_STATUS_NAMES: Final[Mapping[LeaseStatus, LeaseStatusName]] = {
    LeaseStatus.ACTIVE: "active",
    LeaseStatus.TERMINATED: "terminated",
    LeaseStatus.CLOSED: "closed",
}


@dataclass(frozen=True, slots=True)
class StakeView:
    """A registered provider's stake against the market's minimum: ``stake`` is bonded,
    ``locked`` of it by leases in their proof window; ``unbonding`` has left it."""

    stake: TokenAmount
    locked: TokenAmount
    unbonding: TokenAmount
    unbond_ready_at: int
    min_stake: TokenAmount

    @property
    def free_stake(self) -> TokenAmount:
        """Bonded stake no lease locks: what new leases can lock."""
        return TokenAmount(self.stake - self.locked)

    @property
    def eligible(self) -> bool:
        """Whether the free stake reaches the minimum, which offers need."""
        return self.free_stake >= self.min_stake


@dataclass(frozen=True, slots=True)
class ClaimView:
    """A lease's optimistic claim: ``amount`` in total for the lease, ``due`` of it unpaid."""

    state: ClaimState
    seq: int
    amount: TokenAmount
    due: TokenAmount
    ready_at: int
    ready_in_s: int


@dataclass(frozen=True, slots=True)
class LeaseView:
    """One lease the account is party to, seen from its ``role``."""

    id: LeaseId
    role: Role
    counterparty: ChecksumAddress
    gpus: int
    price_per_gpu_second: TokenAmount
    escrow: TokenAmount
    paid: TokenAmount
    status: LeaseStatusName
    start: int
    end: int
    end_in_s: int
    claim: ClaimView | None

    @property
    def open(self) -> bool:
        return self.status in ("active", "terminated")


@dataclass(frozen=True, slots=True)
class RoleTotals:
    """Sums over the account's leases in one role."""

    leases: int
    open: int
    escrow_held: TokenAmount
    claims_pending: TokenAmount
    claims_ready: TokenAmount


@dataclass(frozen=True, slots=True)
class Status:
    """An account's standing at one head block."""

    address: ChecksumAddress
    chain_id: int
    block: int
    chain_time: int
    balance: TokenAmount
    withdrawable: TokenAmount
    provider: StakeView | None
    leases: tuple[LeaseView, ...]
    token: Token
    """The settlement token: its symbol and decimals, for showing amounts in tokens."""

    def totals(self, role: Role) -> RoleTotals:
        mine = [lease for lease in self.leases if lease.role == role]
        open_leases = [lease for lease in mine if lease.open]

        def due(state: ClaimState) -> TokenAmount:
            claims = (lease.claim for lease in mine)
            return TokenAmount(sum(c.due for c in claims if c is not None and c.state == state))

        return RoleTotals(
            leases=len(mine),
            open=len(open_leases),
            escrow_held=TokenAmount(sum(lease.escrow - lease.paid for lease in open_leases)),
            claims_pending=due("pending"),
            claims_ready=due("ready"),
        )


def parse_address(text: str) -> ChecksumAddress:
    """An account address as given on the command line: 0x and 40 hex digits, all lower case,
    all upper case or with a correct EIP-55 checksum. Raises InvalidArgument (a ValueError)
    saying what is wrong."""
    try:
        address = checksum_address(text)
    except ValueError:
        raise InvalidArgument(
            "address", text, f"not an address (0x and 40 hex digits): {text!r}"
        ) from None
    if text[2:] not in (address[2:], text[2:].lower(), text[2:].upper()):
        raise InvalidArgument(
            "address", text, f"wrong EIP-55 checksum in {text!r} (did you mean {address}?)"
        )
    return address


def address_of_key(key: str, variable: str) -> ChecksumAddress:
    """The account of the private key held in environment variable ``variable``."""
    try:
        return checksum_address(Account.from_key(key).address)
    except ValueError:  # eth-keys reports a malformed key as ValueError; the key is not shown
        raise InvalidKey(
            "secp256k1 private", f"{variable} does not hold a private key (0x and 64 hex digits)"
        ) from None


__all__ = [
    "FORMAT_VERSION",
    "ROLES",
    "ClaimState",
    "ClaimView",
    "LeaseStatusName",
    "LeaseView",
    "Role",
    "RoleTotals",
    "StakeView",
    "Status",
    "address_of_key",
    "parse_address",
]
