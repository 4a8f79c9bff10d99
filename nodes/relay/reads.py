"""The relay's read API for people (answers in ``nodes/wire/reads.py``, msgpack or JSON).

    GET /v1/models                      -> ModelList (every model with resting orders)
    GET /v1/book                        -> ModelList (the same: the book's table of contents)
    GET /v1/offers?model=&gpus=&maxPrice=&billing=&minMemory=&limit=
                                        -> OfferList (cheapest first, with reputations)
    GET /v1/bids?lab=ADDRESS            -> BidList (its resting bids and the fate of recent ones)
    GET /v1/leases/{id}                 -> LeaseView (terms, state and events from the chain)
    GET /v1/explain?offer=H&bid=H       -> ExplainResponse (why this resting pair does not match)

A bid's fate: the relay follows its own event stream (the Hub's ``Fill`` events) and remembers,
for the last :data:`MAX_REMEMBERED` bids it filled or failed to fill, the leases opened and the
chain's error for a fill that reverted (``nodes/relay/reverts.py`` then drops the bid from the
book). A bid still in the book is ``resting`` when it can match now and ``unmatched`` with the
matcher's explanation otherwise.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from market.chain.lease_history import LeaseRecord, read_lease
from market.errors import (
    DecodeError,
    MarketError,
    OrderCancelled,
    OrderExpired,
    OrderFilled,
    ProviderNotEligible,
)
from market.matching import Explanation, OrderBook, ReasonCode, Resting, explain
from market.matching.reasons import Reason
from market.protocol.types import Bid, Billing, Offer, Signed, checksum_address
from market.reputation import Reputation
from market.units import EVENT_AMOUNTS, EVENT_TIMES
from nodes.daemon.explain import is_filled
from nodes.relay.reputations import ReputationService
from nodes.wire import ExplainResponse, Fill, FillStatus, Message, ReputationQuery
from nodes.wire.answers import respond
from nodes.wire.reads import (
    BidList,
    BidView,
    LeaseEvent,
    LeaseTerms,
    LeaseView,
    ModelList,
    ModelSummary,
    OfferList,
    OfferView,
    TokenView,
)

if TYPE_CHECKING:
    from nodes.relay.book import RelayBook
    from nodes.relay.stream import Hub

MAX_REMEMBERED = 10_000
"""Bids whose fills the relay remembers for ``/v1/bids``."""
DEFAULT_LIMIT = 100


@dataclass(frozen=True, slots=True)
class OfferFilter:
    """What ``/v1/offers`` keeps: every condition left at its default keeps all offers."""

    model: str | None = None
    gpus: int = 1
    max_price: int | None = None
    billing: Billing | None = None
    min_memory_gib: int = 0
    limit: int = DEFAULT_LIMIT

    def keeps(self, entry: Resting) -> bool:
        offer = entry.message
        assert isinstance(offer, Offer)
        return (
            entry.remaining >= self.gpus
            and (self.max_price is None or offer.price_per_gpu_second <= self.max_price)
            and (self.billing is None or bool(offer.billing_modes >> int(self.billing) & 1))
            and offer.memory_gib >= self.min_memory_gib
        )


def select_offers(entries: Iterable[Resting], wanted: OfferFilter) -> list[Resting]:
    """The offers ``wanted`` keeps, cheapest first (then the most GPUs left, then arrival), at
    most ``wanted.limit``."""
    kept = [e for e in entries if wanted.keeps(e)]
    kept.sort(key=lambda e: (e.price, -e.remaining, e.seq))
    return kept[: wanted.limit]


@dataclass
class BidMemory:
    """What the relay saw become of a bid: its signed terms, the leases it opened, the last
    error a fill of it reverted with (cleared by a later lease)."""

    bid: Signed[Bid]
    lease_ids: list[bytes] = field(default_factory=list)
    error: str = ""


class MarketReads:
    """The read routes over a relay's book, reputations and chain reader."""

    def __init__(
        self, book: RelayBook, hub: Hub, reputations: ReputationService, *, max_page: int
    ) -> None:
        self.book = book
        self.hub = hub
        self.reputations = reputations
        self.max_page = max_page
        self.memory: OrderedDict[bytes, BidMemory] = OrderedDict()
        self._unlisten: Callable[[], None] = lambda: None
        self._token: TokenView | None = None

    async def token(self) -> TokenView:
        """The settlement token's symbol and decimals, read from the chain once."""
        if self._token is None:
            meta = await asyncio.to_thread(self.reputations.client.token_metadata)
            self._token = TokenView(meta.symbol, meta.decimals)
        return self._token

    def install(self, app: web.Application) -> None:
        """Add the routes to ``app`` and follow the relay's fills while it runs."""
        app.add_routes(
            [
                web.get("/v1/models", self.models),
                web.get("/v1/book", self.models),
                web.get("/v1/offers", self.offers),
                web.get("/v1/bids", self.bids),
                web.get("/v1/leases/{lease_id}", self.lease),
                web.get("/v1/explain", self.pair),
            ]
        )
        app.on_startup.append(self._start)
        app.on_shutdown.append(self._stop)

    # --- following fills ------------------------------------------------------------------------

    async def _start(self, app: web.Application) -> None:
        self._unlisten = self.hub.listen(self._saw)

    async def _stop(self, app: web.Application) -> None:
        self._unlisten()

    def _saw(self, message: Message) -> None:
        if isinstance(message, Fill):
            self.saw_fill(message)

    def saw_fill(self, fill: Fill) -> None:
        """Remember what ``fill`` says of its bid (its terms are read from the book while it
        rests there, so a bid first seen already gone is not remembered)."""
        memory = self._remember(fill.bid_hash)
        if memory is None:
            return
        if fill.status is FillStatus.OPENED:
            if fill.lease_id not in memory.lease_ids:
                memory.lease_ids.append(fill.lease_id)
            memory.error = ""
        elif fill.status is FillStatus.FAILED:
            memory.error = fill.error

    def _remember(self, bid_hash: bytes) -> BidMemory | None:
        memory = self.memory.get(bid_hash)
        if memory is None:
            entry = self.book.book.get(bid_hash)
            if entry is None or entry.is_offer:
                return None
            memory = BidMemory(entry.order.signed)  # type: ignore[arg-type]
            self.memory[bid_hash] = memory
            while len(self.memory) > MAX_REMEMBERED:
                self.memory.popitem(last=False)
        self.memory.move_to_end(bid_hash)
        return memory

    # --- routes ---------------------------------------------------------------------------------

    async def models(self, request: web.Request) -> web.Response:
        return respond(request, self.model_list(await self.token()))

    def model_list(self, token: TokenView) -> ModelList:
        now = self.book.chain_time
        book = self.book.book
        summaries = []
        for model in sorted(book.models()):
            offers = [e for e in book.offers(model, now) if e.remaining > 0]
            bids = [e for e in book.bids(model, now) if e.remaining > 0]
            if not offers and not bids:
                continue
            summaries.append(
                ModelSummary(
                    model,
                    len(offers),
                    len(bids),
                    sum(e.remaining for e in offers),
                    sum(e.remaining for e in bids),
                    best_ask=min((e.price for e in offers), default=0),
                    best_bid=max((e.price for e in bids), default=0),
                )
            )
        return ModelList(now, token, tuple(summaries))

    async def offers(self, request: web.Request) -> web.Response:
        wanted = offer_filter(request.query, self.max_page)
        now = self.book.chain_time
        book = self.book.book
        models = [wanted.model] if wanted.model else book.models()
        chosen = select_offers(
            (e for m in models for e in book.offers(m, now) if e.remaining > 0), wanted
        )
        reputations = await self._reputations({e.signer for e in chosen})
        views = tuple(offer_view(e, reputations.get(e.signer.lower())) for e in chosen)
        return respond(request, OfferList(now, await self.token(), views))

    async def _reputations(self, providers: set[str]) -> dict[str, Reputation]:
        if not providers:
            return {}
        query = ReputationQuery(tuple(sorted(providers)), limit=len(providers))
        try:
            report = await self.reputations.answer(query)
        except MarketError:  # the chain does not answer: the offers without reputations
            return {}
        return {r.provider.lower(): r for r in report.reputations}

    async def bids(self, request: web.Request) -> web.Response:
        raw = request.query.get("lab")
        if raw is None:
            raise DecodeError("/v1/bids needs ?lab=ADDRESS")
        lab = _address(raw, "lab")
        return respond(request, self.bid_list(lab, await self.token()))

    def bid_list(self, lab: str, token: TokenView) -> BidList:
        now = self.book.chain_time
        book = self.book.book
        views: dict[bytes, BidView] = {}
        for model in book.models():
            for entry in book.bids(model, now):
                if entry.signer.lower() == lab.lower():
                    memory = self._remember(entry.hash)
                    views[entry.hash] = self._resting_view(entry, memory)
        for bid_hash, memory in self.memory.items():
            if bid_hash in views or memory.bid.message.lab.lower() != lab.lower():
                continue
            fate = "fill_failed" if memory.error else "matched" if memory.lease_ids else "resting"
            views[bid_hash] = bid_view(bid_hash, memory.bid.message, 0, fate, memory)
        bids = tuple(views.values())[: self.max_page]
        return BidList(checksum_address(lab), now, token, bids)

    def _resting_view(self, entry: Resting, memory: BidMemory | None) -> BidView:
        bid = entry.message
        assert isinstance(bid, Bid)
        explanation = self.book.explain(bid)
        if explanation.matchable or is_filled(explanation):
            return bid_view(entry.hash, bid, entry.remaining, "resting", memory)
        fate = "fill_failed" if memory is not None and memory.error else "unmatched"
        return bid_view(entry.hash, bid, entry.remaining, fate, memory, explanation)

    async def lease(self, request: web.Request) -> web.Response:
        lease_id = _hash(request.match_info["lease_id"])
        record = await asyncio.to_thread(read_lease, self.reputations.client, lease_id)
        if record is None:
            raise web.HTTPNotFound(reason=f"no lease 0x{lease_id.hex()} opened on this chain")
        return respond(request, lease_view(record, await self.token()))

    async def pair(self, request: web.Request) -> web.Response:
        hashes = []
        for side in ("offer", "bid"):
            raw = request.query.get(side)
            if raw is None:
                raise DecodeError("/v1/explain needs ?offer=ORDER_HASH&bid=ORDER_HASH")
            entry = self.book.book.get(_hash(raw))
            if entry is None or entry.is_offer != (side == "offer"):
                raise web.HTTPNotFound(reason=f"no resting {side} {raw} on this relay")
            hashes.append(entry)
        offer, bid = hashes
        explanation = explain_pair(self.book.book, offer, bid, self.book.chain_time)
        return respond(request, ExplainResponse(explanation))


