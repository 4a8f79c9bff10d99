"""The daemons' HTTP clients' common part (aiohttp): a session, a timeout, bounded answers.

:class:`HttpPeer` holds one session (its own, closed with it, or one shared by the caller and
left open), puts a timeout on every call, reads an answer no further than a size limit
(:class:`~market.errors.FrameTooLarge` past it, checked against the declared length first), and
turns a broken connection or no answer in time into :class:`~nodes.errors.PeerUnavailable`.
:func:`raise_refused` turns an error answer into the typed refusal it carries. The relay's
client and a lab's client of its provider are built on it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Final, Self

import aiohttp
from multidict import CIMultiDictProxy

from market.errors import FrameTooLarge
from nodes.errors import PeerUnavailable, RequestRefused
from nodes.wire.frames import CONTENT_TYPE, MAX_FRAME_SIZE, decode
from nodes.wire.messages import ErrorResponse

DEFAULT_TIMEOUT_S: Final = 10.0


class HttpPeer:
    def __init__(
        self,
        url: str,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session = session
        self._owns_session = session is None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        *,
        max_size: int = MAX_FRAME_SIZE,
        headers_seen: Callable[[CIMultiDictProxy[str]], None] | None = None,
    ) -> tuple[int, bytes]:
        """Send ``body`` as is; (HTTP status, answer bytes), at most ``max_size`` of them."""
        headers = {"Content-Type": CONTENT_TYPE} if body is not None else {}
        try:
            async with self.session.request(
                method, self.url + path, data=body, headers=headers, timeout=self.timeout
            ) as response:
                if headers_seen is not None:
                    headers_seen(response.headers)
                declared = response.content_length
                if declared is not None and declared > max_size:
                    raise FrameTooLarge(declared, max_size)
                data = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    data += chunk
                    if len(data) > max_size:
                        raise FrameTooLarge(len(data), max_size)
                return response.status, bytes(data)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PeerUnavailable(self.url, f"{type(exc).__name__}: {exc}") from exc


def raise_refused(
    status: int,
    data: bytes,
    max_size: int = MAX_FRAME_SIZE,
    by_code: Mapping[str, type[RequestRefused]] | None = None,
) -> None:
    """Raise the typed refusal an error answer carries (``by_code`` picks a subclass per code;
    DecodeError for a malformed answer)."""
    answer = decode(data, max_size=max_size)
    if isinstance(answer, ErrorResponse):
        cls = (by_code or {}).get(answer.code.value, RequestRefused)
        raise cls(answer.code.value, answer.message, answer.details, status)
    raise RequestRefused(
        "unexpected_answer", f"HTTP {status} with a {answer.TYPE_NAME}", {}, status
    )


__all__ = ["DEFAULT_TIMEOUT_S", "HttpPeer", "raise_refused"]
