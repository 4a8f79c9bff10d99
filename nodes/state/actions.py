"""The chain actions a daemon logs as intents, and how each one reads its effect off the chain.

Each action knows four things:

* its arguments as bytes (``encode``/``decode``), stored in the intent row;
* :meth:`~Action.still_needed`: what of it the chain still lacks, judged from contract state alone
  (a lease paid up to the voucher, a lease closed, nothing left to withdraw), so an action is
  never sent when its effect is already there, whoever caused it;
* the Market call that performs it;
* the result of a mined transaction, read from its events (amounts credited, refunded, withdrawn).

Money cannot move twice through any of them: vouchers are cumulative (a claim pays up to the
voucher, minus what was paid), a lease closes once, a posted receipt must be newer than the last,
and a withdrawal takes only the credit standing. The intent log adds what the contract cannot: no
action is lost, and the daemon's record of what happened matches the chain's.

The optimistic claim's actions are in :mod:`nodes.state.optimistic`; :mod:`nodes.state.kinds`
maps an intent's ``kind`` back to its class.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import msgpack

from market.chain.events import ChainEvent
from market.protocol import codec
from market.protocol.types import Lease, LeaseState, LeaseStatus, Signed, Voucher
from nodes.errors import StoreError


@dataclass(frozen=True, slots=True)
class PostedClaim:
    """A lease's ``IMarket.PendingClaim`` slot as stored: ``amount``, ``seq`` and
    ``receipt_hash`` name the highest claim posted and outlive its settlement; ``ready_at`` is 0
    when no claim is pending; ``ruling_deadline`` is set while the lab's dispute is open."""

    amount: int
    seq: int
    ready_at: int
    receipt_hash: bytes
    ruling_deadline: int = 0

    @property
    def disputed(self) -> bool:
        return self.ruling_deadline != 0

    @property
    def posted(self) -> bool:
        """Whether any receipt was ever posted (a receipt's hash is never zero)."""
        return self.receipt_hash != bytes(32)

    @property
    def pending(self) -> bool:
        return self.ready_at != 0


class ChainView(Protocol):
    """The contract reads actions decide from, for one account."""

    @property
    def account(self) -> str: ...

    def lease_state(self, lease_id: bytes) -> LeaseState: ...

    def lease_states(self, lease_ids: Sequence[bytes]) -> Mapping[bytes, LeaseState]:
        """Many leases' states at once (a batch action's)."""
        ...

    def withdrawable(self, address: str) -> int: ...

    def posted_claim(self, lease_id: bytes) -> PostedClaim: ...


@dataclass(frozen=True, slots=True)
class Obsolete:
    """The chain already shows the action's effect, or it can no longer take effect."""

    reason: str


@dataclass(frozen=True, slots=True)
class Call:
    """One call on the Market contract."""

    function: str
    args: tuple[Any, ...]


class Action(Protocol):
    kind: ClassVar[str]

    def encode(self) -> bytes: ...

    def still_needed(self, view: ChainView) -> Action | Obsolete: ...

    def call(self) -> Call: ...

    def result(self, events: Sequence[ChainEvent]) -> dict[str, int]: ...


def encode_args(body: Mapping[str, Any]) -> bytes:
    packed: bytes = msgpack.packb(body, use_bin_type=True)
    return packed


def decode_args(kind: str, raw: bytes) -> dict[str, Any]:
    try:
        body = msgpack.unpackb(raw, raw=False)
    except (ValueError, msgpack.ExtraData) as exc:
        raise StoreError("intents", f"{kind} arguments are not msgpack: {exc}") from exc
    if not isinstance(body, dict):
        raise StoreError("intents", f"{kind} arguments are not a map")
    return body


def sum_of(events: Sequence[ChainEvent], name: str, field: str) -> int:
    return sum(int(e.args[field]) for e in events if e.name == name)


def is_live(state: LeaseState) -> bool:
    return state.status in (LeaseStatus.ACTIVE, LeaseStatus.TERMINATED)


