"""The optimistic claim, for when a lab stops signing vouchers: post the latest receipt, then
collect it once the challenge window has passed unless the lab disputes it.

The actions call ``postReceipt``, ``finalizeClaim`` and read ``pendingClaim`` (see
``contracts/src/interfaces/IMarket.sol`` and ``docs/decisions/0006-slashing.md``). A finalize sent
inside the challenge window is refused by the chain (``MarketChallengeWindowOpen``) and its
intent fails; send it from ``ready_at``. Against a market deployed without these functions the
intent fails once with :class:`~nodes.errors.ActionUnsupported` and stays closed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from market.chain.events import ChainEvent
from market.protocol import codec
from market.protocol.types import Lease, Receipt, Signed
from nodes.state.actions import (
    Call,
    ChainView,
    Obsolete,
    decode_args,
    encode_args,
    is_live,
    sum_of,
)


@dataclass(frozen=True, slots=True)
class PostReceipt:
    """Claim from the latest receipt when the lab signs no voucher (the optimistic path)."""

    lease: Lease
    receipt: Signed[Receipt]
    kind: ClassVar[str] = "post_receipt"

    def encode(self) -> bytes:
        return encode_args(
            {"lease": codec.encode(self.lease), "receipt": codec.encode(self.receipt)}
        )

    @classmethod
    def decode(cls, raw: bytes) -> PostReceipt:
        body = decode_args(cls.kind, raw)
        return cls(
            codec.decode_as(body["lease"], Lease),
            codec.decode_as(body["receipt"], Signed[Receipt]),
        )

    def still_needed(self, view: ChainView) -> PostReceipt | Obsolete:
        state = view.lease_state(self.lease.id)
        if not is_live(state):
            return Obsolete(f"lease is {state.status.name.lower()}")
        r = self.receipt.message
        claim = view.posted_claim(self.lease.id)
        if claim.posted and r.seq <= claim.seq:
            return Obsolete(
                f"receipt {claim.seq} is posted already, and receipt {r.seq} is not newer"
            )
        owed = min(self.lease.price_per_gpu_second * r.gpu_seconds_cumulative, self.lease.escrow)
        if owed <= state.paid:
            return Obsolete(f"vouchers already paid {state.paid}, the receipt is worth {owed}")
        if claim.disputed:
            return Obsolete("the posted claim is disputed: no receipt may be posted until settled")
        if owed <= claim.amount:  # the market takes only a claim that raises the amount
            return Obsolete(f"a claim of {claim.amount} was posted, the receipt is worth {owed}")
        return self

    def call(self) -> Call:
        r = self.receipt.message
        fields = tuple(getattr(r, attr) for attr, _, _ in Receipt.FIELDS)
        return Call("postReceipt", (self.lease.as_tuple(), fields, self.receipt.signature))

    def result(self, events: Sequence[ChainEvent]) -> dict[str, int]:
        posted = [e for e in events if e.name == "ReceiptPosted"]
        if not posted:
            return {}
        return {
            "amount": int(posted[0].args["amount"]),
            "ready_at": int(posted[0].args["ready_at"]),
        }


@dataclass(frozen=True, slots=True)
class FinalizeClaim:
    """Collect a posted claim once its challenge window has passed, or a disputed one once its
    ruling deadline has passed (with the lab's bond); a close keeps a disputed amount in escrow,
    so a closed lease's disputed claim is collected too."""

    lease: Lease
    kind: ClassVar[str] = "finalize_claim"

    def encode(self) -> bytes:
        return encode_args({"lease": codec.encode(self.lease)})

    @classmethod
    def decode(cls, raw: bytes) -> FinalizeClaim:
        return cls(codec.decode_as(decode_args(cls.kind, raw)["lease"], Lease))

    def still_needed(self, view: ChainView) -> FinalizeClaim | Obsolete:
        state = view.lease_state(self.lease.id)
        if not is_live(state) and not state.disputed:
            return Obsolete(f"lease is {state.status.name.lower()}")
        if not view.posted_claim(self.lease.id).pending:
            return Obsolete("no claim is pending (finalized, disputed or never posted)")
        return self

    def call(self) -> Call:
        return Call("finalizeClaim", (self.lease.as_tuple(),))

    def result(self, events: Sequence[ChainEvent]) -> dict[str, int]:
        return {
            "amount": sum_of(events, "ClaimFinalized", "amount"),
            "bond": sum_of(events, "ClaimFinalized", "bond"),
        }


__all__ = ["FinalizeClaim", "PostReceipt"]
