"""Encoding daemon messages into frames, and the one validating decoder.

A frame is a msgpack map with exactly three keys, the envelope of ``market.protocol.codec``::

    {"v": 1, "type": "<message type>", "body": {<camelCase key>: <value>, ...}}

:func:`decode` refuses, with typed errors and before acting on anything: a frame longer than
``max_size`` (FrameTooLarge, checked before parsing), bytes that are not one msgpack value
(DecodeError: truncated, trailing bytes, reserved codes, extension types, non-str or repeated map
keys), another version, a ``type`` outside the closed set (UnknownMessageType), a missing or
unexpected key at any level, a value of the wrong msgpack type or size (DecodeError, naming its
path), and an order or value that breaks a protocol rule (InvalidField).
"""

from __future__ import annotations

from typing import Final, TypeVar, cast

import msgpack

from market.errors import DecodeError, FrameTooLarge, UnknownMessageType
from nodes.wire.fields import check_keys, wire_type
from nodes.wire.messages import Message
from nodes.wire.schemas import SCHEMAS

WIRE_VERSION: Final = 1
MAX_FRAME_SIZE: Final = 1024 * 1024
"""The default limit on a frame's length, in bytes."""
CONTENT_TYPE: Final = "application/msgpack"
M = TypeVar("M", bound=Message)

_ENVELOPE_KEYS = ("v", "type", "body")
# Parser bounds: far above anything a valid message holds, so the schemas decide; they only stop
# a small frame from declaring huge containers.
_MAX_STR = 4 * 4096  # bytes: a 4096-character str of UTF-8
_MAX_MAP = 1024


def encode(message: Message) -> bytes:
    """The frame of ``message``."""
    schema = SCHEMAS.get(getattr(type(message), "TYPE_NAME", ""))
    if schema is None or schema.make is not type(message):
        raise TypeError(f"{type(message)!r} is not a daemon message")
    packed: bytes = msgpack.packb(
        {"v": WIRE_VERSION, "type": message.TYPE_NAME, "body": schema.encode(message)},
        use_bin_type=True,
    )
    return packed


def decode(data: bytes, *, max_size: int = MAX_FRAME_SIZE) -> Message:
    """The message in ``data``, which must hold exactly one frame; raises a ProtocolError."""
    if len(data) > max_size:
        raise FrameTooLarge(len(data), max_size)
    tree = _unpack(data, max_size)
    if not isinstance(tree, dict):
        raise DecodeError(f"a frame is a msgpack map, got {wire_type(tree)}")
    version = tree.get("v")
    if type(version) is not int or version != WIRE_VERSION:
        raise DecodeError(
            f"unsupported wire version {version!r}: this node reads version {WIRE_VERSION} only"
        )
    check_keys(tree, _ENVELOPE_KEYS, "frame")
    type_name = tree["type"]
    schema = SCHEMAS.get(type_name) if type(type_name) is str else None
    if schema is None:
        raise UnknownMessageType(type_name)
    message: Message = schema.decode(tree["body"], type_name)
    return message


def decode_as(data: bytes, cls: type[M], *, max_size: int = MAX_FRAME_SIZE) -> M:
    """:func:`decode`, then raise DecodeError unless the message is a ``cls``."""
    message = decode(data, max_size=max_size)
    if type(message) is not cls:
        raise DecodeError(f"expected a {cls.TYPE_NAME} message, got {message.TYPE_NAME}")
    return cast(M, message)


def _unpack(data: bytes, max_size: int) -> object:
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=False,
            object_pairs_hook=_map_from_pairs,
            ext_hook=_refuse_ext,
            max_str_len=_MAX_STR,
            max_bin_len=max_size,
            max_array_len=max_size,
            max_map_len=_MAX_MAP,
            max_ext_len=0,
        )
    except msgpack.ExtraData as exc:
        raise DecodeError(f"{len(exc.extra)} trailing bytes after the frame") from exc
    except (ValueError, msgpack.UnpackException) as exc:
        # Truncated input, reserved bytes, bad UTF-8, non-str keys, values over the bounds.
        raise DecodeError(f"malformed msgpack ({type(exc).__name__}: {exc})") from exc
    except RecursionError as exc:
        raise DecodeError("msgpack nested too deeply") from exc


def _map_from_pairs(pairs: list[tuple[object, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if type(key) is not str:
            raise DecodeError(f"map keys must be str, got {wire_type(key)} {key!r}")
        if key in result:
            raise DecodeError(f"map key {key!r} appears twice")
        result[key] = value
    return result


def _refuse_ext(code: int, data: bytes) -> object:
    raise DecodeError(f"msgpack extension type {code} is not part of the wire format")


__all__ = ["CONTENT_TYPE", "MAX_FRAME_SIZE", "WIRE_VERSION", "decode", "decode_as", "encode"]
