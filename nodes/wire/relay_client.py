"""``RelayClient``: talking to a relay over HTTP and its event stream (aiohttp), with a timeout
on every call.

    async with RelayClient("http://127.0.0.1:7400") as relay:
        results = await relay.submit([Submission(signed_bid)])
        snapshot = await relay.book("H100-80GB")
        why = await relay.explain(signed_bid.message)   # or an unsigned order, as a dry run
        report = await relay.reputation(provider)      # or every provider: relay.reputation()
        async with relay.stream() as events:
            change = await events.receive()

An ErrorResponse from the relay raises :class:`~nodes.errors.RequestRefused` with its code and
details; no answer in time, or a broken connection, raises
:class:`~nodes.errors.PeerUnavailable`. Answers are decoded by the one validating decoder.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Self, TypeVar
from urllib.parse import quote

import aiohttp

from market.matching import Explanation, Submission
from market.protocol.types import Bid, Offer
from market.reputation import LabRecord
from nodes.errors import PeerUnavailable, RequestRefused
from nodes.wire.frames import MAX_FRAME_SIZE, decode, encode
from nodes.wire.http import DEFAULT_TIMEOUT_S, HttpPeer, raise_refused
from nodes.wire.messages import (
    ZERO_ADDRESS,
    BookSnapshot,
    ExplainRequest,
    ExplainResponse,
    Gossip,
    Message,
    OrderResult,
    OrdersAccepted,
    ReputationQuery,
    ReputationReport,
    SubmitOrders,
)

RELAY_HEADER = "X-Gpumarket-Relay"
"""Every relay answer names the relay's id here (peers learn each other's ids from it)."""
M = TypeVar("M", bound=Message)


class RelayClient(HttpPeer):
    def __init__(
        self,
        url: str,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_frame_size: int = MAX_FRAME_SIZE,
    ) -> None:
        super().__init__(url, session=session, timeout_s=timeout_s)
        self.max_frame_size = max_frame_size
        self.relay_id: str | None = None

    # --- the API -------------------------------------------------------------------------------

    async def submit(self, orders: Sequence[Submission]) -> tuple[OrderResult, ...]:
        """Submit signed orders; one result per order, in order."""
        answer = await self._expect(
            "POST", "/v1/orders", SubmitOrders(tuple(orders)), OrdersAccepted
        )
        return answer.results

    async def gossip(self, message: Gossip) -> tuple[OrderResult, ...]:
        return (await self._expect("POST", "/v1/gossip", message, OrdersAccepted)).results

    async def book(self, model: str, depth: int = 100) -> BookSnapshot:
        path = f"/v1/book/{quote(model, safe='')}?depth={depth}"
        return await self._expect("GET", path, None, BookSnapshot)

    async def explain(self, order: Offer | Bid) -> Explanation:
        """Why ``order`` (resting, or a dry run not in the book) does not match, on its own
        signed terms, with the nearest changes that would."""
        request = ExplainRequest(order)
        return (await self._expect("POST", "/v1/explain", request, ExplainResponse)).explanation

    async def reputation(self, provider: str | None = None) -> ReputationReport:
        """``provider``'s figures (zero for one without history), or every provider's, in address
        order, page by page. Each page is as of the relay's head when it was asked; the report
        names the first page's ``from_block`` and the last page's ``to_block``."""
        if provider is not None:
            path = f"/v1/reputation/{quote(provider, safe='')}"
            return await self._expect("GET", path, None, ReputationReport)
        return await self._pages(
            lambda after: self._expect(
                "GET", f"/v1/reputation?after={after}", None, ReputationReport
            )
        )

    async def reputations(self, providers: Sequence[str]) -> ReputationReport:
        """The figures of the named providers, in address order (page by page, like
        :meth:`reputation`)."""
        return await self._pages(
            lambda after: self._expect(
                "POST",
                "/v1/reputation",
                ReputationQuery(tuple(providers), after),
                ReputationReport,
            )
        )

    async def lab_record(self, lab: str) -> LabRecord:
        """``lab``'s dispute record (zero for one without history), as of the relay's head."""
        report = await self._expect(
            "GET", f"/v1/labs/{quote(lab, safe='')}", None, ReputationReport
        )
        if len(report.labs) != 1:
            raise RequestRefused("bad_answer", f"{len(report.labs)} lab records for {lab}", {})
        return report.labs[0]

    async def _pages(self, fetch: Callable[[str], Awaitable[ReputationReport]]) -> ReputationReport:
        pages = [await fetch(ZERO_ADDRESS)]
        after = ZERO_ADDRESS
        while (cursor := pages[-1].next_after) != ZERO_ADDRESS:
            if cursor.lower() <= after.lower():  # a relay must not page backwards (or forever)
                raise RequestRefused("bad_page", f"page cursor {cursor} is not after {after}", {})
            after = cursor
            pages.append(await fetch(after))
        everyone = tuple(r for page in pages for r in page.reputations)
        return ReputationReport(pages[0].from_block, pages[-1].to_block, everyone)

    async def text(self, path: str) -> str:
        """A plain-text endpoint (``/metrics``, ``/healthz``)."""
        status, data = await self.raw("GET", path)
        if status != 200:
            raise_refused(status, data, self.max_frame_size)
        return data.decode()

    def stream(self) -> RelayStream:
        """The relay's event stream, to use with ``async with``."""
        return RelayStream(self)

    # --- plumbing ------------------------------------------------------------------------------

    async def _expect(self, method: str, path: str, message: Message | None, cls: type[M]) -> M:
        status, data = await self.raw(method, path, None if message is None else encode(message))
        if status != 200:
            raise_refused(status, data, self.max_frame_size)
        answer = decode(data, max_size=self.max_frame_size)
        if not isinstance(answer, cls):
            raise RequestRefused("wrong_type", f"expected {cls.TYPE_NAME}", {}, status)
        return answer

    async def raw(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        """Send ``body`` as is and return (HTTP status, answer bytes); for tests of bad input."""

        def seen(headers: Mapping[str, str]) -> None:
            self.relay_id = headers.get(RELAY_HEADER, self.relay_id)

        return await self.request(
            method, path, body, max_size=self.max_frame_size, headers_seen=seen
        )


class RelayStream:
    """Book and lease events as the relay publishes them; a BookQuery sent on the stream is
    answered with a BookSnapshot in line with the events."""

    def __init__(self, client: RelayClient) -> None:
        self.client = client
        self._ws: aiohttp.ClientWebSocketResponse | None = None

    @property
    def ws(self) -> aiohttp.ClientWebSocketResponse:
        if self._ws is None:
            raise RuntimeError("use the stream inside `async with`")
        return self._ws

    async def __aenter__(self) -> Self:
        c = self.client
        try:
            self._ws = await c.session.ws_connect(
                c.url + "/v1/stream",
                max_msg_size=4 * c.max_frame_size,
                timeout=aiohttp.ClientWSTimeout(ws_close=c.timeout.total),
            )
        except aiohttp.WSServerHandshakeError as exc:
            raise RequestRefused("handshake_refused", exc.message, {}, exc.status) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PeerUnavailable(c.url, f"{type(exc).__name__}: {exc}") from exc
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.ws.close()

    async def send(self, message: Message) -> None:
        await self.send_raw(encode(message))

    async def send_raw(self, data: bytes) -> None:
        await self.ws.send_bytes(data)

    async def receive(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> Message:
        """The next frame's message; raises PeerUnavailable once the stream is closed."""
        try:
            msg = await self.ws.receive(timeout=timeout_s)
        except TimeoutError as exc:
            raise PeerUnavailable(self.client.url, f"no stream event in {timeout_s}s") from exc
        if msg.type is aiohttp.WSMsgType.BINARY:
            return decode(msg.data, max_size=self.client.max_frame_size)
        raise PeerUnavailable(
            self.client.url, f"stream ended ({msg.type.name}, close code {self.ws.close_code})"
        )


__all__ = ["DEFAULT_TIMEOUT_S", "RELAY_HEADER", "RelayClient", "RelayStream"]
