"""The closed set of daemon messages.

Orders travel as :class:`~market.matching.Submission` (a signed order with the attributes document
or requirements beside it), explanations as :class:`~market.matching.Explanation`: the wire reuses
the library's types rather than mirroring them. How each travels is in ``schemas.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar, Final, TypeAlias

from market.errors import InvalidField
from market.matching import (
    NO_REQUIREMENTS,
    Explanation,
    ReasonCode,
    Requirements,
    Submission,
)
from market.protocol.types import Bid, Lease, Offer
from market.reputation import Reputation

MAX_ORDERS: Final = 10_000
"""The most orders (or results, or book entries) one message can carry; daemons set lower limits."""
MAX_REPUTATIONS: Final = 10_000
"""The most providers one reputation query or report can name; daemons set lower limits."""
Value = int | str
ZERO32: Final = bytes(32)
ZERO_ADDRESS: Final = "0x" + "00" * 20
"""The reputation cursor before every provider (no provider has this address)."""


class OrderStatus(StrEnum):
    """What became of one submitted order. Codes shared with explain() mean the same thing."""

    ACCEPTED = "accepted"
    INVALID_SIGNATURE = "invalid_signature"
    INVALID_FIELD = "invalid_field"
    ORDER_EXPIRED = ReasonCode.ORDER_EXPIRED.value
    ORDER_CANCELLED = ReasonCode.ORDER_CANCELLED.value
    NONCE_CANCELLED = ReasonCode.NONCE_CANCELLED.value
    ORDER_FILLED = ReasonCode.ORDER_FILLED.value
    DUPLICATE_ORDER = "duplicate_order"
    PROVIDER_NOT_ELIGIBLE = ReasonCode.PROVIDER_NOT_ELIGIBLE.value


class ErrorCode(StrEnum):
    """Why a whole request was refused; nothing changed."""

    MALFORMED_FRAME = "malformed_frame"
    UNKNOWN_TYPE = "unknown_type"
    INVALID_FIELD = "invalid_field"
    WRONG_TYPE = "wrong_type"
    FRAME_TOO_LARGE = "frame_too_large"
    TOO_MANY_ORDERS = "too_many_orders"
    RATE_LIMITED = "rate_limited"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    CHAIN_UNAVAILABLE = "chain_unavailable"
    SHUTTING_DOWN = "shutting_down"
    INTERNAL = "internal"


class FillStatus(StrEnum):
    PENDING = "pending"
    OPENED = "opened"
    FAILED = "failed"


class Side(StrEnum):
    OFFER = "offer"
    BID = "bid"


@dataclass(frozen=True, slots=True)
class SubmitOrders:
    orders: tuple[Submission, ...]
    TYPE_NAME: ClassVar[str] = "SubmitOrders"


@dataclass(frozen=True, slots=True)
class OrderResult:
    order_hash: bytes
    status: OrderStatus
    message: str = ""
    details: Mapping[str, Value] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return self.status is OrderStatus.ACCEPTED


@dataclass(frozen=True, slots=True)
class OrdersAccepted:
    """One result per submitted order, in the request's order."""

    results: tuple[OrderResult, ...]
    TYPE_NAME: ClassVar[str] = "OrdersAccepted"


@dataclass(frozen=True, slots=True)
class BookQuery:
    model: str
    depth: int
    TYPE_NAME: ClassVar[str] = "BookQuery"


@dataclass(frozen=True, slots=True)
class BookEntry:
    order: Submission
    remaining: int


@dataclass(frozen=True, slots=True)
class BookSnapshot:
    """Resting orders of one model with GPUs left, best first, as of ``chain_time``."""

    model: str
    chain_time: int
    offers: tuple[BookEntry, ...]
    bids: tuple[BookEntry, ...]
    TYPE_NAME: ClassVar[str] = "BookSnapshot"


