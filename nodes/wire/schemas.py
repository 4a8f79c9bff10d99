"""How each daemon message travels: its body's keys, in order, and the kind of each value."""

from __future__ import annotations

from typing import Any

from market.matching import Change, Explanation, Reason, ReasonCode, Submission
from market.protocol import codec
from market.protocol.types import Bid, Lease, Offer, Receipt, Signed, Voucher
from market.reputation import LabRecord, Reputation
from nodes.wire.fields import (
    Address,
    Bin,
    Bool,
    Choice,
    Frame,
    GpuModel,
    Kind,
    ListOf,
    MapOf,
    Nullable,
    Number,
    Struct,
    Text,
    UInt,
    UInt256,
)
from nodes.wire.messages import (
    MAX_CHALLENGE_N,
    MAX_CHALLENGE_ROWS,
    MAX_CHUNK_SEALED,
    MAX_ORDERS,
    MAX_OUTPUT_CHUNKS,
    MAX_PERIODS,
    MAX_PROOF,
    MAX_REPUTATIONS,
    MAX_SEALED,
    BookChange,
    BookEntry,
    BookQuery,
    BookSnapshot,
    ChallengeCommitment,
    ChallengeOpen,
    ChallengeRequest,
    ChallengeRow,
    ChallengeRows,
    ErrorCode,
    ErrorResponse,
    ExplainRequest,
    ExplainResponse,
    Fill,
    FillStatus,
    Gossip,
    JobAccepted,
    JobState,
    LeaseOpened,
    Message,
    OrderResult,
    OrdersAccepted,
    OrderStatus,
    OutputChunk,
    OutputChunks,
    OutputQuery,
    PeriodReport,
    ReceiptBatch,
    ReceiptsQuery,
    ReputationQuery,
    ReputationReport,
    Side,
    SubmitJob,
    SubmitOrders,
    SubmitVoucher,
    VoucherAccepted,
)


def _is_signed_order(obj: object) -> bool:
    return type(obj) is Signed and type(obj.message) in (Offer, Bid)


_HASH = Bin(32)
_COUNT = UInt(32)
_TEXT = Text(4096)
_VALUES = MapOf(Number(), max_len=64)
# An order is its signed frame alone: its terms (hardware, features, billing, all-or-none) are
# signed fields, so a key beside it is refused like any unknown key.
_SUBMISSION = Struct(
    Submission,
    (
        (
            "signed",
            "order",
            Frame("SignedOffer or SignedBid", _is_signed_order, codec.MAX_FRAME_SIZE),
        ),
    ),
)
_BOOK_ENTRY = Struct(
    BookEntry, (("order", "order", _SUBMISSION), ("remaining", "remaining", _COUNT))
)
_EXPLANATION = Struct(
    Explanation,
    (
        ("matchable", "matchable", Bool()),
        ("available_gpus", "availableGpus", UInt(64)),
        (
            "reasons",
            "reasons",
            ListOf(
                Struct(
                    Reason,
                    (
                        ("code", "code", Choice(ReasonCode)),
                        ("message", "message", _TEXT),
                        ("values", "values", _VALUES),
                    ),
                ),
                64,
            ),
        ),
        (
            "changes",
            "changes",
            ListOf(
                Struct(
                    Change,
                    (
                        ("field", "field", Text(64)),
                        ("current", "current", Number()),
                        ("suggested", "suggested", Number()),
                    ),
                ),
                64,
            ),
        ),
    ),
)
_ADDRESS = Address()
_TALLY = UInt(64)
_REPUTATION = Struct(
    Reputation,
    (
        ("provider", "provider", _ADDRESS),
        ("leases_opened", "leasesOpened", _TALLY),
        ("leases_completed", "leasesCompleted", _TALLY),
        ("leases_terminated", "leasesTerminated", _TALLY),
        ("leases_slashed", "leasesSlashed", _TALLY),
        ("leases_unpaid", "leasesUnpaid", _TALLY),
        ("gpu_seconds_delivered", "gpuSecondsDelivered", UInt256()),
        ("tokens_earned", "tokensEarned", UInt256()),
        ("claims_posted", "claimsPosted", _TALLY),
        ("claims_finalized", "claimsFinalized", _TALLY),
        ("claims_disputed", "claimsDisputed", _TALLY),
        ("slashes", "slashes", _TALLY),
        ("stake_slashed", "stakeSlashed", UInt256()),
        ("median_first_claim_s", "medianFirstClaimS", Nullable(UInt(64))),
    ),
)

