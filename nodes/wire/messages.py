"""The closed set of daemon messages.

Orders travel as :class:`~market.matching.Submission`, the signed order alone: every term a lab
may require of an offer is a signed field the contract checks, so nothing travels beside an order
and a relay stores no term it cannot check. Explanations travel as
:class:`~market.matching.Explanation`: the wire reuses the library's types rather than mirroring
them. How each travels is in ``schemas.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar, Final, TypeAlias

from market.errors import InvalidField
from market.matching import Explanation, ReasonCode, Submission
from market.protocol.types import Bid, Lease, Offer, Receipt, Signed, Voucher
from market.reputation import LabRecord, Reputation

MAX_ORDERS: Final = 10_000
"""The most orders (or results, or book entries) one message can carry; daemons set lower limits."""
MAX_REPUTATIONS: Final = 10_000
"""The most providers one reputation query or report can name; daemons set lower limits."""
MAX_SEALED: Final = 4 * 1024 * 1024
"""The largest sealed payload (a job spec, one period's output) a message can carry."""
MAX_PERIODS: Final = 64
"""The most metering periods one ReceiptBatch carries; the lab asks again for the rest."""
MAX_OUTPUT_CHUNKS: Final = 16
"""The most output chunks one OutputChunks answer carries; providers send fewer to stay under
the frame limit (the lab asks again from where the answer stopped)."""
MAX_CHUNK_SEALED: Final = 2 * 1024 * 1024
"""The largest sealed output chunk a message can carry."""
MAX_PROOF: Final = 64
"""The most sibling hashes in a chunk's Merkle proof (a tree of up to 2^64 chunks)."""
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
    LAB_UNFUNDED = "lab_unfunded"
    SIGNER_AT_CAPACITY = "signer_at_capacity"
    BOOK_FULL = "book_full"


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
    UNKNOWN_LEASE = "unknown_lease"
    INVALID_SIGNATURE = "invalid_signature"
    JOB_REFUSED = "job_refused"
    JOB_EXISTS = "job_exists"
    CHALLENGE_REFUSED = "challenge_refused"
    LEASE_ENDED = "lease_ended"
    UNKNOWN_PERIOD = "unknown_period"


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
    """Explain ``order`` (signed or not; a dry run need not be in the book): its own fields are
    all the terms it is matched on."""

    order: Offer | Bid
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
    limit lower), and the dispute records of ``labs`` (none when empty)."""

    providers: tuple[str, ...] = ()
    after: str = ZERO_ADDRESS
    limit: int = MAX_REPUTATIONS
    labs: tuple[str, ...] = ()
    TYPE_NAME: ClassVar[str] = "ReputationQuery"

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise InvalidField("ReputationQuery", "limit", f"must be at least 1, got {self.limit}")


@dataclass(frozen=True, slots=True)
class ReputationReport:
    """Reputations computed from the market's events in blocks ``[from_block, to_block]``, in
    address order. ``next_after`` is the ``after`` of the next page, or ZERO_ADDRESS when this
    page ends the list. ``labs``: the dispute records the query named, in address order."""

    from_block: int
    to_block: int
    reputations: tuple[Reputation, ...]
    next_after: str = ZERO_ADDRESS
    labs: tuple[LabRecord, ...] = ()
    TYPE_NAME: ClassVar[str] = "ReputationReport"


class JobState(StrEnum):
    """Where a leased job stands on its provider."""

    RUNNING = "running"
    FINISHED = "finished"  # exited 0
    FAILED = "failed"  # exited non-zero, timed out or ran out of memory
    STOPPED = "stopped"  # the provider stopped it: the lease ended or payment stopped


@dataclass(frozen=True, slots=True)
class SubmitJob:
    """A lab hands its provider the job of a lease (``POST /v1/jobs``).

    ``bid`` is the lab's signed bid that the lease filled: its hash is the lease's ``bidHash`` and
    its ``jobSpecHash`` the keccak256 of the spec's plaintext, so the lab's signature on the bid
    authenticates the job, and a replay of this message can only resubmit the same job.
    ``sealed_spec`` is the spec sealed to the provider's registered X25519 key for this lease.
    """

    lease_id: bytes
    bid: Signed[Bid]
    sealed_spec: bytes
    TYPE_NAME: ClassVar[str] = "SubmitJob"


@dataclass(frozen=True, slots=True)
class JobAccepted:
    lease_id: bytes
    state: JobState
    TYPE_NAME: ClassVar[str] = "JobAccepted"


@dataclass(frozen=True, slots=True)
class ReceiptsQuery:
    """The periods of a lease from ``from_seq`` on (receipts count from 0), at most ``limit``
    (``POST /v1/receipts``)."""

    lease_id: bytes
    from_seq: int = 0
    limit: int = MAX_PERIODS
    TYPE_NAME: ClassVar[str] = "ReceiptsQuery"


@dataclass(frozen=True, slots=True)
class PeriodReport:
    """One metering period: the provider's signed receipt, its output chunks (a msgpack array of
    bins) sealed to the lab's key for this lease, and the metrics under its ``metricsHash``.

    A period whose output is streamed has ``output_chunks`` chunks under the receipt's
    ``outputRoot``, fetched apart (:class:`OutputQuery`), and an empty ``sealed_output``; with
    ``output_chunks`` 0 the output is inline."""

    receipt: Signed[Receipt]
    sealed_output: bytes
    metrics: bytes
    output_chunks: int = 0


@dataclass(frozen=True, slots=True)
class ReceiptBatch:
    lease_id: bytes
    periods: tuple[PeriodReport, ...]
    job_state: JobState
    job_error: str = ""
    TYPE_NAME: ClassVar[str] = "ReceiptBatch"


@dataclass(frozen=True, slots=True)
class OutputQuery:
    """Chunks ``from_chunk`` on (at most ``max_chunks``) of receipt ``seq``'s streamed output
    (``POST /v1/outputs``)."""

    lease_id: bytes
    seq: int
    from_chunk: int = 0
    max_chunks: int = MAX_OUTPUT_CHUNKS
    TYPE_NAME: ClassVar[str] = "OutputQuery"


@dataclass(frozen=True, slots=True)
class OutputChunk:
    """One output chunk sealed to the lab, bound to its lease, seq and index
    (:func:`market.sealing.chunk_associated_data`), and its Merkle proof under ``outputRoot``."""

    sealed: bytes
    proof: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class OutputChunks:
    """Chunks ``from_chunk``, ``from_chunk + 1``, ... of receipt ``seq``'s output, of ``total``."""

    lease_id: bytes
    seq: int
    from_chunk: int
    total: int
    chunks: tuple[OutputChunk, ...]
    TYPE_NAME: ClassVar[str] = "OutputChunks"


