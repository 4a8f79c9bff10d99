"""The market explorer: pages for a browser at ``/`` and the reads they need.

    GET /                               the explorer (``static/index.html``; hash routes)
    GET /explorer/{file}                its script and style sheet, shipped as package data
    GET /v1/leases?recent=N             -> LeaseList (the latest N leases, newest first)
    GET /v1/prices/{model}              -> PriceHistory (that model's leases in chain order)
    GET /v1/depth/{model}               -> Depth (the book by price level, asks and bids)
    GET /v1/providers                   -> ProviderList (stake, offers here, reputation)
    GET /v1/accounts/{address}          -> AccountView (balance, stake, orders, leases)

Every answer is JSON to a request whose ``Accept`` prefers it (a browser's ``fetch``, ``curl -H
'Accept: application/json'``), msgpack otherwise, as the other reads. The pages are plain HTML,
CSS and JavaScript with no external resource: charts are SVG drawn by the script, and live
updates come from ``/v1/stream`` (docs/decisions/0027-explorer.md).

The chain is read through ``market.chain`` and cached per head block: the leases are read once,
then only the blocks past the last read (:class:`LeaseIndex`), and the providers' records once
per head block.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
from aiohttp import web

from market.chain.client import MarketClient, ProviderInfo
from market.chain.leases import OpenedLease, ended_leases, opened_leases
from market.errors import DecodeError, MarketError
from market.matching import Resting
from market.protocol.types import checksum_address
from market.reputation import Reputation
from nodes.relay.reads import MarketReads, offer_view
from nodes.wire import ZERO_ADDRESS, GpuModel, ReputationQuery
from nodes.wire.answers import respond
from nodes.wire.explorer import (
    MAX_LEASES,
    AccountView,
    Depth,
    DepthLevel,
    LeaseList,
    LeaseSummary,
    PriceHistory,
    ProviderList,
    ProviderView,
)

if TYPE_CHECKING:
    pass

STATIC = Path(__file__).parent / "static"
"""The explorer's files (package data)."""
FILES = {"app.js": "text/javascript", "msgpack.js": "text/javascript", "style.css": "text/css"}
DEFAULT_RECENT = 50


@dataclass
class LeaseIndex:
    """Every lease the chain opened since the deployment and those that stopped running, read
    once and then only the blocks past the last read. (A reorganisation deeper than the blocks
    read is not undone: the relay's own book follows it, this history is for people.)"""

    client: MarketClient
    leases: list[OpenedLease] = field(default_factory=list)
    ended: dict[bytes, str] = field(default_factory=dict)
    head_block: int = -1
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def state(self, lease: OpenedLease, now: int) -> str:
        """``lease``'s state at chain time ``now`` (see :class:`LeaseSummary`)."""
        ended = self.ended.get(lease.lease_id)
        if ended is not None:
            return ended
        return "open" if lease.time + lease.duration > now else "expired"

    def summary(self, lease: OpenedLease, now: int) -> LeaseSummary:
        return summary(lease, self.state(lease, now))

    async def refresh(self) -> list[OpenedLease]:
        """The leases up to the current head (one head read when nothing new was mined)."""
        async with self._lock:
            head = await asyncio.to_thread(self.client.head)
            if head.number > self.head_block:
                start = max(self.head_block + 1, self.client.contracts.deployment.deploy_block)
                found = await asyncio.to_thread(opened_leases, self.client, start, head.number)
                ended = await asyncio.to_thread(ended_leases, self.client, start, head.number)
                self.leases.extend(found.leases)
                self.ended.update(ended)
                self.head_block = head.number
            return self.leases


@dataclass
class ProviderCache:
    """Providers' registry records, read again once per head block."""

    client: MarketClient
    block: int = -1
    records: dict[str, ProviderInfo] = field(default_factory=dict)

    async def info(self, block: int, address: str) -> ProviderInfo:
        if block != self.block:
            self.records.clear()
            self.block = block
        key = address.lower()
        if key not in self.records:
            self.records[key] = await asyncio.to_thread(self.client.provider_info, address)
        return self.records[key]