def explain_pair(book: OrderBook, offer: Resting, bid: Resting, now: int) -> Explanation:
    """Why ``bid`` does not match ``offer`` (both resting in ``book``): the bid explained
    against a book holding that offer alone, with ``book``'s view of the provider's stake."""
    alone = OrderBook(min_stake=book.min_stake, stake_of=book.stake_of)
    for entry in (offer, bid):
        try:
            alone.add(entry.order, now, filled=entry.size - entry.remaining)
        except MarketError as exc:
            code = _CODES.get(type(exc))
            if code is None:
                raise
            return Explanation(False, 0, (Reason(code, str(exc)),), ())
    return explain(alone, bid.message, now, order_hash=bid.hash)


_CODES: dict[type[MarketError], ReasonCode] = {
    OrderExpired: ReasonCode.ORDER_EXPIRED,
    OrderCancelled: ReasonCode.ORDER_CANCELLED,
    OrderFilled: ReasonCode.ORDER_FILLED,
    ProviderNotEligible: ReasonCode.PROVIDER_NOT_ELIGIBLE,
}


# --- views --------------------------------------------------------------------------------------


def offer_view(entry: Resting, reputation: Reputation | None) -> OfferView:
    o = entry.message
    assert isinstance(o, Offer)
    return OfferView(
        entry.hash, o.provider, o.gpu_model, o.gpu_count, entry.remaining,
        o.price_per_gpu_second, o.memory_gib, o.bandwidth_gbps, o.min_duration, o.max_duration,
        o.billing_modes, o.features, o.expiry, reputation,
    )  # fmt: skip


