"""The daemons' wire format: msgpack frames with a versioned envelope and a closed set of types.

    frames.py    encode(message) -> bytes; decode(bytes) -> message, the one validating decoder
    messages.py  the message types (SubmitOrders, OrdersAccepted, BookQuery, BookSnapshot,
                 ExplainRequest, ExplainResponse, Fill, LeaseOpened, BookChange, Gossip,
                 ReputationQuery, ReputationReport, ErrorResponse; between a lab and its provider:
                 SubmitJob/JobAccepted, ReceiptsQuery/ReceiptBatch, SubmitVoucher/VoucherAccepted)
                 and the closed enums they use
    schemas.py   how each message travels: its keys, in order, and the kind of each value
    fields.py    the kinds of value, each with one msgpack form and a validating decoder

Signed orders inside a message are ``market.protocol.codec`` frames carried as bins, so they are
decoded and verified exactly as the protocol defines them.
"""

from nodes.wire.frames import CONTENT_TYPE, MAX_FRAME_SIZE, WIRE_VERSION, decode, decode_as, encode
from nodes.wire.messages import (
    MAX_ORDERS,
    MAX_PERIODS,
    MAX_REPUTATIONS,
    MAX_SEALED,
    ZERO_ADDRESS,
    BookChange,
    BookEntry,
    BookQuery,
    BookSnapshot,
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
    PeriodReport,
    ReceiptBatch,
    ReceiptsQuery,
    ReputationQuery,
    ReputationReport,
    Side,
    SubmitJob,
    SubmitOrders,
    SubmitVoucher,
    Value,
    VoucherAccepted,
)

__all__ = [
    "CONTENT_TYPE",
    "MAX_FRAME_SIZE",
    "MAX_ORDERS",
    "MAX_PERIODS",
    "MAX_REPUTATIONS",
    "MAX_SEALED",
    "WIRE_VERSION",
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
    "JobAccepted",
    "JobState",
    "LeaseOpened",
    "Message",
    "OrderResult",
    "OrderStatus",
    "OrdersAccepted",
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
    "decode",
    "decode_as",
    "encode",
]