@dataclass(frozen=True, slots=True)
class ClaimBatch:
    """Redeem vouchers, many leases in one ``claimBatch``."""

    items: tuple[tuple[Lease, Signed[Voucher]], ...]
    kind: ClassVar[str] = "claim_batch"

    def encode(self) -> bytes:
        return encode_args(
            {"items": [[codec.encode(lease), codec.encode(v)] for lease, v in self.items]}
        )

    @classmethod
    def decode(cls, raw: bytes) -> ClaimBatch:
        items = decode_args(cls.kind, raw)["items"]
        return cls(
            tuple(
                (codec.decode_as(lease, Lease), codec.decode_as(v, Signed[Voucher]))
                for lease, v in items
            )
        )

    def still_needed(self, view: ChainView) -> ClaimBatch | Obsolete:
        due = []
        states = view.lease_states([lease.id for lease, _ in self.items])
        for lease, voucher in self.items:
            state = states[lease.id]
            if is_live(state) and state.paid < min(voucher.message.cumulative_amount, lease.escrow):
                due.append((lease, voucher))
        if not due:
            return Obsolete("every voucher in the batch is paid, or its lease is closed")
        return ClaimBatch(tuple(due))

    def call(self) -> Call:
        return Call(
            "claimBatch",
            (
                [
                    (
                        lease.as_tuple(),
                        v.message.cumulative_amount,
                        v.message.receipt_hash,
                        v.signature,
                    )
                    for lease, v in self.items
                ],
            ),
        )

    def result(self, events: Sequence[ChainEvent]) -> dict[str, int]:
        paid = {"0x" + bytes(e.args["lease_id"]).hex(): int(e.args["amount"])
                for e in events if e.name == "Claimed"}  # fmt: skip
        skipped = sum(1 for e in events if e.name == "ClaimSkipped")
        return {"total": sum(paid.values()), "skipped": skipped, **paid}


@dataclass(frozen=True, slots=True)
class CloseLease:
    """Close a lease, crediting its unpaid escrow back to the lab."""

    lease: Lease
    kind: ClassVar[str] = "close_lease"

    def encode(self) -> bytes:
        return encode_args({"lease": codec.encode(self.lease)})

    @classmethod
    def decode(cls, raw: bytes) -> CloseLease:
        return cls(codec.decode_as(decode_args(cls.kind, raw)["lease"], Lease))

    def still_needed(self, view: ChainView) -> CloseLease | Obsolete:
        state = view.lease_state(self.lease.id)
        if not is_live(state):
            return Obsolete(f"lease is {state.status.name.lower()}")
        return self

    def call(self) -> Call:
        return Call("closeLease", (self.lease.as_tuple(),))

    def result(self, events: Sequence[ChainEvent]) -> dict[str, int]:
        return {"refund": sum_of(events, "LeaseClosed", "refund")}


@dataclass(frozen=True, slots=True)
class CloseLeaseBatch:
    """Close many leases in one ``closeLeaseBatch``, crediting each one's unpaid escrow back to
    its lab; the contract skips a lease that cannot close (``CloseSkipped``), not fatal."""

    leases: tuple[Lease, ...]
    kind: ClassVar[str] = "close_lease_batch"

    def encode(self) -> bytes:
        return encode_args({"leases": [codec.encode(lease) for lease in self.leases]})

    @classmethod
    def decode(cls, raw: bytes) -> CloseLeaseBatch:
        leases = decode_args(cls.kind, raw)["leases"]
        return cls(tuple(codec.decode_as(lease, Lease) for lease in leases))

    def still_needed(self, view: ChainView) -> CloseLeaseBatch | Obsolete:
        states = view.lease_states([lease.id for lease in self.leases])
        live = tuple(lease for lease in self.leases if is_live(states[lease.id]))
        if not live:
            return Obsolete("every lease in the batch is closed")
        return CloseLeaseBatch(live)

    def call(self) -> Call:
        return Call("closeLeaseBatch", ([lease.as_tuple() for lease in self.leases],))

    def result(self, events: Sequence[ChainEvent]) -> dict[str, int]:
        refunds = {"0x" + bytes(e.args["lease_id"]).hex(): int(e.args["refund"])
                   for e in events if e.name == "LeaseClosed"}  # fmt: skip
        skipped = sum(1 for e in events if e.name == "CloseSkipped")
        return {"refund": sum(refunds.values()), "skipped": skipped, **refunds}


@dataclass(frozen=True, slots=True)
class Withdraw:
    """Take the account's whole credit out of the market."""

    kind: ClassVar[str] = "withdraw"

    def encode(self) -> bytes:
        return encode_args({})

    @classmethod
    def decode(cls, raw: bytes) -> Withdraw:
        decode_args(cls.kind, raw)
        return cls()

    def still_needed(self, view: ChainView) -> Withdraw | Obsolete:
        if view.withdrawable(view.account) == 0:
            return Obsolete("nothing to withdraw")
        return self

    def call(self) -> Call:
        return Call("withdraw", ())

    def result(self, events: Sequence[ChainEvent]) -> dict[str, int]:
        return {"amount": sum_of(events, "Withdrawn", "amount")}


__all__ = [
    "Action",
    "Call",
    "ChainView",
    "ClaimBatch",
    "CloseLease",
    "CloseLeaseBatch",
    "Obsolete",
    "decode_args",
    "sum_of",
    "encode_args",
    "is_live",
    "PostedClaim",
    "Withdraw",
]