class Explorer:
    """The explorer's pages and reads, over a relay's :class:`MarketReads`."""

    def __init__(self, reads: MarketReads) -> None:
        self.reads = reads
        self.client = reads.reputations.client
        self.index = LeaseIndex(self.client)
        self.providers = ProviderCache(self.client)

    def install(self, app: web.Application) -> None:
        app.add_routes(
            [
                web.get("/", self.page),
                web.get("/explorer/", self.page),
                web.get("/explorer/{file}", self.asset),
                web.get("/v1/leases", self.lease_list),
                web.get("/v1/prices/{model}", self.price_history),
                web.get("/v1/depth/{model}", self.depth),
                web.get("/v1/providers", self.provider_list),
                web.get("/v1/accounts/{address}", self.account),
            ]
        )

    # --- pages ----------------------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.Response:
        return _file("index.html", "text/html")

    async def asset(self, request: web.Request) -> web.Response:
        name = request.match_info["file"]
        if name not in FILES:
            raise web.HTTPNotFound(reason=f"no explorer file {name!r}")
        return _file(name, FILES[name])

    # --- reads ----------------------------------------------------------------------------------

    async def lease_list(self, request: web.Request) -> web.Response:
        recent = min(_whole(request.query.get("recent", str(DEFAULT_RECENT)), "recent"), MAX_LEASES)
        leases = await self.index.refresh()
        now = self.reads.book.chain_time
        latest = [self.index.summary(x, now) for x in reversed(leases[-recent:] if recent else [])]
        still_open = sum(1 for lease in leases if self.index.state(lease, now) == "open")
        token = await self.reads.token()
        return respond(
            request, LeaseList(now, self.index.head_block, token, still_open, tuple(latest))
        )

    async def price_history(self, request: web.Request) -> web.Response:
        model = _model(request.match_info["model"])
        now = self.reads.book.chain_time
        leases = [
            self.index.summary(x, now) for x in await self.index.refresh() if x.model == model
        ]
        token = await self.reads.token()
        return respond(request, PriceHistory(model, now, token, tuple(leases[-MAX_LEASES:])))

    async def depth(self, request: web.Request) -> web.Response:
        model = _model(request.match_info["model"])
        now = self.reads.book.chain_time
        book = self.reads.book.book
        asks = levels((e for e in book.offers(model, now) if e.remaining > 0), ascending=True)
        bids = levels((e for e in book.bids(model, now) if e.remaining > 0), ascending=False)
        token = await self.reads.token()
        return respond(request, Depth(model, now, token, asks, bids))

    async def provider_list(self, request: web.Request) -> web.Response:
        now = self.reads.book.chain_time
        offered = self._offered()
        reputations = await self._all_reputations()
        addresses = sorted({*offered, *reputations}, key=str.lower)
        block = await asyncio.to_thread(lambda: self.client.head().number)
        views = []
        for address in addresses[: self.reads.max_page]:
            info = await self.providers.info(block, address)
            views.append(provider_view(info, offered.get(address, []), reputations.get(address)))
        token = await self.reads.token()
        return respond(request, ProviderList(now, token, tuple(views)))

    async def account(self, request: web.Request) -> web.Response:
        address = _address(request.match_info["address"])
        now = self.reads.book.chain_time
        token = await self.reads.token()
        balance = await asyncio.to_thread(self.client.balance_of, address)
        block = await asyncio.to_thread(lambda: self.client.head().number)
        info = await self.providers.info(block, address)
        mine = self._offered().get(address, [])
        provider = None
        if info.registered or info.stake or mine:
            provider = provider_view(info, mine, await self._reputation(address))
        offers = tuple(offer_view(e, None) for e in mine)
        bids = self.reads.bid_list(address, token).bids
        key = address.lower()
        leases = tuple(
            self.index.summary(x, now)
            for x in reversed(await self.index.refresh())
            if key in (x.provider.lower(), x.lab.lower())
        )[:MAX_LEASES]
        view = AccountView(address, now, token, balance, provider, offers, bids, leases)
        return respond(request, view)

    def _offered(self) -> dict[str, list[Resting]]:
        """Resting offers with GPUs left, by provider (checksummed)."""
        now = self.reads.book.chain_time
        book = self.reads.book.book
        out: dict[str, list[Resting]] = defaultdict(list)
        for model in book.models():
            for entry in book.offers(model, now):
                if entry.remaining > 0:
                    out[checksum_address(entry.signer)].append(entry)
        return out

    async def _reputation(self, address: str) -> Reputation | None:
        try:
            report = await self.reads.reputations.answer(ReputationQuery((address,)))
        except MarketError:  # the chain does not answer: the record without a reputation
            return None
        return next(iter(report.reputations), None)

    async def _all_reputations(self) -> dict[str, Reputation]:
        """Every provider's reputation the relay computes, by checksummed address (none when
        the chain does not answer)."""
        out: dict[str, Reputation] = {}
        after = ZERO_ADDRESS
        try:
            while len(out) < self.reads.max_page:
                query = ReputationQuery((), after, self.reads.max_page)
                report = await self.reads.reputations.answer(query)
                out.update((checksum_address(r.provider), r) for r in report.reputations)
                if report.next_after == ZERO_ADDRESS:
                    break
                after = report.next_after
        except MarketError:
            return out
        return out


def summary(lease: OpenedLease, state: str) -> LeaseSummary:
    return LeaseSummary(
        lease.lease_id, lease.bid_hash, lease.time, lease.time + lease.duration, lease.model,
        lease.memory_gib, lease.gpus, lease.price_per_gpu_second, lease.duration,
        lease.provider or ZERO_ADDRESS, lease.lab or ZERO_ADDRESS, state,
    )  # fmt: skip


def levels(entries: Iterable[Resting], *, ascending: bool) -> tuple[DepthLevel, ...]:
    """Resting orders grouped by price: GPUs left and orders at each price, in book order."""
    gpus: dict[int, int] = defaultdict(int)
    orders: dict[int, int] = defaultdict(int)
    for entry in entries:
        gpus[entry.price] += entry.remaining
        orders[entry.price] += 1
    prices = sorted(gpus, reverse=not ascending)
    return tuple(DepthLevel(p, gpus[p], orders[p]) for p in prices)


def provider_view(
    info: ProviderInfo, offers: list[Resting], reputation: Reputation | None
) -> ProviderView:
    return ProviderView(
        info.address, info.registered, info.stake, info.locked, info.endpoint[:1024],
        len(offers), sum(e.remaining for e in offers), reputation,
    )  # fmt: skip


def _file(name: str, media: str) -> web.Response:
    body = (STATIC / name).read_bytes()
    return web.Response(body=body, content_type=media, charset="utf-8")


def _whole(raw: str, name: str) -> int:
    if not raw.isdigit() or int(raw) >= 2**32:
        raise DecodeError(f"{name} must be a whole number below 2^32, got {raw!r}")
    return int(raw)


def _model(raw: str) -> str:
    try:
        model: str = msgspec.convert(raw, GpuModel)
    except msgspec.ValidationError as exc:
        raise DecodeError(f"model must be a GPU model name: {exc}") from exc
    return model


def _address(raw: str) -> str:
    try:
        return str(checksum_address(raw))
    except ValueError as exc:
        raise DecodeError(f"an account is a 0x-prefixed 20-byte address, got {raw!r}") from exc


__all__ = ["Explorer", "LeaseIndex", "ProviderCache", "levels", "summary"]