def bid_view(
    bid_hash: bytes,
    bid: Bid,
    remaining: int,
    fate: str,
    memory: BidMemory | None,
    explanation: object = None,
) -> BidView:
    return BidView(
        bid_hash, bid.lab, bid.gpu_model, bid.gpu_count, remaining, bid.max_price_per_gpu_second,
        bid.duration, int(bid.billing), bid.all_or_none, bid.expiry, fate,
        lease_ids=tuple(memory.lease_ids) if memory else (),
        error=memory.error[:4096] if memory else "",
        explanation=explanation,  # type: ignore[arg-type]
    )  # fmt: skip


def lease_view(record: LeaseRecord, token: TokenView) -> LeaseView:
    lease, state = record.lease, record.state
    terms = LeaseTerms(
        lease.provider, lease.lab, lease.gpus, lease.price_per_gpu_second, lease.start,
        lease.duration, int(lease.billing), lease.receipt_signer, lease.voucher_signer,
        lease.arbiter, lease.min_charge,
    )  # fmt: skip
    events = tuple(lease_event(e.name, e.block_number, e.args) for e in record.events)
    return LeaseView(
        record.lease_id, record.offer_hash, record.bid_hash, record.opened_block, terms,
        state.status.name.lower(), state.paid, state.end, state.slashed, state.disputed,
        state.stake_released, token, events,
    )  # fmt: skip