_LAB_RECORD = Struct(
    LabRecord,
    (
        ("lab", "lab", _ADDRESS),
        ("leases_opened", "leasesOpened", _TALLY),
        ("disputes_opened", "disputesOpened", _TALLY),
        ("disputes_won", "disputesWon", _TALLY),
        ("disputes_lost", "disputesLost", _TALLY),
        ("bonds_lost", "bondsLost", UInt256()),
    ),
)

_SIGNED_BID: Frame[Signed[Bid]] = Frame(
    "SignedBid", lambda o: type(o) is Signed and type(o.message) is Bid, codec.MAX_FRAME_SIZE
)
_SIGNED_RECEIPT: Frame[Signed[Receipt]] = Frame(
    "SignedReceipt",
    lambda o: type(o) is Signed and type(o.message) is Receipt,
    codec.MAX_FRAME_SIZE,
)
_SIGNED_VOUCHER: Frame[Signed[Voucher]] = Frame(
    "SignedVoucher",
    lambda o: type(o) is Signed and type(o.message) is Voucher,
    codec.MAX_FRAME_SIZE,
)
_SEALED = Bin(max_len=MAX_SEALED)
_PERIOD = Struct(
    PeriodReport,
    (
        ("receipt", "receipt", _SIGNED_RECEIPT),
        ("sealed_output", "sealedOutput", _SEALED),
        ("metrics", "metrics", Bin(max_len=1024)),
        ("output_chunks", "outputChunks", UInt(64)),
    ),
)
_OUTPUT_CHUNK = Struct(
    OutputChunk,
    (
        ("sealed", "sealed", Bin(max_len=MAX_CHUNK_SEALED)),
        ("proof", "proof", ListOf(Bin(32), MAX_PROOF)),
    ),
)

_CHALLENGE_ROW = Struct(
    ChallengeRow,
    (
        ("index", "index", UInt(32)),
        ("data", "data", Bin(max_len=4 * MAX_CHALLENGE_N)),
        ("proof", "proof", ListOf(_HASH, 32)),
    ),
)

