"""Encoding daemon messages into frames, and the one validating decoder, in msgpack and in JSON.

A frame is the envelope of ``market.protocol.codec``, ``{v, type, body}``, whose body is a
message of ``messages.py`` (its camelCase keys, in its fields' order). msgpack is what the
daemons send; JSON is the same frame for a person or a browser, with every bin written as a
0x-hex string (the codec frames of orders included) and addresses as their EIP-55 strings.

:func:`decode` refuses, with typed errors and before acting on anything: a frame longer than
``max_size`` (FrameTooLarge, checked before parsing), bytes that are not one msgpack value
(DecodeError: truncated, trailing bytes, reserved codes, extension types, non-str or repeated map
keys), another version, a ``type`` outside the closed set (UnknownMessageType), a missing or
unexpected key, a value of the wrong msgpack type, size or range (DecodeError, naming its path),
and an order or value that breaks a protocol rule (InvalidField, naming its path). Every body key
is required; the body's repeated or missing keys are found by its map's header count. Inside the
body, a value left out where the message declares a default takes it, and of a repeated key the
last counts; the orders themselves are codec frames, strict at every level.

The relay's answers to a person's reads (``reads.py``'s and ``explorer.py``'s, :data:`ReadAnswer`)
are framed by the same machinery: :func:`encode` and :func:`encode_json` take them too, and
:func:`decode_read` / :func:`decode_read_json` decode the one answer a client expects, with the
same checks. They stay outside the daemons' closed set: :func:`decode` refuses them.
"""

from __future__ import annotations

from typing import Final, TypeAlias, TypeVar, cast, get_args

import msgspec

from market.errors import (
    DecodeError,
    FrameTooLarge,
    InvalidField,
    ProtocolError,
    UnknownMessageType,
)
from market.protocol import codec
from nodes.wire.explorer import AccountView, Depth, LeaseList, PriceHistory, ProviderList
from nodes.wire.hooks import (
    Nested,
    dec_hook,
    json_dec_hook,
    lowerer,
    numbers_only,
    path_of,
    preparer,
)
from nodes.wire.messages import Message
from nodes.wire.reads import MAX_READ_SIZE, BidList, LeaseView, ModelList, OfferList

WIRE_VERSION: Final = codec.WIRE_VERSION
MAX_FRAME_SIZE: Final = 1024 * 1024
"""The default limit on a frame's length, in bytes."""
CONTENT_TYPE: Final = "application/msgpack"
JSON_CONTENT_TYPE: Final = "application/json"
M = TypeVar("M", bound=Message)

MESSAGES: Final[dict[str, type[Message]]] = {
    cls.TYPE_NAME: cls for cls in cast(tuple[type[Message], ...], get_args(Message))
}
"""Every message class by its wire ``type``: the closed set."""

ReadAnswer: TypeAlias = (
    ModelList | OfferList | BidList | LeaseView
    | LeaseList | PriceHistory | Depth | ProviderList | AccountView
)  # fmt: skip
"""The relay's answers to a person's reads: ``reads.py``'s, then the explorer's."""
READ_ANSWERS: Final[dict[str, type[ReadAnswer]]] = {
    cls.TYPE_NAME: cls for cls in cast(tuple[type[ReadAnswer], ...], get_args(ReadAnswer))
}
"""Every read answer's class by its wire ``type``."""
A = TypeVar(
    "A", ModelList, OfferList, BidList, LeaseView, LeaseList, PriceHistory, Depth, ProviderList,
    AccountView,
)  # fmt: skip


class _Codec:
    """One message class's decoders and encoders."""

    def __init__(self, cls: type[msgspec.Struct]) -> None:
        self.cls = cls
        self.names = tuple(f.encode_name for f in msgspec.structs.fields(cls))
        self.decoder = msgspec.msgpack.Decoder(cls, dec_hook=dec_hook)
        self.lower = lowerer(cls, False)
        self.native = numbers_only(cls)
        self.lower_json = lowerer(cls, True)
        self.prepare_json = preparer(cls, True)


def encode(message: Message | ReadAnswer) -> bytes:
    """The msgpack frame of ``message``."""
    c = _codec_of(message)
    name: str = message.TYPE_NAME
    if c.native:  # as it is, unless an int is beyond msgpack's range
        try:
            return codec.seal_frame(name, message)
        except OverflowError:
            pass
    return codec.seal_frame(name, message if c.lower is None else c.lower(message))


def encode_json(message: Message | ReadAnswer) -> bytes:
    """The JSON frame of ``message``: bins as 0x-hex strings, addresses as EIP-55 strings."""
    c = _codec_of(message)
    body = c.lower_json(message) if c.lower_json is not None else message
    frame = {"v": WIRE_VERSION, "type": message.TYPE_NAME, "body": body}
    return msgspec.json.encode(frame, enc_hook=codec.plain)


def _codec_of(message: object) -> _Codec:
    name = getattr(type(message), "TYPE_NAME", "")
    c = _CODECS.get(name) or _READ_CODECS.get(name)
    if c is None or c.cls is not type(message):
        raise TypeError(f"{type(message)!r} is not a daemon message nor a read answer")
    return c


def decode(data: bytes, *, max_size: int = MAX_FRAME_SIZE) -> Message:
    """The message in ``data``, which must hold exactly one msgpack frame; raises a
    ProtocolError."""
    type_name, raw = codec.open_frame(data, max_size=max_size, where="frame")
    c = _CODECS.get(type_name) if type(type_name) is str else None
    if c is None:
        raise UnknownMessageType(type_name)
    return cast(Message, _body(c, raw, cast(str, type_name)))