# --- requests -----------------------------------------------------------------------------------


def lease_event(name: str, block: int, args: Mapping[str, object]) -> LeaseEvent:
    """An event's numbers (unsigned ints, not flags), naming those that are token amounts and
    those that are times."""
    values = {
        k: int(v)
        for k, v in args.items()
        if isinstance(v, int) and not isinstance(v, bool) and v >= 0
    }
    return LeaseEvent(
        name,
        block,
        values,
        tuple(k for k in values if k in EVENT_AMOUNTS),
        tuple(k for k in values if k in EVENT_TIMES),
    )


def offer_filter(query: object, max_page: int) -> OfferFilter:
    """An OfferFilter from ``/v1/offers``' query (``model``, ``gpus``, ``maxPrice``, ``billing``:
    ``rental`` or ``metered``, ``minMemory``, ``limit``); DecodeError for a bad value."""
    q: dict[str, str] = dict(query)  # type: ignore[call-overload]
    billing = q.get("billing")
    if billing is not None and billing.upper() not in Billing.__members__:
        raise DecodeError(f"billing must be rental or metered, got {billing!r}")
    max_price = q.get("maxPrice")
    return OfferFilter(
        model=q.get("model") or None,
        gpus=_whole(q.get("gpus", "1"), "gpus"),
        max_price=None if max_price is None else _whole(max_price, "maxPrice", bits=256),
        billing=None if billing is None else Billing[billing.upper()],
        min_memory_gib=_whole(q.get("minMemory", "0"), "minMemory"),
        limit=min(_whole(q.get("limit", str(DEFAULT_LIMIT)), "limit"), max_page),
    )


def _whole(raw: str, name: str, *, bits: int = 32) -> int:
    if not raw.isdigit() or int(raw) >= 2**bits:
        raise DecodeError(f"{name} must be a whole number below 2^{bits}, got {raw!r}")
    return int(raw)


def _address(raw: str, name: str) -> str:
    try:
        return str(checksum_address(raw))
    except ValueError as exc:
        raise DecodeError(f"{name} must be a 0x-prefixed 20-byte address, got {raw!r}") from exc


def _hash(raw: str) -> bytes:
    text = raw[2:] if raw.startswith("0x") else raw
    try:
        value = bytes.fromhex(text)
    except ValueError:
        value = b""
    if len(value) != 32:
        raise DecodeError(f"a lease id is 32 bytes in hex, got {raw!r}")
    return value


__all__ = [
    "BidMemory",
    "MarketReads",
    "OfferFilter",
    "bid_view",
    "explain_pair",
    "lease_view",
    "offer_filter",
    "offer_view",
    "select_offers",
]