FieldSpec = tuple[tuple[str, str, Kind[Any]], ...]
_FIELDS: dict[type[Message], FieldSpec] = {
    SubmitOrders: (("orders", "orders", ListOf(_SUBMISSION, MAX_ORDERS)),),
    OrdersAccepted: (
        (
            "results",
            "results",
            ListOf(
                Struct(
                    OrderResult,
                    (
                        ("order_hash", "orderHash", _HASH),
                        ("status", "status", Choice(OrderStatus)),
                        ("message", "message", _TEXT),
                        ("details", "details", _VALUES),
                    ),
                ),
                MAX_ORDERS,
            ),
        ),
    ),
    BookQuery: (("model", "model", GpuModel()), ("depth", "depth", _COUNT)),
    BookSnapshot: (
        ("model", "model", GpuModel()),
        ("chain_time", "chainTime", UInt(64)),
        ("offers", "offers", ListOf(_BOOK_ENTRY, MAX_ORDERS)),
        ("bids", "bids", ListOf(_BOOK_ENTRY, MAX_ORDERS)),
    ),
    ExplainRequest: (
        (
            "order",
            "order",
            Frame("Offer or Bid", lambda o: type(o) in (Offer, Bid), codec.MAX_FRAME_SIZE),
        ),
    ),
    ExplainResponse: (("explanation", "explanation", _EXPLANATION),),
    Fill: (
        ("offer_hash", "offerHash", _HASH),
        ("bid_hash", "bidHash", _HASH),
        ("gpus", "gpus", _COUNT),
        ("status", "status", Choice(FillStatus)),
        ("lease_id", "leaseId", _HASH),
        ("error", "error", _TEXT),
    ),
    LeaseOpened: (
        ("lease_id", "leaseId", _HASH),
        ("offer_hash", "offerHash", _HASH),
        ("bid_hash", "bidHash", _HASH),
        ("lease", "lease", Frame("Lease", lambda o: type(o) is Lease, codec.MAX_FRAME_SIZE)),
        ("block_number", "blockNumber", UInt(64)),
    ),
    BookChange: (
        ("order_hash", "orderHash", _HASH),
        ("model", "model", GpuModel()),
        ("side", "side", Choice(Side)),
        ("remaining", "remaining", _COUNT),
    ),
    Gossip: (
        ("origin", "origin", Text(64)),
        ("sender", "sender", Text(64)),
        ("hops", "hops", UInt(8)),
        ("orders", "orders", ListOf(_SUBMISSION, MAX_ORDERS)),
    ),
    ReputationQuery: (
        ("providers", "providers", ListOf(_ADDRESS, MAX_REPUTATIONS)),
        ("after", "after", _ADDRESS),
        ("limit", "limit", _COUNT),
        ("labs", "labs", ListOf(_ADDRESS, MAX_REPUTATIONS)),
    ),
    ReputationReport: (
        ("from_block", "fromBlock", UInt(64)),
        ("to_block", "toBlock", UInt(64)),
        ("reputations", "reputations", ListOf(_REPUTATION, MAX_REPUTATIONS)),
        ("next_after", "nextAfter", _ADDRESS),
        ("labs", "labs", ListOf(_LAB_RECORD, MAX_REPUTATIONS)),
    ),
    SubmitJob: (
        ("lease_id", "leaseId", _HASH),
        ("bid", "bid", _SIGNED_BID),
        ("sealed_spec", "sealedSpec", _SEALED),
    ),
    JobAccepted: (("lease_id", "leaseId", _HASH), ("state", "state", Choice(JobState))),
    ReceiptsQuery: (
        ("lease_id", "leaseId", _HASH),
        ("from_seq", "fromSeq", UInt(64)),
        ("limit", "limit", UInt(8)),
    ),
    ReceiptBatch: (
        ("lease_id", "leaseId", _HASH),
        ("periods", "periods", ListOf(_PERIOD, MAX_PERIODS)),
        ("job_state", "jobState", Choice(JobState)),
        ("job_error", "jobError", _TEXT),
    ),
    OutputQuery: (
        ("lease_id", "leaseId", _HASH),
        ("seq", "seq", UInt(64)),
        ("from_chunk", "fromChunk", UInt(64)),
        ("max_chunks", "maxChunks", UInt(8)),
    ),
    OutputChunks: (
        ("lease_id", "leaseId", _HASH),
        ("seq", "seq", UInt(64)),
        ("from_chunk", "fromChunk", UInt(64)),
        ("total", "total", UInt(64)),
        ("chunks", "chunks", ListOf(_OUTPUT_CHUNK, MAX_OUTPUT_CHUNKS)),
    ),
    SubmitVoucher: (("voucher", "voucher", _SIGNED_VOUCHER),),
    VoucherAccepted: (
        ("lease_id", "leaseId", _HASH),
        ("cumulative_amount", "cumulativeAmount", UInt256()),
        ("new", "new", Bool()),
    ),
    ChallengeRequest: (
        ("lease_id", "leaseId", _HASH),
        ("seed", "seed", _HASH),
        ("n", "n", UInt(32)),
        ("signature", "signature", Bin(65)),
    ),
    ChallengeCommitment: (
        ("lease_id", "leaseId", _HASH),
        ("seed", "seed", _HASH),
        ("root", "root", _HASH),
        ("backend", "backend", Text(64)),
    ),
    ChallengeOpen: (
        ("lease_id", "leaseId", _HASH),
        ("seed", "seed", _HASH),
        ("rows", "rows", ListOf(UInt(32), MAX_CHALLENGE_ROWS)),
    ),
    ChallengeRows: (
        ("lease_id", "leaseId", _HASH),
        ("seed", "seed", _HASH),
        ("rows", "rows", ListOf(_CHALLENGE_ROW, MAX_CHALLENGE_ROWS)),
    ),
    ErrorResponse: (
        ("code", "code", Choice(ErrorCode)),
        ("message", "message", _TEXT),
        ("details", "details", _VALUES),
    ),
}
SCHEMAS: dict[str, Struct[Any]] = {
    cls.TYPE_NAME: Struct(cls, spec) for cls, spec in _FIELDS.items()
}
"""The body schema of each message type, by its wire ``type``: the closed set."""

__all__ = ["SCHEMAS"]
