"""The relay's HTTP API and event stream (aiohttp).

    POST /v1/orders       SubmitOrders  -> OrdersAccepted (one typed result per order)
    POST /v1/gossip       Gossip        -> OrdersAccepted (from peer relays)
    GET  /v1/book/{model} ?depth=N      -> BookSnapshot
    POST /v1/explain      ExplainRequest -> ExplainResponse
    GET  /v1/reputation   ?after=ADDRESS&limit=N -> ReputationReport (every provider, paged)
    GET  /v1/reputation/{provider}               -> ReputationReport (that provider)
    POST /v1/reputation   ReputationQuery -> ReputationReport (the providers and labs it names)
    GET  /v1/labs/{lab}                          -> ReputationReport (that lab's dispute record)
    GET  /v1/models, /v1/book, /v1/offers, /v1/bids?lab=, /v1/leases/{id},
         /v1/explain?offer=&bid=: reads for people (``nodes/relay/reads.py``)
    GET  /, /explorer/*, /v1/leases?recent=, /v1/prices/{model}, /v1/depth/{model},
         /v1/providers, /v1/accounts/{address}: the explorer (``nodes/relay/explorer.py``)
    GET  /v1/stream       WebSocket: BookChange, Fill, LeaseOpened; BookQuery -> BookSnapshot
    GET  /metrics         Prometheus text
    GET  /healthz         "ok", or 503 "chain_unavailable ..." while the chain is not reached

Bodies are msgpack frames (``application/msgpack``); a request whose ``Accept`` prefers
``application/json`` is answered in JSON, and a body sent as ``application/json`` is read as JSON
(the same frames, bins as 0x-hex strings: for people and browsers). The stream stays msgpack. Every
refusal of a whole request is an ErrorResponse with a code: 400 for bad frames, 404/405, 413 over
the frame size or order count, 429 over a rate limit (per client address for every request and
stream message, per signer for orders, whether sent directly or gossiped, per peer for gossip), 503
when the chain does not answer or the relay is stopping. Both order endpoints go through one
Admission (``nodes/relay/admission.py``). A refused request changes nothing. Every answer names the
relay in ``X-Gpumarket-Relay``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import msgspec
from aiohttp import WSMessage, WSMsgType, web

from market.errors import DecodeError, FrameTooLarge, InvalidField, MarketError
from market.protocol.eip712 import Domain
from market.protocol.types import checksum_address
from nodes.daemon.health import health_response
from nodes.errors import StoreUnavailable, StreamUnavailable, TooManyOrders
from nodes.logs import EventLogger
from nodes.relay.admission import Admission, Admitted
from nodes.relay.book import RelayBook
from nodes.relay.config import Limits
from nodes.relay.explorer import Explorer
from nodes.relay.gossip import Gossiper
from nodes.relay.metrics import RelayMetrics
from nodes.relay.ratelimit import RateLimiter
from nodes.relay.reads import MarketReads
from nodes.relay.reputations import ReputationService
from nodes.relay.stream import Hub
from nodes.wire import (
    ZERO_ADDRESS,
    BookQuery,
    BookSnapshot,
    ErrorCode,
    ExplainRequest,
    ExplainResponse,
    Gossip,
    GpuModel,
    Message,
    OrderResult,
    OrdersAccepted,
    ReputationQuery,
    SubmitOrders,
    decode,
    encode,
)
from nodes.wire.answers import (
    Answer,
    ShuttingDown,
    WrongMessageType,
    answer_for,
    plain,
    read_message,
    respond,
)
from nodes.wire.relay_client import RELAY_HEADER

M = TypeVar("M", bound=Message)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_UNLIMITED = frozenset({"/healthz", "/metrics"})
_HTTP_CODES = {
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.FRAME_TOO_LARGE,
}


@dataclass
class RelayServer:
    relay_id: str
    domain: Domain
    book: RelayBook
    hub: Hub
    gossiper: Gossiper
    metrics: RelayMetrics
    limits: Limits
    log: EventLogger
    reputations: ReputationService
    admission: Admission
    stopping: bool = False

    def __post_init__(self) -> None:
        lim = self.limits
        self.client_limit = RateLimiter(lim.client_rate_per_s, lim.client_burst)

    def app(self) -> web.Application:
        app = web.Application(
            middlewares=[self.metrics.timed_routes, self._answers],
            client_max_size=self.limits.max_frame_size,
        )
        app.add_routes(
            [
                web.post("/v1/orders", self.orders),
                web.post("/v1/gossip", self.gossip),
                web.get("/v1/book/{model}", self.book_snapshot),
                web.post("/v1/explain", self.explain),
                web.get("/v1/reputation", self.reputation_list),
                web.get("/v1/reputation/{provider}", self.reputation_of),
                web.post("/v1/reputation", self.reputation_query),
                web.get("/v1/labs/{lab}", self.lab_record),
                web.get("/v1/stream", self.stream),
                web.get("/metrics", self.prometheus),
                web.get("/healthz", self.health),
            ]
        )
        reads = MarketReads(
            self.book, self.hub, self.reputations, max_page=self.limits.max_book_depth
        )
        reads.install(app)
        Explorer(reads).install(app)
        app.on_shutdown.append(self._close_streams)
        return app

    @web.middleware
    async def _answers(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route.resource
        endpoint = route.canonical if route is not None else "unmatched"
        response: web.StreamResponse
        try:
            if self.stopping and request.path != "/metrics":
                raise ShuttingDown()
            if request.path not in _UNLIMITED:
                self.client_limit.take({request.remote or "unknown": 1})
            response = await handler(request)
        except web.HTTPException as exc:  # aiohttp's own refusals: no route, wrong method
            code = _HTTP_CODES.get(exc.status, ErrorCode.MALFORMED_FRAME)
            response = _respond(request, plain(exc.status, code, exc.reason))
        except Exception as exc:  # the server's boundary: every answer is an ErrorResponse
            answer = answer_for(exc) if isinstance(exc, MarketError) else None
            if answer is None and isinstance(exc, StreamUnavailable | StoreUnavailable):
                # a cluster's stream or a PostgreSQL store away for now: nothing was accepted
                answer = plain(503, ErrorCode.INTERNAL, f"{exc}; send the request again")
            if answer is None:
                self.log.error("request_failed", endpoint=endpoint, exc_info=True)
                answer = plain(500, ErrorCode.INTERNAL, "internal error; see the relay log")
            response = _respond(request, answer)
        self.metrics.requests.inc(endpoint=endpoint, status=str(response.status))
        if not response.prepared:
            response.headers[RELAY_HEADER] = self.relay_id
        return response

    async def _frame(self, request: web.Request) -> Message:
        limit = self.limits.max_frame_size
        if request.content_length is not None and request.content_length > limit:
            raise FrameTooLarge(request.content_length, limit)
        data = bytearray()
        async for chunk in request.content.iter_chunked(64 * 1024):
            data += chunk
            if len(data) > limit:
                raise FrameTooLarge(len(data), limit)
        return read_message(request, bytes(data), max_size=limit)

    async def orders(self, request: web.Request) -> web.Response:
        message = _expect(await self._frame(request), SubmitOrders)
        self._check_count(len(message.orders))
        admitted = await self.admission.admit(message.orders)
        for status, count in _statuses(admitted.results).items():
            self.metrics.orders.inc(count, status=status)
        self._evicted(admitted)
        self.log.info(
            "orders_admitted",
            received=len(message.orders),
            accepted=len(admitted.accepted),
            refused=_summary(admitted.results),
            evicted=admitted.evicted,
        )
        self.gossiper.publish(admitted.accepted, origin=self.relay_id, hops=1)
        return _message(request, OrdersAccepted(tuple(admitted.results)))

    async def gossip(self, request: web.Request) -> web.Response:
        message = _expect(await self._frame(request), Gossip)
        self._check_count(len(message.orders))
        peer = request.remote or "unknown"
        admitted = await self.admission.admit(message.orders, peer=peer)
        for status, count in _statuses(admitted.results).items():
            self.metrics.gossip_orders.inc(count, status=status)
        self._evicted(admitted)
        if admitted.accepted or admitted.evicted:
            self.log.info(
                "gossip_admitted",
                sender=message.sender,
                peer=peer,
                accepted=len(admitted.accepted),
                refused=_summary(admitted.results),
                evicted=admitted.evicted,
            )
        self.gossiper.publish(
            admitted.accepted,
            origin=message.origin,
            hops=message.hops + 1,
            came_from=message.sender,
        )
        return _message(request, OrdersAccepted(tuple(admitted.results)))

    def _evicted(self, admitted: Admitted) -> None:
        if admitted.evicted:
            self.metrics.evicted.inc(admitted.evicted)

    def _check_count(self, count: int) -> None:
        if count > self.limits.max_orders_per_request:
            raise TooManyOrders(count, self.limits.max_orders_per_request)

    async def book_snapshot(self, request: web.Request) -> web.Response:
        model = _model(request.match_info["model"])
        depth = _whole(request.query.get("depth", "100"), "depth")
        return _message(request, self.snapshot(BookQuery(model, depth)))

    def snapshot(self, query: BookQuery) -> BookSnapshot:
        return self.book.snapshot(query.model, min(query.depth, self.limits.max_book_depth))

    async def explain(self, request: web.Request) -> web.Response:
        req = _expect(await self._frame(request), ExplainRequest)
        explanation = self.book.explain(req.order)
        return _message(request, ExplainResponse(explanation))

    async def reputation_list(self, request: web.Request) -> web.Response:
        after = _address(request.query.get("after", ZERO_ADDRESS), "after")
        limit = _whole(request.query.get("limit", str(self.limits.max_reputations)), "limit")
        query = ReputationQuery((), after, limit)
        return _message(request, await self.reputations.answer(query))

    async def reputation_of(self, request: web.Request) -> web.Response:
        provider = _address(request.match_info["provider"], "providers")
        return _message(request, await self.reputations.answer(ReputationQuery((provider,))))

    async def lab_record(self, request: web.Request) -> web.Response:
        lab = _address(request.match_info["lab"], "labs")
        return _message(
            request, await self.reputations.answer(ReputationQuery(limit=1, labs=(lab,)))
        )

    async def reputation_query(self, request: web.Request) -> web.Response:
        query = _expect(await self._frame(request), ReputationQuery)
        return _message(request, await self.reputations.answer(query))

    async def stream(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=4 * self.limits.max_frame_size, heartbeat=30)
        ws.headers[RELAY_HEADER] = self.relay_id
        sub = self.hub.subscribe()  # before the handshake completes: no event falls between
        try:
            await ws.prepare(request)
        except BaseException:  # not a WebSocket handshake (refused 400), or the client left
            sub.close()
            raise
        lock = asyncio.Lock()
        peer = request.remote or "unknown"

        async def send(frame: bytes) -> None:
            async with lock:
                await ws.send_bytes(frame)

        async def forward() -> None:
            try:
                while (frame := await sub.next_frame()) is not None:
                    await send(frame)
                # 1008: fell too far behind; 1001: the relay is going away
                await ws.close(code=1008 if sub.overflowed else 1001, message=b"stream ended")
            except ConnectionResetError:
                return  # the subscriber went away; the reading side ends the handler

        forwarding = asyncio.create_task(forward())
        try:
            async for msg in ws:
                await send(encode(self._stream_reply(msg, peer)))
        except ConnectionResetError:
            pass  # the subscriber went away mid-reply
        finally:
            sub.close()
            forwarding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await forwarding
        return ws

    def _stream_reply(self, msg: WSMessage, peer: str) -> Message:
        try:
            self.client_limit.take({peer: 1})
            if msg.type is not WSMsgType.BINARY:
                return plain(400, ErrorCode.MALFORMED_FRAME, "stream frames are binary").body
            limit = self.limits.max_frame_size
            if len(msg.data) > limit:
                raise FrameTooLarge(len(msg.data), limit)
            return self.snapshot(_expect(decode(msg.data, max_size=limit), BookQuery))
        except MarketError as exc:
            answer = answer_for(exc)
            if answer is None:
                raise
            return answer.body

    async def prometheus(self, request: web.Request) -> web.Response:
        return web.Response(text=self.metrics.render(), content_type="text/plain")

    async def health(self, request: web.Request) -> web.Response:
        return health_response(self.metrics.chain, f"relay={self.relay_id}")

    async def _close_streams(self, app: web.Application) -> None:
        self.hub.close_all()


def _expect(message: Message, cls: type[M]) -> M:
    if not isinstance(message, cls):
        raise WrongMessageType(message.TYPE_NAME, cls.TYPE_NAME)
    return message


def _statuses(results: Sequence[OrderResult]) -> Counter[str]:
    """How many results have each status: the counters move once per status and request."""
    return Counter(result.status.value for result in results)


def _summary(results: Sequence[OrderResult]) -> str:
    refused = Counter(r.status.value for r in results if not r.accepted)
    return ",".join(f"{status}:{n}" for status, n in sorted(refused.items())) or "none"


def _model(raw: str) -> str:
    try:
        model: str = msgspec.convert(raw, GpuModel)
    except msgspec.ValidationError as exc:
        raise DecodeError(f"model must be a GPU model name: {exc}") from exc
    return model


def _whole(raw: str, name: str) -> int:
    if not raw.isdigit() or int(raw) > 2**32 - 1:
        raise DecodeError(f"{name} must be a whole number below 2^32, got {raw!r}")
    return int(raw)


def _address(raw: str, field: str) -> str:
    try:
        return checksum_address(raw)
    except ValueError as exc:
        raise InvalidField("ReputationQuery", field, str(exc)) from exc


def _message(request: web.Request, message: Message) -> web.Response:
    return respond(request, message)


def _respond(request: web.Request, answer: Answer) -> web.Response:
    return respond(request, answer.body, answer.status, answer.headers)


__all__ = ["RelayServer"]