@dataclass(frozen=True, slots=True)
class ExplainRequest:
    """Explain ``order`` (signed or not; a dry run need not be in the book)."""

    order: Offer | Bid
    attributes: Mapping[str, str | int] = field(default_factory=dict)
    requirements: Requirements = NO_REQUIREMENTS
    TYPE_NAME: ClassVar[str] = "ExplainRequest"


@dataclass(frozen=True, slots=True)
class ExplainResponse:
    explanation: Explanation
    TYPE_NAME: ClassVar[str] = "ExplainResponse"


@dataclass(frozen=True, slots=True)
class Fill:
    """A pair the relay's matcher took: pending, then opened (``lease_id``) or failed."""

    offer_hash: bytes
    bid_hash: bytes
    gpus: int
    status: FillStatus
    lease_id: bytes = ZERO32
    error: str = ""
    TYPE_NAME: ClassVar[str] = "Fill"


@dataclass(frozen=True, slots=True)
class LeaseOpened:
    """A lease the chain opened (by any matcher)."""

    lease_id: bytes
    offer_hash: bytes
    bid_hash: bytes
    lease: Lease
    block_number: int
    TYPE_NAME: ClassVar[str] = "LeaseOpened"


@dataclass(frozen=True, slots=True)
class BookChange:
    """An order's GPUs left changed; ``remaining`` 0 means it left the book."""

    order_hash: bytes
    model: str
    side: Side
    remaining: int
    TYPE_NAME: ClassVar[str] = "BookChange"


@dataclass(frozen=True, slots=True)
class Gossip:
    """Orders a relay accepted, sent on to a peer. ``origin`` is the relay that first accepted
    them, ``sender`` the one sending now; ``hops`` counts relays passed (bounded)."""

    origin: str
    sender: str
    hops: int
    orders: tuple[Submission, ...]
    TYPE_NAME: ClassVar[str] = "Gossip"


@dataclass(frozen=True, slots=True)
class ReputationQuery:
    """The reputations of ``providers`` (of every provider the relay knows when empty) whose
    address is above ``after``, in address order, at most ``limit`` of them (a relay may cap the
    limit lower)."""

    providers: tuple[str, ...] = ()
    after: str = ZERO_ADDRESS
    limit: int = MAX_REPUTATIONS
    TYPE_NAME: ClassVar[str] = "ReputationQuery"

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise InvalidField("ReputationQuery", "limit", f"must be at least 1, got {self.limit}")


@dataclass(frozen=True, slots=True)
class ReputationReport:
    """Reputations computed from the market's events in blocks ``[from_block, to_block]``, in
    address order. ``next_after`` is the ``after`` of the next page, or ZERO_ADDRESS when this
    page ends the list."""

    from_block: int
    to_block: int
    reputations: tuple[Reputation, ...]
    next_after: str = ZERO_ADDRESS
    TYPE_NAME: ClassVar[str] = "ReputationReport"


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    code: ErrorCode
    message: str
    details: Mapping[str, Value] = field(default_factory=dict)
    TYPE_NAME: ClassVar[str] = "ErrorResponse"


Message: TypeAlias = (
    SubmitOrders
    | OrdersAccepted
    | BookQuery
    | BookSnapshot
    | ExplainRequest
    | ExplainResponse
    | Fill
    | LeaseOpened
    | BookChange
    | Gossip
    | ReputationQuery
    | ReputationReport
    | ErrorResponse
)


__all__ = [
    "MAX_ORDERS",
    "MAX_REPUTATIONS",
    "ZERO_ADDRESS",
    "BookChange",
    "BookEntry",
    "BookQuery",
    "BookSnapshot",
    "ErrorCode",
    "ErrorResponse",
    "ExplainRequest",
    "ExplainResponse",
    "Fill",
    "FillStatus",
    "Gossip",
    "LeaseOpened",
    "Message",
    "OrderResult",
    "OrderStatus",
    "OrdersAccepted",
    "ReputationQuery",
    "ReputationReport",
    "Side",
    "SubmitOrders",
    "Value",
]
