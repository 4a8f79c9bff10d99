"""Fuzz every HTTP and WebSocket endpoint of a relay, a provider agent and a lab client.

python -m bench.fuzz [--frames 100000] [--seed 1] [--concurrency 24]   -> bench/results/fuzz.json

The three daemons run as processes on a devnet (:class:`nodes.localnet.LocalMarket`). Their
routes are read from their aiohttp apps' routers (:func:`routes`), so a route added later is fuzzed
too. Each frame (:mod:`bench.fuzz_frames`, seeded: the same seed sends the same frames) goes to a
route drawn at random: most with the route's own method and ``application/msgpack``, some with
another method, another content type, path parameters and query strings of the wrong shape, or
to a path no route serves; the relay's stream gets its frames over WebSocket, and every fifth
batch starts with a flood down one stream, faster than the relay's per-client rate, so that past
its burst it answers 429. Besides the frames drawn from the wire's strategies, orders signed for
this market (:func:`signed_orders`) travel in valid frames, and so reach admission past the
signature check (accepted into the book, duplicates, unfunded labs). A POST route's
``wrong_type`` refusal names the type it takes, and from then on half its valid frames are of
that type (learnt before the first frame, so the same seed sends the same frames).

Every answer must be a success (a frame that decodes, or the text of /metrics and /healthz) or a
refusal that :func:`nodes.wire.decode` reads as an ErrorResponse: a 5xx counts in ``errors_5xx``,
a refusal the client cannot decode in ``undecodable_refusals``; a 429 is a typed refusal like
any other. After each batch every daemon must still be
running and answer ``/healthz``. Each daemon's resident memory (VmRSS) is read before, at every
batch and after: ``rss_growth_mb`` is the largest growth of the three, first sample to last;
``rss_growth_second_half_mb`` the growth from the campaign's middle to its end (a leak keeps
growing there; warming caches do not).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import random
import re
import tempfile
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import yarl
from aiohttp import web

from bench.fuzz_frames import FrameMaker, order_frames, valid_pool
from bench.results_file import write
from market.chain.devnet import Devnet
from market.errors import ProtocolError
from market.protocol import codec
from market.protocol.types import Bid, Offer, Signed
from market.roles import Lab, Provider
from nodes.lab.server import LabServer
from nodes.localnet import Daemon, LocalMarket, command_job
from nodes.metrics import Metrics
from nodes.provider.service import MAX_REQUEST, ProviderService
from nodes.relay.config import Limits
from nodes.relay.server import RelayServer
from nodes.wire import (
    MAX_FRAME_SIZE,
    BookChange,
    BookQuery,
    ErrorCode,
    ErrorResponse,
    Fill,
    LeaseOpened,
    OrdersAccepted,
    decode,
    encode,
)
from nodes.wire.frames import READ_ANSWERS, decode_read

WEBSOCKETS = frozenset({("relay", "/v1/stream")})
TEXT_ROUTES = frozenset({"/metrics", "/healthz"})
PAGE_ROUTES = frozenset({"/", "/explorer/", "/explorer/{file}"})
PAGE_TYPES = frozenset({"text/html", "text/css", "text/javascript", "application/javascript"})


def _decode_answer(data: bytes) -> Any:
    """A daemon's answer: a wire message, or one of the relay's read answers (a closed set of its
    own, told apart by the frame's ``type``)."""
    limit = 64 * 1024 * 1024
    type_name, _ = codec.open_frame(data, max_size=limit, where="frame")
    if isinstance(type_name, str) and type_name in READ_ANSWERS:
        return decode_read(data, READ_ANSWERS[type_name], max_size=limit)  # type: ignore[type-var]
    return decode(data, max_size=limit)


METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")
CONTENT_TYPES = ("application/json", "text/plain", "", "multipart/form-data; boundary=x",
                 "application/x-www-form-urlencoded", "application/msgpack; q=2")  # fmt: skip
PARAM_VALUES = ("H100-80GB", "0x" + "11" * 20, "0x" + "ab" * 20, "", "-1", "0", "1",
                "99999999999999999999", "4294967296", "a" * 2000, "%00", "..", "\u00e9\u4e2d",
                "0x" + "zz" * 20, "\x00", " ", "1e9", "NaN")  # fmt: skip
QUERY_KEYS = ("depth", "after", "limit", "x", "depth[]")
BATCH = 2000
FLOOD = 1500
FLOOD_EVERY = 5
"""Every fifth batch, 1,500 of its frames go back to back down one stream (:meth:`_flood`)."""
TIMEOUT_S = 30.0
WEBSOCKETS_OPEN = 4
STREAM_CAP = 4 * MAX_FRAME_SIZE
"""The relay's stream closes (1009, message too big) on a message past this, unread; the
campaign's stream frames stay under it (a larger one is sent as ``MAX_FRAME_SIZE + 1`` bytes,
answered ``frame_too_large``), and the close has its own test."""
STREAM_EVENTS = (BookChange, Fill, LeaseOpened)
"""What the relay pushes down a stream unasked, between its answers."""
SIGNED_ORDERS = 100
ORDER_EXPIRY = 2**40


@dataclass(frozen=True)
class Route:
    daemon: str
    method: str
    path: str
    """aiohttp's formatter: ``/v1/book/{model}``."""


def routes(daemon: str, app: web.Application) -> list[Route]:
    """The routes ``app`` serves (HEAD, which aiohttp adds to each GET, left out: it answers
    without a body)."""
    found = []
    for resource in app.router.resources():
        info = resource.get_info()
        path = str(info.get("formatter") or info.get("path"))
        for route in resource:
            if route.method != "HEAD":
                found.append(Route(daemon, route.method, path))
    return found


def _bare(cls: type, **attrs: object) -> object:
    """An instance of ``cls`` holding only ``attrs``: enough to build its app's router."""
    obj: object = object.__new__(cls)
    for name, value in attrs.items():
        setattr(obj, name, value)
    return obj


_NO_CHAIN = SimpleNamespace(client=None)
"""What the relay's explorer reads the chain through, for building its router only."""


def daemon_routes() -> list[Route]:
    """Every route of the three daemons, from their own apps."""
    timing = Metrics()  # the apps put its route-latency middleware first
    relay = RelayServer.app(
        _bare(
            RelayServer, limits=Limits(), metrics=timing, book=None, hub=None, reputations=_NO_CHAIN
        )  # type: ignore[arg-type]
    )
    provider = ProviderService.app(_bare(ProviderService, metrics=timing))  # type: ignore[arg-type]
    lab = LabServer.app(_bare(LabServer, metrics=timing))  # type: ignore[arg-type]
    return [*routes("relay", relay), *routes("provider", provider), *routes("lab", lab)]


@dataclass
class Tally:
    frames: int = 0
    errors_5xx: int = 0
    undecodable_refusals: int = 0
    undecodable_successes: int = 0
    timeouts: int = 0
    connection_errors: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    orders: Counter[str] = field(default_factory=Counter)
    stream_events: int = 0
    """What became of each order in an OrdersAccepted answer."""
    samples: list[str] = field(default_factory=list)

    def bad(self, what: str) -> None:
        if len(self.samples) < 20:
            self.samples.append(what)


@dataclass
class Campaign:
    urls: dict[str, str]
    routes: list[Route]
    seed: int
    concurrency: int = 24
    batch: int = BATCH
    flood_every: int = FLOOD_EVERY
    orders: Sequence[Signed[Offer] | Signed[Bid]] = ()
    """Orders signed for this market, sent in valid frames and mutated like the rest."""
    tally: Tally = field(default_factory=Tally)
    expected: dict[Route, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        pool = valid_pool(self.seed, 400)
        if self.orders:
            pool += order_frames(random.Random(self.seed), self.orders, 100)
        self.makers = {
            "relay": FrameMaker(random.Random(self.seed + 1), pool, MAX_FRAME_SIZE),
            "provider": FrameMaker(random.Random(self.seed + 2), pool, MAX_REQUEST),
            "lab": FrameMaker(random.Random(self.seed + 3), pool, MAX_FRAME_SIZE),
        }
        self.sha = hashlib.sha256()
        self.ws: asyncio.Queue[aiohttp.ClientWebSocketResponse] = asyncio.Queue()

    # --- one frame -------------------------------------------------------------------------

    def _url(self, route: Route) -> tuple[str, yarl.URL]:
        rng = self.rng
        method = route.method
        if rng.random() < 0.08:
            method = rng.choice([m for m in METHODS if m != route.method])
        path = route.path
        if rng.random() < 0.03:  # a path no route serves
            path = rng.choice(["/", "/v1", "/v2/orders", route.path + "/x", "/v1/../metrics",
                               "/" + "a" * 1500, "/v1/%ff", "/%00"])  # fmt: skip
        for name in re.findall(r"\{(\w+)\}", path):
            value = rng.choice(PARAM_VALUES)
            path = path.replace("{" + name + "}", urllib.parse.quote(value, safe=""))
        query = ""
        if method == "GET" and rng.random() < 0.5:
            pairs = [(rng.choice(QUERY_KEYS), rng.choice(PARAM_VALUES)) for _ in range(2)]
            query = "?" + urllib.parse.urlencode(pairs)
        return method, yarl.URL(self.urls[route.daemon] + path + query, encoded=True)

    async def _http(self, session: aiohttp.ClientSession, route: Route) -> None:
        method, url = self._url(route)
        maker = self.makers[route.daemon]
        kind, body = maker.frame(self.expected.get(route))
        if method in ("GET", "OPTIONS") and self.rng.random() < 0.8:
            kind, body = "no_body", b""
        headers = {"Content-Type": "application/msgpack"}
        if self.rng.random() < 0.1:
            headers["Content-Type"] = self.rng.choice(CONTENT_TYPES)
        self.tally.kinds[kind] += 1
        self._digest(method, f"{route.daemon}{url.raw_path_qs}", headers["Content-Type"], body)
        what = f"{method} {url} kind={kind}"
        try:
            # aiohttp warns of a big body in bytes; a stream of it is sent the same
            data = io.BytesIO(body) if len(body) > 512 * 1024 else body
            async with session.request(method, url, data=data, headers=headers) as resp:
                answer = await resp.read()
                self._judge(url.path, what, resp.status, resp.content_type, answer)
        except TimeoutError:
            self.tally.timeouts += 1
            self.tally.bad(f"timeout: {what}")
        except aiohttp.ClientError as exc:
            self.tally.connection_errors += 1
            self.tally.bad(f"{type(exc).__name__}: {what}")

    def _digest(self, method: str, where: str, content_type: str, body: bytes) -> None:
        """Fold a frame, as generated, into ``frames_sha256``: equal for equal seeds."""
        for part in (method, where, content_type):
            self.sha.update(part.encode() + b"\x00")
        self.sha.update(len(body).to_bytes(8, "big") + body)

    def _judge(self, path: str, what: str, status: int, ctype: str, data: bytes) -> None:
        t = self.tally
        t.frames += 1
        t.statuses[str(status)] += 1
        if status >= 500:
            t.errors_5xx += 1
            t.bad(f"{status}: {what}: {data[:200]!r}")
        if status < 400 and path in TEXT_ROUTES and ctype == "text/plain":
            return
        if status < 400 and path in PAGE_ROUTES and ctype in PAGE_TYPES:
            return  # the explorer's page and its files, for a browser
        try:
            message = _decode_answer(data)
        except ProtocolError as exc:
            if status < 400:
                t.undecodable_successes += 1
            else:
                t.undecodable_refusals += 1
            t.bad(f"undecodable {status}: {what}: {exc}: {data[:200]!r}")
            return
        if isinstance(message, ErrorResponse):
            t.codes[message.code.value] += 1
            if status < 400:
                t.undecodable_successes += 1
                t.bad(f"an ErrorResponse with {status}: {what}")
        elif isinstance(message, OrdersAccepted):
            t.orders.update(r.status.value for r in message.results)
        if status >= 400 and not isinstance(message, ErrorResponse):
            t.undecodable_refusals += 1
            t.bad(f"a {message.TYPE_NAME} with {status}: {what}")

    async def _stream(self, route: Route) -> None:
        maker = self.makers["relay"]
        rng = self.rng
        if rng.random() < 0.05:
            kind, text = "text", rng.choice(["", "{}", "hello", "\x00" * 100])
            payload: bytes | str = text
        else:
            kind, payload = maker.frame("BookQuery")
            if len(payload) > MAX_FRAME_SIZE:  # kept under the stream's cap (STREAM_CAP)
                kind, payload = "oversize", b"\x00" * (MAX_FRAME_SIZE + 1)
        self.tally.kinds[f"ws_{kind}"] += 1
        self._digest(
            "WS", route.path, "", payload.encode() if isinstance(payload, str) else payload
        )
        ws = await self.ws.get()
        try:
            if isinstance(payload, str):
                await ws.send_str(payload)
            else:
                await ws.send_bytes(payload)
            msg = await self._answer(ws)
            if not self._judge_stream(route, f"WS {route.path} kind={kind}", msg, ws):
                ws = await self._reopen(ws)
        except TimeoutError:
            self.tally.timeouts += 1
            ws = await self._reopen(ws)
        except (aiohttp.ClientError, ConnectionError) as exc:  # the stream closed first
            self.tally.connection_errors += 1
            why = f"close {ws.close_code}, {ws.exception()!r}"
            self.tally.bad(f"{type(exc).__name__} ({why}): WS kind={kind}")
            ws = await self._reopen(ws)
        finally:
            self.ws.put_nowait(ws)

    async def _answer(self, ws: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMessage:
        """The stream's answer to a frame, past the book and lease events it pushes meanwhile
        (counted in ``stream_events``)."""
        while True:
            msg = await ws.receive(TIMEOUT_S)
            if msg.type is aiohttp.WSMsgType.BINARY:
                try:
                    if isinstance(decode(msg.data), STREAM_EVENTS):
                        self.tally.stream_events += 1
                        continue
                except ProtocolError:
                    pass  # judged as the answer
            return msg

    def _judge_stream(self, route: Route, what: str, msg: aiohttp.WSMessage,
                      ws: aiohttp.ClientWebSocketResponse) -> bool:  # fmt: skip
        """Judge a stream answer as an HTTP one (an ErrorResponse a refusal, anything else a
        success); False if the stream closed instead of answering."""
        if msg.type is not aiohttp.WSMsgType.BINARY:
            self.tally.frames += 1
            self.tally.undecodable_refusals += 1
            why = f"close {ws.close_code}, {ws.exception()!r}, {msg.data!r}"
            self.tally.bad(f"stream answered {msg.type.name} ({why}): {what}")
            return False
        status = 200
        try:
            decoded = decode(msg.data)
            if isinstance(decoded, ErrorResponse):
                rate_limited = decoded.code is ErrorCode.RATE_LIMITED
                status = 429 if rate_limited else 400
        except ProtocolError:
            status = 400
        self._judge(route.path, what, status, "application/msgpack", msg.data)
        return True

    async def _reopen(self, ws: aiohttp.ClientWebSocketResponse) -> aiohttp.ClientWebSocketResponse:
        await ws.close()
        assert self._session is not None
        return await self._session.ws_connect(self.urls["relay"] + "/v1/stream")

    # --- the campaign ----------------------------------------------------------------------

    async def run(self, frames: int, between: Callable[[int], None]) -> None:
        """Send ``frames`` frames in batches; ``between(done)`` runs after each batch."""
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
        conn = aiohttp.TCPConnector(limit=self.concurrency)
        async with aiohttp.ClientSession(timeout=timeout, connector=conn) as session:
            self._session = session
            # The relay's own reads follow its stream too (bids' fates): only the campaign's
            # subscriptions must be gone at the end.
            baseline = await self._subscriber_count(session)
            for _ in range(WEBSOCKETS_OPEN):
                ws = await session.ws_connect(self.urls["relay"] + "/v1/stream")
                probe = encode(BookQuery("H100-80GB", 1))
                await ws.send_bytes(probe)
                decode((await ws.receive(TIMEOUT_S)).data)
                self.ws.put_nowait(ws)
            await self._learn(session)
            sent = 0
            batch = 0
            while sent < frames:
                n = min(self.batch, frames - sent)
                flooding = batch % self.flood_every == self.flood_every - 1
                flood = min(FLOOD, n * 3 // 4) if flooding else 0
                plan = iter([self.rng.choice(self.routes) for _ in range(n - flood)])
                await self._flood(flood)  # alone: the relay's CPU all goes to outrunning its rate
                await asyncio.gather(
                    *(self._worker(session, plan) for _ in range(self.concurrency))
                )
                sent += n
                batch += 1
                await self._healthy(session)
                between(sent)
            while not self.ws.empty():
                await self.ws.get_nowait().close()
            self.subscribers_left = await self._subscribers(session, baseline)

    async def _subscriber_count(self, session: aiohttp.ClientSession) -> int:
        """The relay's stream subscribers now, from its metrics (-1: not found)."""
        async with session.get(self.urls["relay"] + "/metrics") as resp:
            text = await resp.text()
        found = re.search(r"^gpumarket_relay_stream_subscribers (\S+)$", text, re.M)
        return int(float(found.group(1))) if found else -1

    async def _subscribers(self, session: aiohttp.ClientSession, baseline: int) -> int:
        """The campaign's stream subscriptions left once every stream of the campaign has closed
        (each closes on the relay a moment after the client closes it), within a deadline."""
        deadline = time.monotonic() + 10.0
        while True:
            count = await self._subscriber_count(session)
            if count == baseline or time.monotonic() > deadline:
                return count - baseline if count >= 0 and baseline >= 0 else -1
            await asyncio.sleep(0.1)

    async def _flood(self, n: int) -> None:
        """``n`` stream frames sent back to back, their answers read as they come: faster than the
        relay's per-client rate, so past its burst it answers 429 (``rate_limited``)."""
        if n == 0:
            return
        route = Route("relay", "GET", "/v1/stream")
        payloads = []
        for _ in range(n):
            kind, payload = self.makers["relay"].frame()  # mostly refused: cheap to answer
            if len(payload) > MAX_FRAME_SIZE:  # a flood of megabytes would time the loopback
                kind, payload = "one_byte", b"\x00"
            self.tally.kinds[f"ws_flood_{kind}"] += 1
            self._digest("WS", route.path, "", payload)
            payloads.append((kind, payload))
        ws = await self.ws.get()

        async def send() -> None:
            for _, payload in payloads:
                await ws.send_bytes(payload)

        async def read() -> bool:  # alongside the sending: answers (snapshots) can be large
            for kind, _ in payloads:
                msg = await self._answer(ws)
                if not self._judge_stream(route, f"WS flood kind={kind}", msg, ws):
                    return False
            return True

        try:
            _, answered = await asyncio.gather(send(), read())
            if not answered:
                ws = await self._reopen(ws)
        finally:
            self.ws.put_nowait(ws)

    async def _learn(self, session: aiohttp.ClientSession) -> None:
        """Each POST route's message type, from the ``wrong_type`` refusal of another type."""
        probe = encode(ErrorResponse(ErrorCode.INTERNAL, "which type do you take?"))
        for route in self.routes:
            if route.method == "POST":
                url = self.urls[route.daemon] + route.path
                async with session.post(url, data=probe) as resp:
                    answer = decode(await resp.read())
                if isinstance(answer, ErrorResponse) and answer.code is ErrorCode.WRONG_TYPE:
                    self.expected[route] = str(answer.details["expected"])

    async def _worker(self, session: aiohttp.ClientSession, plan: Iterator[Route]) -> None:
        for route in plan:
            socket = (route.daemon, route.path) in WEBSOCKETS and route.method == "GET"
            if socket and self.rng.random() < 0.9:
                await self._stream(route)
            else:
                await self._http(session, route)

    async def _healthy(self, session: aiohttp.ClientSession) -> None:
        for daemon, url in self.urls.items():
            async with session.get(url + "/healthz") as resp:
                if resp.status != 200:
                    raise RuntimeError(f"{daemon} answered /healthz with {resp.status}")

    _session: aiohttp.ClientSession | None = None
    subscribers_left = -1


def rss_mb(pid: int) -> float:
    """The resident memory of process ``pid``, in MiB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def _lab_url(lab: Daemon) -> str:
    return lab.ready_field("metrics").removesuffix("/metrics")


def signed_orders(net: LocalMarket, count: int) -> list[Signed[Offer] | Signed[Bid]]:
    """Orders for the campaign's market: ``count`` offers by the running provider's key
    (registered and staked) and ``count`` bids by the running lab's key (funded), priced never
    to cross, so they rest in the book; and ``count`` bids by a key that holds nothing
    (``lab_unfunded``)."""
    d = net.contracts.deployment
    provider = Provider.connect(d, "0x" + net.provider_account(0).key.hex())
    lab, broke = (Lab.connect(d, "0x" + net.lab_account(i).key.hex()) for i in (0, 1))
    # A fixed expiry and nonces, so that the same devnet gives the same signed bytes.
    orders: list[Signed[Offer] | Signed[Bid]] = []
    for i in range(count):
        offer = provider.offer("H100-80GB", gpus=1 + i % 8, memory_gib=80,
                               price_per_gpu_second=10**6, min_duration=5, max_duration=3600,
                               nonce=i).message  # fmt: skip
        orders.append(
            provider.key.sign(provider.client.domain, replace(offer, expiry=ORDER_EXPIRY))
        )
        for who in (lab, broke):
            bid = who.bid("H100-80GB", gpus=1 + i % 4, max_price_per_gpu_second=1, duration=60,
                          nonce=i).message  # fmt: skip
            orders.append(who.key.sign(who.client.domain, replace(bid, expiry=ORDER_EXPIRY)))
    return orders


def start_daemons(net: LocalMarket) -> dict[str, Daemon]:
    """A relay, a provider agent (H100s) and a lab (whose one bid, for an A100, rests unmatched)."""
    relay = net.start_relay()
    provider = net.start_provider(0, [relay.url], model="H100-80GB")
    job = command_job("A100-80GB", ["/bin/true"], gpus=1, duration=60)
    lab = net.start_lab(0, [relay.url], [job], exit_when_done=False)
    return {"relay": relay, "provider": provider, "lab": lab}


Figures = dict[str, float | int | str]


def fuzz(daemons: dict[str, Daemon], frames: int, seed: int, concurrency: int = 24,
         batch: int = BATCH, flood_every: int = FLOOD_EVERY,
         orders: Sequence[Signed[Offer] | Signed[Bid]] = ()) -> Figures:  # fmt: skip
    """The campaign against running ``daemons``; its figures. After every ``batch`` frames each
    daemon must be running and healthy; every ``flood_every``-th batch floods the stream;
    ``orders`` (:func:`signed_orders`) join the valid frames."""
    urls = {"relay": daemons["relay"].url, "provider": daemons["provider"].url,
            "lab": _lab_url(daemons["lab"])}  # fmt: skip
    pids = {name: d.proc.pid for name, d in daemons.items() if d.proc is not None}
    campaign = Campaign(urls, daemon_routes(), seed, concurrency, batch, flood_every, orders)
    first = {name: rss_mb(pid) for name, pid in pids.items()}
    middle: dict[str, float] = {}
    peak = dict(first)

    def between(done: int) -> None:
        for name, d in daemons.items():
            if not d.running:
                raise RuntimeError(f"{name} died after {done} frames; see {d.log}")
            peak[name] = max(peak[name], rss_mb(pids[name]))
        if not middle and done >= frames // 2:
            middle.update({name: rss_mb(pid) for name, pid in pids.items()})

    t0 = time.perf_counter()
    asyncio.run(campaign.run(frames, between))
    elapsed = time.perf_counter() - t0
    last = {name: rss_mb(pid) for name, pid in pids.items()}
    t = campaign.tally
    figures: Figures = {
        "frames": t.frames,
        "errors_5xx": t.errors_5xx,
        "undecodable_refusals": t.undecodable_refusals,
        "undecodable_successes": t.undecodable_successes,
        "timeouts": t.timeouts,
        "connection_errors": t.connection_errors,
        "seed": seed,
        "frames_sha256": campaign.sha.hexdigest(),
        "seconds": round(elapsed, 1),
        "frames_per_s": round(t.frames / elapsed, 1),
        "rate_limited_429": t.statuses["429"],
        "stream_subscribers_left": campaign.subscribers_left,
        "routes": len(campaign.routes),
        "route_list": " ".join(f"{r.daemon}:{r.method}:{r.path}" for r in campaign.routes),
        "statuses": _counts(t.statuses),
        "refusal_codes": _counts(t.codes),
        "frame_kinds": _counts(t.kinds),
        "order_results": _counts(t.orders),
        "stream_events": t.stream_events,
        "rss_growth_mb": round(max(last[n] - first[n] for n in pids), 1),
        "rss_growth_second_half_mb": round(max(last[n] - middle.get(n, last[n]) for n in pids), 1),
    }
    for name in pids:
        figures[f"rss_{name}_first_mb"] = round(first[name], 1)
        figures[f"rss_{name}_peak_mb"] = round(peak[name], 1)
        figures[f"rss_{name}_last_mb"] = round(last[name], 1)
        figures[f"rss_growth_{name}_mb"] = round(last[name] - first[name], 1)
        figures[f"rss_growth_{name}_second_half_mb"] = round(
            last[name] - middle.get(name, last[name]), 1
        )
    if t.samples:
        figures["first_failures"] = " | ".join(t.samples)
    return figures


def _counts(counter: Counter[str]) -> str:
    return ",".join(f"{k}:{v}" for k, v in sorted(counter.items()))


def run(frames: int, seed: int, concurrency: int) -> Figures:
    folder = Path(tempfile.mkdtemp(prefix="gpumarket-fuzz-"))
    with Devnet.start(accounts=12) as dev:
        net = LocalMarket(dev, folder)
        try:
            daemons = start_daemons(net)
            orders = signed_orders(net, SIGNED_ORDERS)
            return fuzz(daemons, frames, seed, concurrency, orders=orders)
        finally:
            net.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=24)
    args = parser.parse_args()
    figures = run(args.frames, args.seed, args.concurrency)
    for key, value in figures.items():
        print(f"{key}: {value}")
    print(f"wrote {write('fuzz', figures)}")


if __name__ == "__main__":
    main()
