"""The relay's read API for people: what is on the market, in messages of their own.

    ModelList     GET /v1/models, GET /v1/book   every GPU model with resting orders
    OfferList     GET /v1/offers?model=..        resting offers, cheapest first, with reputations
    BidList       GET /v1/bids?lab=ADDRESS       a lab's resting and recently failed bids
    LeaseView     GET /v1/leases/{id}            a lease's terms, state and events from the chain

They are declared like the daemons' messages (``messages.py``: camelCase keys, unknown keys
refused, bounds as ``Meta``) and framed by the same machinery, ``{v, type, body}``, in msgpack or
in JSON (``frames.py``: ``encode``, ``encode_json``, ``decode_read``, ``decode_read_json``);
they stay outside the daemons' closed set, which no daemon needs to extend for a person's
questions. Orders appear as their readable terms rather than codec frames, so ``curl`` shows a
price, not a hex string. Prices are per GPU-second in the token's base units, as signed.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Final

import msgspec
from msgspec import Meta

from nodes.wire.messages import (
    MAX_ORDERS,
    GpuModel,
    Hash,
    Name,
    Struct,
    Text,
    UInt8,
    UInt32,
    UInt64,
)
from nodes.wire.values import Address, ExplanationMap, ReputationMap, UInt256

MAX_READ_SIZE: Final = 4 * 1024 * 1024
"""The largest read answer a client accepts, in bytes."""
MAX_EVENTS: Final = 1024
"""The most chain events one LeaseView carries."""


class TokenView(Struct, frozen=True):
    """The settlement token the amounts are in: :class:`market.units.Token`'s fields."""

    symbol: Name
    decimals: UInt8


class ModelSummary(Struct, frozen=True):
    """One GPU model's resting orders with GPUs left: ``best_ask``/``best_bid`` mean something
    only when ``offers``/``bids`` is above zero."""

    model: GpuModel
    offers: UInt32
    bids: UInt32
    gpus_offered: UInt64
    gpus_wanted: UInt64
    best_ask: UInt256 = 0
    best_bid: UInt256 = 0


class ModelList(Struct, frozen=True):
    chain_time: UInt64
    token: TokenView
    models: Annotated[tuple[ModelSummary, ...], Meta(max_length=MAX_ORDERS)]
    TYPE_NAME: ClassVar[str] = "ModelList"


class OfferView(Struct, frozen=True):
    """A resting offer's terms, ``remaining`` GPUs of ``gpus`` left, and its provider's
    reputation when the relay could compute it."""

    order_hash: Hash
    provider: Address
    model: GpuModel
    gpus: UInt32
    remaining: UInt32
    price_per_gpu_second: UInt256
    memory_gib: UInt32
    bandwidth_gbps: UInt32
    min_duration: UInt64
    max_duration: UInt64
    billing_modes: UInt8
    features: UInt64
    expiry: UInt64
    reputation: ReputationMap | None = None


class OfferList(Struct, frozen=True):
    chain_time: UInt64
    token: TokenView
    offers: Annotated[tuple[OfferView, ...], Meta(max_length=MAX_ORDERS)]
    TYPE_NAME: ClassVar[str] = "OfferList"


FATES: Final = ("resting", "matched", "unmatched", "fill_failed")
"""What became of a bid, as :class:`BidView` says it: ``resting`` (in the book, or its fill
pending: a lease on its way), ``matched`` (fully filled: ``lease_ids``), ``unmatched`` (in the
book, nothing matches: ``explanation`` says why and what would), ``fill_failed`` (the chain
refused the lease: ``error``)."""
Fate = Annotated[str, Meta(pattern=r"^(resting|matched|unmatched|fill_failed)\Z")]


class BidView(Struct, frozen=True):
    """A lab's bid as the relay knows it: its terms, GPUs left, its fate, the leases the relay
    saw it open and the last fill error the chain gave."""

    order_hash: Hash
    lab: Address
    model: GpuModel
    gpus: UInt32
    remaining: UInt32
    max_price_per_gpu_second: UInt256
    duration: UInt64
    billing: UInt8
    all_or_none: bool
    expiry: UInt64
    fate: Fate
    lease_ids: Annotated[tuple[Hash, ...], Meta(max_length=MAX_ORDERS)] = ()
    error: Text = ""
    explanation: ExplanationMap | None = None


class BidList(Struct, frozen=True):
    lab: Address
    chain_time: UInt64
    token: TokenView
    bids: Annotated[tuple[BidView, ...], Meta(max_length=MAX_ORDERS)]
    TYPE_NAME: ClassVar[str] = "BidList"


class LeaseTerms(Struct, frozen=True):
    """A lease's signed terms (``market.protocol.types.Lease``), readable."""

    provider: Address
    lab: Address
    gpus: UInt32
    price_per_gpu_second: UInt256
    start: UInt64
    duration: UInt64
    billing: UInt8
    receipt_signer: Address
    voucher_signer: Address
    arbiter: Address
    min_charge: UInt256


class LeaseEvent(Struct, frozen=True):
    """One chain event about the lease: its name, block, and its numbers (amounts, seq);
    ``amounts`` names those of ``values`` that are token amounts in base units
    (``market.units.EVENT_AMOUNTS``), which a person is shown in tokens, and ``times`` those that
    are chain times (``EVENT_TIMES``, Unix seconds), shown as dates."""

    name: Name
    block: UInt64
    values: Annotated[dict[Name, UInt256], Meta(max_length=16)] = msgspec.field(
        default_factory=dict
    )
    amounts: Annotated[tuple[Name, ...], Meta(max_length=16)] = ()
    times: Annotated[tuple[Name, ...], Meta(max_length=16)] = ()


class LeaseView(Struct, frozen=True):
    """A lease from the chain: its terms, the orders it filled, its state (``status`` as the
    contract's ``LeaseStatus`` name), and its events in chain order."""

    lease_id: Hash
    offer_hash: Hash
    bid_hash: Hash
    opened_block: UInt64
    terms: LeaseTerms
    status: Name
    paid: UInt256
    end: UInt64
    slashed: bool
    disputed: bool
    released: bool
    token: TokenView
    events: Annotated[tuple[LeaseEvent, ...], Meta(max_length=MAX_EVENTS)] = ()
    TYPE_NAME: ClassVar[str] = "LeaseView"


__all__ = [
    "FATES",
    "MAX_READ_SIZE",
    "BidList",
    "BidView",
    "Fate",
    "LeaseEvent",
    "LeaseTerms",
    "LeaseView",
    "ModelList",
    "ModelSummary",
    "OfferList",
    "OfferView",
    "TokenView",
]
