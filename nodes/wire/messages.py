"""The closed set of daemon messages, each declared once as a msgspec ``Struct``.

A message's class is its wire form: camelCase keys (``rename="camel"``), unknown keys refused
(``forbid_unknown_fields``), bounds as ``Meta`` (lengths, ranges, the GPU model's pattern), frozen
values. The same class encodes to msgpack (what daemons send) and to JSON (what a person or a
browser reads), see ``frames.py``.

Orders travel as :class:`~market.matching.Submission`, the signed order alone: every term a lab
may require of an offer is a signed field the contract checks, so nothing travels beside an order
and a relay stores no term it cannot check. Explanations travel as
:class:`~market.matching.Explanation`: fields hold the library's own objects, and how each of
those travels (a codec frame in a bin, an address as 20 bytes, a uint256 as 32) is declared once
in ``values.py``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar, Final, TypeAlias

import msgspec
from msgspec import Meta

from market.errors import InvalidField
from market.matching import ReasonCode
from nodes.wire.values import (
    Address,
    ExplanationMap,
    LabRecordMap,
    LeaseBin,
    Number,
    OrderBin,
    ReputationMap,
    SignedBidBin,
    SignedReceiptBin,
    SignedVoucherBin,
    SubmissionMap,
    UInt256,
    Value,
)

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
MAX_TEXT: Final = 4096
"""Characters of a free-text field (a refusal's message, a job's error) at most."""
ZERO32: Final = bytes(32)
ZERO_ADDRESS: Final = "0x" + "00" * 20
"""The reputation cursor before every provider (no provider has this address)."""

Hash = Annotated[bytes, Meta(min_length=32, max_length=32)]
"""A 32-byte hash or id (an order hash, a lease id, a seed, a Merkle root)."""
UInt8 = Annotated[int, Meta(ge=0, le=2**8 - 1)]
UInt32 = Annotated[int, Meta(ge=0, le=2**32 - 1)]
UInt64 = Annotated[int, Meta(ge=0)]
"""Up to 2^64 - 1, msgpack's (and msgspec's) largest int: values from 2^63 decode whole, never
wrapped; msgspec takes no bound past int64, and no larger int decodes."""
Text = Annotated[str, Meta(max_length=MAX_TEXT)]
Name = Annotated[str, Meta(max_length=64)]
GpuModel = Annotated[str, Meta(min_length=1, max_length=32, pattern=r"^[\x20-\x7e]+\Z")]
"""A GPU model name: 1 to 32 printable ASCII characters, as the protocol's types require."""
Details = Annotated[dict[Name, Number], Meta(max_length=64)]
"""The numbers behind a result or a refusal, by name."""
Sealed = Annotated[bytes, Meta(max_length=MAX_SEALED)]


