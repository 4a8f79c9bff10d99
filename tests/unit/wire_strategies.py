"""Hypothesis strategies for every daemon message, and one fixed sample of each."""

from __future__ import annotations

from typing import Any

from eth_utils.address import to_checksum_address
from hypothesis import strategies as st

from market.matching import (
    Change,
    Constraint,
    Explanation,
    Reason,
    ReasonCode,
    Requirements,
    Submission,
    encode_attributes,
)
from market.protocol.types import (
    ALL_BILLING_MODES,
    UINT32_MAX,
    UINT64_MAX,
    UINT256_MAX,
    ZERO_ADDRESS,
    Bid,
    Billing,
    Lease,
    Offer,
    Receipt,
    Signed,
    Voucher,
)
from market.reputation import LabRecord, Reputation
from nodes.wire import (
    MAX_CHALLENGE_N,
    MAX_CHALLENGE_ROWS,
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
from nodes.wire.values import INT_MIN

ADDRESS = st.binary(min_size=20, max_size=20).map(to_checksum_address)
HASH = st.binary(min_size=32, max_size=32)
U32 = st.integers(0, UINT32_MAX)
U64 = st.integers(0, UINT64_MAX)
U256 = st.integers(0, UINT256_MAX)
MODEL = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=32)
TEXT = st.text(max_size=80)
KEY = st.text(max_size=20)
NUMBER = st.one_of(st.text(max_size=20), st.integers(INT_MIN, UINT256_MAX))
VALUES = st.dictionaries(KEY, NUMBER, max_size=4)
BILLING = st.sampled_from(Billing)
SIGNER = st.one_of(st.just(ZERO_ADDRESS), ADDRESS)  # zero: the order's own key


@st.composite
def offers(draw: st.DrawFn) -> Offer:
    low, high = sorted((draw(U64), draw(U64)))
    return Offer(
        draw(ADDRESS), draw(MODEL), draw(U32), draw(U32), draw(U256), low, high,
        draw(U64), draw(U256), bandwidth_gbps=draw(U32), features=draw(U256),
        billing_modes=draw(st.integers(0, ALL_BILLING_MODES)), receipt_signer=draw(SIGNER),
    )  # fmt: skip


BIDS = st.builds(
    Bid,
    ADDRESS,
    MODEL,
    U32,
    U256,
    U64,
    U64,
    U256,
    HASH,
    min_memory_gib=U32,
    min_bandwidth_gbps=U32,
    required_features=U256,
    accepted_features=U256,
    billing=BILLING,
    all_or_none=st.booleans(),
    voucher_signer=SIGNER,
)
# ECDSA signatures (65 bytes, or 64 in EIP-2098 form) and contract signers' (ERC-1271) of any
# length up to the cap.
SIGNATURE = st.one_of(
    st.binary(min_size=64, max_size=65),
    st.binary(min_size=1, max_size=300),
    st.just(b"\x0c" * Signed.MAX_SIGNATURE_LENGTH),
)
SIGNED = st.one_of(st.builds(Signed, offers(), SIGNATURE), st.builds(Signed, BIDS, SIGNATURE))
SUBMISSION = st.builds(Submission, SIGNED)
LEASE = st.builds(Lease, ADDRESS, ADDRESS, U32, U256, U64, U64, HASH, BILLING, SIGNER, SIGNER)
EXPLANATION = st.builds(
    Explanation,
    st.booleans(),
    U64,
    st.lists(st.builds(Reason, st.sampled_from(ReasonCode), TEXT, VALUES), max_size=3).map(tuple),
    st.lists(st.builds(Change, KEY, NUMBER, NUMBER), max_size=3).map(tuple),
)


@st.composite
def reputations(draw: st.DrawFn, provider: st.SearchStrategy[str] = ADDRESS) -> Reputation:
    """Any figures a Reputation accepts: counts in range, outcomes no more than leases opened."""
    outcomes = [draw(st.integers(0, 2**20)) for _ in range(4)]
    opened = sum(outcomes) + draw(st.integers(0, UINT64_MAX - sum(outcomes)))
    completed, terminated, slashed, unpaid = outcomes
    return Reputation(
        draw(provider), opened, completed, terminated, slashed, unpaid, draw(U256), draw(U256),
        draw(U64), draw(U64), draw(U64), draw(U64), draw(U256), draw(st.none() | U64),
    )  # fmt: skip


@st.composite
def lab_records(draw: st.DrawFn) -> LabRecord:
    """Any figures a LabRecord accepts: won and lost no more than opened."""
    won, lost = draw(st.integers(0, 2**20)), draw(st.integers(0, 2**20))
    opened = won + lost + draw(st.integers(0, 2**20))
    return LabRecord(draw(ADDRESS), draw(U64), opened, won, lost, draw(U256))