def decode_json(data: bytes, *, max_size: int = MAX_FRAME_SIZE) -> Message:
    """The message in ``data``, one JSON frame (bins as 0x-hex strings); raises a
    ProtocolError."""
    type_name, body = _open_json(data, max_size)
    c = _CODECS.get(type_name) if type(type_name) is str else None
    if c is None:
        raise UnknownMessageType(type_name)
    return cast(Message, _json_body(c, body, cast(str, type_name)))


def decode_read(data: bytes, cls: type[A], *, max_size: int = MAX_READ_SIZE) -> A:
    """The ``cls`` read answer in one msgpack frame; raises a ProtocolError (UnknownMessageType
    for a frame of any other type)."""
    type_name, raw = codec.open_frame(data, max_size=max_size, where="frame")
    if type_name != cls.TYPE_NAME:
        raise UnknownMessageType(type_name)
    return cast(A, _body(_READ_CODECS[cls.TYPE_NAME], raw, cls.TYPE_NAME))


def decode_read_json(data: bytes, cls: type[A], *, max_size: int = MAX_READ_SIZE) -> A:
    """The ``cls`` read answer in one JSON frame; raises a ProtocolError."""
    type_name, body = _open_json(data, max_size)
    if type_name != cls.TYPE_NAME:
        raise UnknownMessageType(type_name)
    return cast(A, _json_body(_READ_CODECS[cls.TYPE_NAME], body, cls.TYPE_NAME))


def _body(c: _Codec, raw: msgspec.Raw, where: str) -> object:
    """A msgpack frame's body decoded as ``c``'s class, every key present once."""
    try:
        message = c.decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise _located(exc, where) from exc
    except (msgspec.DecodeError, RecursionError) as exc:
        raise codec.refusal(exc, where) from exc
    _check_keys(raw, c.names, where)
    return message


def _open_json(data: bytes, max_size: int) -> tuple[object, object]:
    """The ``type`` and body of a JSON frame of this version, at most ``max_size`` bytes."""
    if len(data) > max_size:
        raise FrameTooLarge(len(data), max_size)
    try:
        envelope = _JSON_ENVELOPE.decode(data)
        version = msgspec.json.decode(envelope.v, type=_JSON_SCALAR)
        type_name = msgspec.json.decode(envelope.type, type=_JSON_SCALAR)
        body = msgspec.json.decode(envelope.body)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise codec.refusal(exc, "frame") from exc
    if type(version) is not int or version != WIRE_VERSION:
        raise DecodeError(
            f"unsupported wire version {version!r}: this node reads version {WIRE_VERSION} only"
        )
    return type_name, body


def _json_body(c: _Codec, body: object, where: str) -> object:
    """A JSON frame's body converted to ``c``'s class, every key present."""
    try:
        message = msgspec.convert(c.prepare_json(body), c.cls, dec_hook=json_dec_hook)
    except msgspec.ValidationError as exc:
        raise _located(exc, where) from exc
    if isinstance(body, dict):
        missing = [k for k in c.names if k not in body]
        if missing:
            raise DecodeError(f"{where}: missing keys {missing}")
    return message


def decode_as(data: bytes, cls: type[M], *, max_size: int = MAX_FRAME_SIZE) -> M:
    """:func:`decode`, then raise DecodeError unless the message is a ``cls``."""
    message = decode(data, max_size=max_size)
    if type(message) is not cls:
        raise DecodeError(f"expected a {cls.TYPE_NAME} message, got {message.TYPE_NAME}")
    return cast(M, message)


def _check_keys(raw: msgspec.Raw, names: tuple[str, ...], where: str) -> None:
    """Every key of the body, once: a header counting fewer entries than the message's keys
    lacks one (msgspec took its default), one counting more repeats one."""
    try:
        codec.check_map(raw, len(names), where)
    except DecodeError:
        keys = msgspec.msgpack.decode(raw, type=dict[str, msgspec.Raw])
        missing = [k for k in names if k not in keys]
        if missing:
            raise DecodeError(f"{where}: missing keys {missing}") from None
        raise


def _located(exc: msgspec.ValidationError, where: str) -> ProtocolError:
    """The typed error for msgspec's refusal ``exc``: a refusal from inside a value (a codec
    frame's InvalidField, a reputation's) keeps its type and gets the whole path."""
    inner = exc.__cause__
    if not isinstance(inner, Nested):
        return codec.refusal(exc, where)
    at = where + path_of(exc)[1:] + inner.path[1:]
    error = inner.error
    if isinstance(error, msgspec.ValidationError):
        return codec.refusal(error, at)
    if isinstance(error, InvalidField):
        return InvalidField(error.message_type, error.field, f"{error.reason} (at {at})")
    return DecodeError(f"{at}: {error}")


_CODECS: Final = {name: _Codec(cls) for name, cls in MESSAGES.items()}
_READ_CODECS: Final = {name: _Codec(cls) for name, cls in READ_ANSWERS.items()}
_JSON_ENVELOPE: Final = msgspec.json.Decoder(codec.Envelope)
_JSON_SCALAR: Final = int | float | bool | str | None

__all__ = [
    "CONTENT_TYPE",
    "JSON_CONTENT_TYPE",
    "MAX_FRAME_SIZE",
    "MAX_READ_SIZE",
    "MESSAGES",
    "READ_ANSWERS",
    "WIRE_VERSION",
    "ReadAnswer",
    "decode",
    "decode_as",
    "decode_json",
    "decode_read",
    "decode_read_json",
    "encode",
    "encode_json",
]