@dataclass(frozen=True, slots=True)
class SubmitVoucher:
    """A lab's signed cumulative payment for a lease (``POST /v1/vouchers``)."""

    voucher: Signed[Voucher]
    TYPE_NAME: ClassVar[str] = "SubmitVoucher"


@dataclass(frozen=True, slots=True)
class VoucherAccepted:
    """``new`` is False for a voucher the provider already held (a replay changes nothing)."""

    lease_id: bytes
    cumulative_amount: int
    new: bool
    TYPE_NAME: ClassVar[str] = "VoucherAccepted"


MAX_CHALLENGE_N: Final = 16_384
"""The largest hardware challenge a provider agent takes (a row is then 64 KiB)."""
MAX_CHALLENGE_ROWS: Final = 64
"""Rows a lab may open of one challenge."""


@dataclass(frozen=True, slots=True)
class ChallengeRequest:
    """A lab's timed hardware challenge on a lease (``POST /v1/challenge``): multiply the two
    ``n x n`` matrices drawn from ``seed`` (:class:`market.receipts.challenge.Challenge`) on the
    leased GPUs and commit to the product's rows. ``signature`` is the lease's voucher key's over
    :func:`market.receipts.challenge.request_digest`, so only the lease's lab can ask."""

    lease_id: bytes
    seed: bytes
    n: int
    signature: bytes
    TYPE_NAME: ClassVar[str] = "ChallengeRequest"