class Struct(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    """The common configuration of every message and of the values inside them."""


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


class SubmitOrders(Struct, frozen=True):
    orders: Annotated[tuple[SubmissionMap, ...], Meta(max_length=MAX_ORDERS)]
    TYPE_NAME: ClassVar[str] = "SubmitOrders"


class OrderResult(Struct, frozen=True):
    order_hash: Hash
    status: OrderStatus
    message: Text = ""
    details: Details = {}

    @property
    def accepted(self) -> bool:
        return self.status is OrderStatus.ACCEPTED


class OrdersAccepted(Struct, frozen=True):
    """One result per submitted order, in the request's order."""

    results: Annotated[tuple[OrderResult, ...], Meta(max_length=MAX_ORDERS)]
    TYPE_NAME: ClassVar[str] = "OrdersAccepted"


class BookQuery(Struct, frozen=True):
    model: GpuModel
    depth: UInt32
    TYPE_NAME: ClassVar[str] = "BookQuery"


class BookEntry(Struct, frozen=True):
    order: SubmissionMap
    remaining: UInt32


class BookSnapshot(Struct, frozen=True):
    """Resting orders of one model with GPUs left, best first, as of ``chain_time``."""

    model: GpuModel
    chain_time: UInt64
    offers: Annotated[tuple[BookEntry, ...], Meta(max_length=MAX_ORDERS)]
    bids: Annotated[tuple[BookEntry, ...], Meta(max_length=MAX_ORDERS)]
    TYPE_NAME: ClassVar[str] = "BookSnapshot"


class ExplainRequest(Struct, frozen=True):
    """Explain ``order`` (signed or not; a dry run need not be in the book): its own fields are
    all the terms it is matched on."""

    order: OrderBin
    TYPE_NAME: ClassVar[str] = "ExplainRequest"


class ExplainResponse(Struct, frozen=True):
    explanation: ExplanationMap
    TYPE_NAME: ClassVar[str] = "ExplainResponse"


class Fill(Struct, frozen=True):
    """A pair the relay's matcher took: pending, then opened (``lease_id``) or failed."""

    offer_hash: Hash
    bid_hash: Hash
    gpus: UInt32
    status: FillStatus
    lease_id: Hash = ZERO32
    error: Text = ""
    TYPE_NAME: ClassVar[str] = "Fill"


class LeaseOpened(Struct, frozen=True):
    """A lease the chain opened (by any matcher)."""

    lease_id: Hash
    offer_hash: Hash
    bid_hash: Hash
    lease: LeaseBin
    block_number: UInt64
    TYPE_NAME: ClassVar[str] = "LeaseOpened"


class BookChange(Struct, frozen=True):
    """An order's GPUs left changed; ``remaining`` 0 means it left the book."""

    order_hash: Hash
    model: GpuModel
    side: Side
    remaining: UInt32
    TYPE_NAME: ClassVar[str] = "BookChange"


class Gossip(Struct, frozen=True):
    """Orders a relay accepted, sent on to a peer. ``origin`` is the relay that first accepted
    them, ``sender`` the one sending now; ``hops`` counts relays passed (bounded)."""

    origin: Name
    sender: Name
    hops: UInt8
    orders: Annotated[tuple[SubmissionMap, ...], Meta(max_length=MAX_ORDERS)]
    TYPE_NAME: ClassVar[str] = "Gossip"


class ReputationQuery(Struct, frozen=True):
    """The reputations of ``providers`` (of every provider the relay knows when empty) whose
    address is above ``after``, in address order, at most ``limit`` of them (a relay may cap the
    limit lower), and the dispute records of ``labs`` (none when empty)."""

    providers: Annotated[tuple[Address, ...], Meta(max_length=MAX_REPUTATIONS)] = ()
    after: Address = ZERO_ADDRESS
    limit: UInt32 = MAX_REPUTATIONS
    labs: Annotated[tuple[Address, ...], Meta(max_length=MAX_REPUTATIONS)] = ()
    TYPE_NAME: ClassVar[str] = "ReputationQuery"

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise InvalidField("ReputationQuery", "limit", f"must be at least 1, got {self.limit}")


class ReputationReport(Struct, frozen=True):
    """Reputations computed from the market's events in blocks ``[from_block, to_block]``, in
    address order. ``next_after`` is the ``after`` of the next page, or ZERO_ADDRESS when this
    page ends the list. ``labs``: the dispute records the query named, in address order."""

    from_block: UInt64
    to_block: UInt64
    reputations: Annotated[tuple[ReputationMap, ...], Meta(max_length=MAX_REPUTATIONS)]
    next_after: Address = ZERO_ADDRESS
    labs: Annotated[tuple[LabRecordMap, ...], Meta(max_length=MAX_REPUTATIONS)] = ()
    TYPE_NAME: ClassVar[str] = "ReputationReport"


class JobState(StrEnum):
    """Where a leased job stands on its provider."""

    RUNNING = "running"
    FINISHED = "finished"  # exited 0
    FAILED = "failed"  # exited non-zero, timed out or ran out of memory
    STOPPED = "stopped"  # the provider stopped it: the lease ended or payment stopped


class SubmitJob(Struct, frozen=True):
    """A lab hands its provider the job of a lease (``POST /v1/jobs``).

    ``bid`` is the lab's signed bid that the lease filled: its hash is the lease's ``bidHash`` and
    its ``jobSpecHash`` the keccak256 of the spec's plaintext, so the lab's signature on the bid
    authenticates the job, and a replay of this message can only resubmit the same job.
    ``sealed_spec`` is the spec sealed to the provider's registered X25519 key for this lease.
    """

    lease_id: Hash
    bid: SignedBidBin
    sealed_spec: Sealed
    TYPE_NAME: ClassVar[str] = "SubmitJob"


class JobAccepted(Struct, frozen=True):
    lease_id: Hash
    state: JobState
    TYPE_NAME: ClassVar[str] = "JobAccepted"


class ReceiptsQuery(Struct, frozen=True):
    """The periods of a lease from ``from_seq`` on (receipts count from 0), at most ``limit``
    (``POST /v1/receipts``)."""

    lease_id: Hash
    from_seq: UInt64 = 0
    limit: UInt8 = MAX_PERIODS
    TYPE_NAME: ClassVar[str] = "ReceiptsQuery"


class PeriodReport(Struct, frozen=True):
    """One metering period: the provider's signed receipt, its output chunks (a msgpack array of
    bins) sealed to the lab's key for this lease, and the metrics under its ``metricsHash``.

    A period whose output is streamed has ``output_chunks`` chunks under the receipt's
    ``outputRoot``, fetched apart (:class:`OutputQuery`), and an empty ``sealed_output``; with
    ``output_chunks`` 0 the output is inline."""

    receipt: SignedReceiptBin
    sealed_output: Sealed
    metrics: Annotated[bytes, Meta(max_length=1024)]
    output_chunks: UInt64 = 0


class ReceiptBatch(Struct, frozen=True):
    lease_id: Hash
    periods: Annotated[tuple[PeriodReport, ...], Meta(max_length=MAX_PERIODS)]
    job_state: JobState
    job_error: Text = ""
    TYPE_NAME: ClassVar[str] = "ReceiptBatch"


class OutputQuery(Struct, frozen=True):
    """Chunks ``from_chunk`` on (at most ``max_chunks``) of receipt ``seq``'s streamed output
    (``POST /v1/outputs``)."""

    lease_id: Hash
    seq: UInt64
    from_chunk: UInt64 = 0
    max_chunks: UInt8 = MAX_OUTPUT_CHUNKS
    TYPE_NAME: ClassVar[str] = "OutputQuery"


class OutputChunk(Struct, frozen=True):
    """One output chunk sealed to the lab, bound to its lease, seq and index
    (:func:`market.sealing.chunk_associated_data`), and its Merkle proof under ``outputRoot``."""

    sealed: Annotated[bytes, Meta(max_length=MAX_CHUNK_SEALED)]
    proof: Annotated[tuple[Hash, ...], Meta(max_length=MAX_PROOF)]


class OutputChunks(Struct, frozen=True):
    """Chunks ``from_chunk``, ``from_chunk + 1``, ... of receipt ``seq``'s output, of ``total``."""

    lease_id: Hash
    seq: UInt64
    from_chunk: UInt64
    total: UInt64
    chunks: Annotated[tuple[OutputChunk, ...], Meta(max_length=MAX_OUTPUT_CHUNKS)]
    TYPE_NAME: ClassVar[str] = "OutputChunks"


class SubmitVoucher(Struct, frozen=True):
    """A lab's signed cumulative payment for a lease (``POST /v1/vouchers``)."""

    voucher: SignedVoucherBin
    TYPE_NAME: ClassVar[str] = "SubmitVoucher"


class VoucherAccepted(Struct, frozen=True):
    """``new`` is False for a voucher the provider already held (a replay changes nothing)."""

    lease_id: Hash
    cumulative_amount: UInt256
    new: bool
    TYPE_NAME: ClassVar[str] = "VoucherAccepted"


MAX_CHALLENGE_N: Final = 16_384
"""The largest hardware challenge a provider agent takes (a row is then 64 KiB)."""
MAX_CHALLENGE_ROWS: Final = 64
"""Rows a lab may open of one challenge."""


class ChallengeRequest(Struct, frozen=True):
    """A lab's timed hardware challenge on a lease (``POST /v1/challenge``): multiply the two
    ``n x n`` matrices drawn from ``seed`` (:class:`market.receipts.challenge.Challenge`) on the
    leased GPUs and commit to the product's rows. ``signature`` is the lease's voucher key's over
    :func:`market.receipts.challenge.request_digest`, so only the lease's lab can ask."""

    lease_id: Hash
    seed: Hash
    n: UInt32
    signature: Annotated[bytes, Meta(min_length=65, max_length=65)]
    TYPE_NAME: ClassVar[str] = "ChallengeRequest"


class ChallengeCommitment(Struct, frozen=True):
    """The provider's answer: the Merkle root of the product's rows, and what computed it."""

    lease_id: Hash
    seed: Hash
    root: Hash
    backend: Name
    TYPE_NAME: ClassVar[str] = "ChallengeCommitment"


class ChallengeOpen(Struct, frozen=True):
    """The rows of a committed product the lab wants opened (``POST /v1/challenge/open``),
    drawn only once the root is known."""

    lease_id: Hash
    seed: Hash
    rows: Annotated[tuple[UInt32, ...], Meta(max_length=MAX_CHALLENGE_ROWS)]
    TYPE_NAME: ClassVar[str] = "ChallengeOpen"


class ChallengeRow(Struct, frozen=True):
    """One opened row: its index, its entries as int32 little-endian, its Merkle proof."""

    index: UInt32
    data: Annotated[bytes, Meta(max_length=4 * MAX_CHALLENGE_N)]
    proof: Annotated[tuple[Hash, ...], Meta(max_length=32)]


class ChallengeRows(Struct, frozen=True):
    lease_id: Hash
    seed: Hash
    rows: Annotated[tuple[ChallengeRow, ...], Meta(max_length=MAX_CHALLENGE_ROWS)]
    TYPE_NAME: ClassVar[str] = "ChallengeRows"


MAX_ERROR_MESSAGE = MAX_TEXT
"""Characters of an ErrorResponse's message at most (its field's limit)."""
MAX_ERROR_DETAIL = 512
"""Characters of one str detail of an ErrorResponse at most."""
MAX_ERROR_DETAILS = 64
"""Details of an ErrorResponse at most (its field's limit)."""


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ErrorResponse(Struct, frozen=True):
    """A refusal. Whatever a request carried, the refusal fits its own schema: a message longer
    than ``MAX_ERROR_MESSAGE`` characters or a str detail longer than ``MAX_ERROR_DETAIL`` (a
    quoted type name or version, say) is cut, ending in "…", so every refusal decodes."""

    code: ErrorCode
    message: Text
    details: Details = {}
    TYPE_NAME: ClassVar[str] = "ErrorResponse"

    def __post_init__(self) -> None:
        msgspec.structs.force_setattr(self, "message", _clip(self.message, MAX_ERROR_MESSAGE))
        details = {
            _clip(key, 64): _clip(value, MAX_ERROR_DETAIL) if isinstance(value, str) else value
            for key, value in list(self.details.items())[:MAX_ERROR_DETAILS]
        }
        msgspec.structs.force_setattr(self, "details", details)


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
    "MAX_TEXT",
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
    "GpuModel",
    "Hash",
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
    "Struct",
    "SubmitJob",
    "SubmitOrders",
    "SubmitVoucher",
    "Value",
    "VoucherAccepted",
]
