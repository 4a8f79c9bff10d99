"""Every refusal of a whole request as an ErrorResponse with a code, and its HTTP status.

Shared by the daemons' HTTP servers (the relay's and the provider agent's): :func:`answer_for`
maps a typed error to its :class:`Answer`, :class:`WrongMessageType` is a valid frame sent to an
endpoint that takes another type, and :func:`respond` / :func:`read_message` negotiate the
format: msgpack by default (what the daemons' clients send and read), JSON for a request whose
``Accept`` prefers ``application/json`` and a body sent as ``Content-Type: application/json``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from aiohttp import web

from market.errors import (
    DecodeError,
    FrameTooLarge,
    InvalidField,
    MarketError,
    RpcUnavailable,
    UnknownMessageType,
)
from nodes.errors import RateLimited, TooManyOrders
from nodes.wire.frames import (
    CONTENT_TYPE,
    JSON_CONTENT_TYPE,
    ReadAnswer,
    decode,
    decode_json,
    encode,
    encode_json,
)
from nodes.wire.messages import ErrorCode, ErrorResponse, Message


class WrongMessageType(DecodeError):
    """A valid frame of a type this endpoint does not take."""

    def __init__(self, got: str, expected: str) -> None:
        self.got = got
        self.expected = expected
        super().__init__(f"this endpoint takes {expected}, got {got}")


class ShuttingDown(MarketError):
    def __init__(self) -> None:
        super().__init__("the relay is shutting down; send this to another relay")


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: ErrorResponse
    headers: dict[str, str] = field(default_factory=dict)


def answer_for(exc: MarketError) -> Answer | None:
    """The answer to a request refused with ``exc``, or None if ``exc`` is not a refusal."""
    if isinstance(exc, FrameTooLarge):
        details: dict[str, int | str] = {"size": exc.size, "limit": exc.limit}
        return Answer(413, ErrorResponse(ErrorCode.FRAME_TOO_LARGE, str(exc), details))
    if isinstance(exc, TooManyOrders):
        details = {"count": exc.count, "limit": exc.limit}
        return Answer(413, ErrorResponse(ErrorCode.TOO_MANY_ORDERS, str(exc), details))
    if isinstance(exc, RateLimited):
        finite = math.isfinite(exc.retry_after_s)
        ms = math.ceil(exc.retry_after_s * 1000) if finite else -1
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))} if finite else {}
        body = ErrorResponse(
            ErrorCode.RATE_LIMITED, str(exc), {"key": exc.key, "retry_after_ms": ms}
        )
        return Answer(429, body, headers)
    if isinstance(exc, UnknownMessageType):
        details = {"type": str(exc.type_name)}
        return Answer(400, ErrorResponse(ErrorCode.UNKNOWN_TYPE, str(exc), details))
    if isinstance(exc, WrongMessageType):
        details = {"got": exc.got, "expected": exc.expected}
        return Answer(400, ErrorResponse(ErrorCode.WRONG_TYPE, str(exc), details))
    if isinstance(exc, DecodeError):
        return Answer(400, ErrorResponse(ErrorCode.MALFORMED_FRAME, str(exc)))
    if isinstance(exc, InvalidField):
        details = {"message_type": exc.message_type, "field": exc.field, "reason": exc.reason}
        return Answer(400, ErrorResponse(ErrorCode.INVALID_FIELD, str(exc), details))
    if isinstance(exc, RpcUnavailable):
        details = {"url": exc.url}
        return Answer(503, ErrorResponse(ErrorCode.CHAIN_UNAVAILABLE, str(exc), details))
    if isinstance(exc, ShuttingDown):
        return Answer(503, ErrorResponse(ErrorCode.SHUTTING_DOWN, str(exc)))
    return None


def plain(status: int, code: ErrorCode, message: str) -> Answer:
    return Answer(status, ErrorResponse(code, message))


def wants_json(accept: str | None) -> bool:
    """Whether an ``Accept`` header prefers JSON to msgpack (by quality, then order); msgpack
    when it names neither."""
    ranks: dict[str, tuple[float, int]] = {}
    for position, part in enumerate((accept or "").split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        ranks.setdefault(media.lower(), (quality, -position))
    json, msgpack = ranks.get(JSON_CONTENT_TYPE), ranks.get(CONTENT_TYPE)
    return json is not None and json[0] > 0 and (msgpack is None or json > msgpack)


def respond(
    request: web.BaseRequest,
    message: Message | ReadAnswer,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """``message`` as the answer to ``request``, in the format its ``Accept`` prefers."""
    if wants_json(request.headers.get("Accept")):
        body, media = encode_json(message), JSON_CONTENT_TYPE
    else:
        body, media = encode(message), CONTENT_TYPE
    return web.Response(status=status, body=body, content_type=media, headers=headers)


def read_message(request: web.BaseRequest, data: bytes, *, max_size: int) -> Message:
    """The message in a request's body: JSON when its ``Content-Type`` says so, else msgpack."""
    if request.content_type == JSON_CONTENT_TYPE:
        return decode_json(data, max_size=max_size)
    return decode(data, max_size=max_size)


__all__ = [
    "Answer",
    "ShuttingDown",
    "WrongMessageType",
    "answer_for",
    "plain",
    "read_message",
    "respond",
    "wants_json",
]