REPUTATION_QUERIES = st.builds(
    ReputationQuery,
    st.lists(ADDRESS, max_size=4).map(tuple),
    ADDRESS,
    st.integers(1, UINT32_MAX),
    st.lists(ADDRESS, max_size=4).map(tuple),
)
REPUTATION_REPORTS = st.builds(
    ReputationReport,
    U64,
    U64,
    st.lists(reputations(), max_size=3).map(tuple),
    ADDRESS,
    st.lists(lab_records(), max_size=3).map(tuple),
)

SEALED = st.binary(max_size=200)
METRICS = st.binary(max_size=40)


def _signed(message: Any) -> Signed[Any]:
    return Signed(message, b"\x03" * 65)


SIGNED_RECEIPTS = st.builds(Receipt, HASH, U64, HASH, U64, U64, U64, HASH, HASH, HASH).map(_signed)

MESSAGES: st.SearchStrategy[Message] = st.one_of(
    st.builds(SubmitOrders, st.lists(SUBMISSION, max_size=3).map(tuple)),
    st.builds(
        OrdersAccepted,
        st.lists(
            st.builds(OrderResult, HASH, st.sampled_from(OrderStatus), TEXT, VALUES), max_size=3
        ).map(tuple),
    ),
    st.builds(BookQuery, MODEL, U32),
    st.builds(
        BookSnapshot,
        MODEL,
        U64,
        st.lists(st.builds(BookEntry, SUBMISSION, U32), max_size=2).map(tuple),
        st.lists(st.builds(BookEntry, SUBMISSION, U32), max_size=2).map(tuple),
    ),
    st.builds(ExplainRequest, st.one_of(offers(), BIDS)),
    st.builds(ExplainResponse, EXPLANATION),
    st.builds(Fill, HASH, HASH, U32, st.sampled_from(FillStatus), HASH, TEXT),
    st.builds(LeaseOpened, HASH, HASH, HASH, LEASE, U64),
    st.builds(BookChange, HASH, MODEL, st.sampled_from(Side), U32),
    st.builds(
        Gossip,
        st.text(max_size=64),
        st.text(max_size=64),
        st.integers(0, 255),
        st.lists(SUBMISSION, max_size=3).map(tuple),
    ),
    REPUTATION_QUERIES,
    REPUTATION_REPORTS,
    st.builds(SubmitJob, HASH, BIDS.map(lambda b: Signed(b, b"\x02" * 65)), SEALED),
    st.builds(JobAccepted, HASH, st.sampled_from(JobState)),
    st.builds(ReceiptsQuery, HASH, U64, st.integers(0, 255)),
    st.builds(
        ReceiptBatch,
        HASH,
        st.lists(st.builds(PeriodReport, SIGNED_RECEIPTS, SEALED, METRICS, U64), max_size=2).map(
            tuple
        ),
        st.sampled_from(JobState),
        TEXT,
    ),
    st.builds(OutputQuery, HASH, U64, U64, st.integers(0, 255)),
    st.builds(
        OutputChunks,
        HASH,
        U64,
        U64,
        U64,
        st.lists(
            st.builds(OutputChunk, SEALED, st.lists(HASH, max_size=3).map(tuple)), max_size=2
        ).map(tuple),
    ),
    st.builds(SubmitVoucher, st.builds(Voucher, HASH, U256, HASH).map(_signed)),
    st.builds(VoucherAccepted, HASH, U256, st.booleans()),
    st.builds(
        ChallengeRequest,
        HASH,
        HASH,
        st.integers(1, MAX_CHALLENGE_N),
        st.binary(min_size=65, max_size=65),
    ),
    st.builds(ChallengeCommitment, HASH, HASH, HASH, st.text(max_size=64)),
    st.builds(ChallengeOpen, HASH, HASH, st.lists(U32, max_size=MAX_CHALLENGE_ROWS).map(tuple)),
    st.builds(
        ChallengeRows,
        HASH,
        HASH,
        st.lists(
            st.builds(
                ChallengeRow,
                U32,
                st.binary(max_size=64),
                st.lists(HASH, max_size=4).map(tuple),
            ),
            max_size=3,
        ).map(tuple),
    ),
    st.builds(ErrorResponse, st.sampled_from(ErrorCode), TEXT, VALUES),
)

# --- one fixed sample of each message type -----------------------------------------------------