@dataclass(frozen=True, slots=True)
class ChallengeCommitment:
    """The provider's answer: the Merkle root of the product's rows, and what computed it."""

    lease_id: bytes
    seed: bytes
    root: bytes
    backend: str
    TYPE_NAME: ClassVar[str] = "ChallengeCommitment"


@dataclass(frozen=True, slots=True)
class ChallengeOpen:
    """The rows of a committed product the lab wants opened (``POST /v1/challenge/open``),
    drawn only once the root is known."""

    lease_id: bytes
    seed: bytes
    rows: tuple[int, ...]
    TYPE_NAME: ClassVar[str] = "ChallengeOpen"


@dataclass(frozen=True, slots=True)
class ChallengeRow:
    """One opened row: its index, its entries as int32 little-endian, its Merkle proof."""

    index: int
    data: bytes
    proof: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class ChallengeRows:
    lease_id: bytes
    seed: bytes
    rows: tuple[ChallengeRow, ...]
    TYPE_NAME: ClassVar[str] = "ChallengeRows"


MAX_ERROR_MESSAGE = 4096
"""Characters of an ErrorResponse's message at most (its schema's limit)."""
MAX_ERROR_DETAIL = 512
"""Characters of one str detail of an ErrorResponse at most."""
MAX_ERROR_DETAILS = 64
"""Details of an ErrorResponse at most (its schema's limit)."""


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """A refusal. Whatever a request carried, the refusal fits its own schema: a message longer
    than ``MAX_ERROR_MESSAGE`` characters or a str detail longer than ``MAX_ERROR_DETAIL`` (a
    quoted type name or version, say) is cut, ending in "…", so every refusal decodes."""

    code: ErrorCode
    message: str
    details: Mapping[str, Value] = field(default_factory=dict)
    TYPE_NAME: ClassVar[str] = "ErrorResponse"

    def __post_init__(self) -> None:
        object.__setattr__(self, "message", _clip(self.message, MAX_ERROR_MESSAGE))
        details = {
            _clip(key, 64): _clip(value, MAX_ERROR_DETAIL) if isinstance(value, str) else value
            for key, value in list(self.details.items())[:MAX_ERROR_DETAILS]
        }
        object.__setattr__(self, "details", details)


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
    | SubmitJob
    | JobAccepted
    | ReceiptsQuery
    | ReceiptBatch
    | OutputQuery
    | OutputChunks
    | SubmitVoucher
    | VoucherAccepted
    | ChallengeRequest
    | ChallengeCommitment
    | ChallengeOpen
    | ChallengeRows
    | ErrorResponse
)


__all__ = [
    "MAX_CHALLENGE_N",
    "MAX_CHALLENGE_ROWS",
    "MAX_CHUNK_SEALED",
    "MAX_ORDERS",
    "MAX_OUTPUT_CHUNKS",
    "MAX_PERIODS",
    "MAX_PROOF",
    "MAX_REPUTATIONS",
    "MAX_SEALED",
    "ZERO_ADDRESS",
    "BookChange",
    "BookEntry",
    "BookQuery",
    "BookSnapshot",
    "ChallengeCommitment",
    "ChallengeOpen",
    "ChallengeRequest",
    "ChallengeRow",
    "ChallengeRows",
    "ErrorCode",
    "ErrorResponse",
    "ExplainRequest",
    "ExplainResponse",
    "Fill",
    "FillStatus",
    "Gossip",
    "JobAccepted",
    "JobState",
    "LeaseOpened",
    "Message",
    "OrderResult",
    "OrderStatus",
    "OrdersAccepted",
    "OutputChunk",
    "OutputChunks",
    "OutputQuery",
    "PeriodReport",
    "ReceiptBatch",
    "ReceiptsQuery",
    "ReputationQuery",
    "ReputationReport",
    "Side",
    "SubmitJob",
    "SubmitOrders",
    "SubmitVoucher",
    "Value",
    "VoucherAccepted",
]
