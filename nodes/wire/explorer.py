"""The answers of the explorer's reads (``nodes/relay/explorer.py``), beside ``reads.py``'s.

    LeaseList       GET /v1/leases?recent=N       the latest leases the chain opened, newest first
    PriceHistory    GET /v1/prices/{model}        one model's lease prices over time
    Depth           GET /v1/depth/{model}         one model's book by price level, asks and bids
    ProviderList    GET /v1/providers             providers with stake, offers and reputation
    AccountView     GET /v1/accounts/{address}    an address's balance, stake, orders and leases

Declared and framed like the other read answers (camelCase keys, unknown keys refused,
``{v, type, body}`` in msgpack or JSON, by ``frames.py``). Prices are per GPU-second in the
token's base units, as signed; the explorer's pages show them per GPU-hour in tokens with
``token``'s symbol.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Final

from msgspec import Meta

from nodes.wire.messages import MAX_ORDERS, GpuModel, Hash, Struct, UInt32, UInt64
from nodes.wire.reads import BidView, OfferView, TokenView
from nodes.wire.values import Address, ReputationMap, UInt256

MAX_LEASES: Final = 1000
"""The most leases one answer carries."""
LeaseState = Annotated[str, Meta(pattern=r"^(open|expired|terminated|closed|slashed)\Z")]


class LeaseSummary(Struct, frozen=True):
    """A lease the chain opened, as a price record: ``time`` is its block's timestamp, ``ends``
    when its term runs out (``time + duration``), ``price_per_gpu_second`` what it pays (a batch
    auction's clearing price for a lease opened by one). ``state``: ``open`` (running),
    ``expired`` (its term ran out, not closed yet), or the event that ended it: ``terminated``
    (early, by the lab), ``closed``, ``slashed``."""

    lease_id: Hash
    bid_hash: Hash
    time: UInt64
    ends: UInt64
    model: GpuModel
    memory_gib: UInt32
    gpus: UInt32
    price_per_gpu_second: UInt256
    duration: UInt64
    provider: Address
    lab: Address
    state: LeaseState


Leases = Annotated[tuple[LeaseSummary, ...], Meta(max_length=MAX_LEASES)]


class LeaseList(Struct, frozen=True):
    """The latest leases, newest first; ``open`` counts every lease still running at
    ``chain_time`` (not only those listed)."""

    chain_time: UInt64
    head_block: UInt64
    token: TokenView
    open: UInt32
    leases: Leases
    TYPE_NAME: ClassVar[str] = "LeaseList"


class PriceHistory(Struct, frozen=True):
    """``model``'s leases in chain order: the prices that cleared, over time."""

    model: GpuModel
    chain_time: UInt64
    token: TokenView
    leases: Leases
    TYPE_NAME: ClassVar[str] = "PriceHistory"


class DepthLevel(Struct, frozen=True):
    """GPUs left at one price per GPU-second (not cumulative)."""

    price_per_gpu_second: UInt256
    gpus: UInt64
    orders: UInt32


Levels = Annotated[tuple[DepthLevel, ...], Meta(max_length=MAX_ORDERS)]


class Depth(Struct, frozen=True):
    """``model``'s resting orders by price level: asks cheapest first, bids dearest first."""

    model: GpuModel
    chain_time: UInt64
    token: TokenView
    asks: Levels
    bids: Levels
    TYPE_NAME: ClassVar[str] = "Depth"


class ProviderView(Struct, frozen=True):
    """A provider: its registry record (``stake`` bonded, ``locked`` of it by open leases), its
    resting offers on this relay, and its reputation from the chain's history."""

    provider: Address
    registered: bool
    stake: UInt256
    locked: UInt256
    endpoint: Annotated[str, Meta(max_length=1024)]
    offers: UInt32
    gpus_offered: UInt64
    reputation: ReputationMap | None = None


class ProviderList(Struct, frozen=True):
    chain_time: UInt64
    token: TokenView
    providers: Annotated[tuple[ProviderView, ...], Meta(max_length=MAX_ORDERS)]
    TYPE_NAME: ClassVar[str] = "ProviderList"


class AccountView(Struct, frozen=True):
    """One address: its token balance, its provider record (``provider`` None when it never
    registered), its resting offers and bids on this relay, and the leases it is a party to,
    newest first."""

    address: Address
    chain_time: UInt64
    token: TokenView
    balance: UInt256
    provider: ProviderView | None
    offers: Annotated[tuple[OfferView, ...], Meta(max_length=MAX_ORDERS)]
    bids: Annotated[tuple[BidView, ...], Meta(max_length=MAX_ORDERS)]
    leases: Leases
    TYPE_NAME: ClassVar[str] = "AccountView"


__all__ = [
    "MAX_LEASES",
    "AccountView",
    "Depth",
    "DepthLevel",
    "LeaseList",
    "LeaseSummary",
    "PriceHistory",
    "ProviderList",
    "ProviderView",
]