_A = to_checksum_address("0x" + "11" * 20)
_B = to_checksum_address("0x" + "22" * 20)
OFFER = Offer(
    _A, "H100-80GB", 8, 80, 3, 60, 86_400, 2_000_000, 7,
    bandwidth_gbps=400, features=encode_attributes({"region": "eu-west"}),
)  # fmt: skip
REQS = Requirements(80, (Constraint("region", "in", ("eu-west", "eu-central")),), True)
BID = Bid(_B, "H100-80GB", 4, 5, 3600, 2_000_000, 9, **REQS.bid_fields())
SUB_OFFER = Submission(Signed(OFFER, b"\x01" * 65))
SUB_BID = Submission(Signed(BID, b"\x02" * 65))
SAMPLES: dict[str, Any] = {
    "SubmitOrders": SubmitOrders((SUB_OFFER, SUB_BID)),
    "OrdersAccepted": OrdersAccepted(
        (OrderResult(b"\x03" * 32, OrderStatus.ORDER_EXPIRED, "expired", {"expiry": 5}),)
    ),
    "BookQuery": BookQuery("H100-80GB", 10),
    "BookSnapshot": BookSnapshot("H100-80GB", 1_000, (BookEntry(SUB_OFFER, 8),), ()),
    "ExplainRequest": ExplainRequest(BID),
    "ExplainResponse": ExplainResponse(
        Explanation(
            False,
            0,
            (Reason(ReasonCode.PRICE_NOT_CROSSED, "best ask 6", {"best_ask": 2**70}),),
            (Change("max_price_per_gpu_second", 5, 6),),
        )
    ),
    "Fill": Fill(b"\x04" * 32, b"\x05" * 32, 4, FillStatus.OPENED, b"\x06" * 32, ""),
    "LeaseOpened": LeaseOpened(
        b"\x07" * 32, b"\x04" * 32, b"\x05" * 32, Lease(_A, _B, 4, 3, 100, 3600, b"\x08" * 32), 12
    ),
    "BookChange": BookChange(b"\x04" * 32, "H100-80GB", Side.OFFER, 4),
    "Gossip": Gossip("relay-a", "relay-b", 1, (SUB_OFFER,)),
    "ReputationQuery": ReputationQuery((_A,), _B, 50, (_B,)),
    "ReputationReport": ReputationReport(
        7,
        1_000,
        (
            Reputation(_A, 3, 1, 1, 0, 0, 7_200, 21_600, 1, 1, 0, 0, 0, 12),
            Reputation(_B, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2**70, None),
        ),
        _B,
        (LabRecord(_B, 4, 2, 1, 1, 700),),
    ),
    "SubmitJob": SubmitJob(b"\x07" * 32, Signed(BID, b"\x02" * 65), b"sealed spec"),
    "JobAccepted": JobAccepted(b"\x07" * 32, JobState.RUNNING),
    "ReceiptsQuery": ReceiptsQuery(b"\x07" * 32, 3, 16),
    "ReceiptBatch": ReceiptBatch(
        b"\x07" * 32,
        (
            PeriodReport(
                Signed(
                    Receipt(
                        b"\x07" * 32,
                        1,
                        bytes(32),
                        100,
                        160,
                        240,
                        b"\x09" * 32,
                        b"\x0a" * 32,
                        bytes(32),
                    ),
                    b"\x03" * 65,
                ),
                b"sealed output",
                b"\x83metrics",
            ),
        ),
        JobState.FINISHED,
        "",
    ),
    "OutputQuery": OutputQuery(b"\x07" * 32, 1, 4, 8),
    "OutputChunks": OutputChunks(
        b"\x07" * 32, 1, 4, 9, (OutputChunk(b"sealed chunk", (b"\x0c" * 32, b"\x0d" * 32)),)
    ),
    "SubmitVoucher": SubmitVoucher(Signed(Voucher(b"\x07" * 32, 720, b"\x0b" * 32), b"\x04" * 65)),
    "VoucherAccepted": VoucherAccepted(b"\x07" * 32, 720, True),
    "ChallengeRequest": ChallengeRequest(b"\x07" * 32, b"\x0c" * 32, 1024, b"\x05" * 65),
    "ChallengeCommitment": ChallengeCommitment(b"\x07" * 32, b"\x0c" * 32, b"\x0d" * 32, "numpy"),
    "ChallengeOpen": ChallengeOpen(b"\x07" * 32, b"\x0c" * 32, (3, 1000)),
    "ChallengeRows": ChallengeRows(
        b"\x07" * 32, b"\x0c" * 32, (ChallengeRow(3, b"\x01\x00\x00\x00" * 4, (b"\x0e" * 32,)),)
    ),
    "ErrorResponse": ErrorResponse(ErrorCode.RATE_LIMITED, "slow down", {"retry_after_ms": 250}),
}
