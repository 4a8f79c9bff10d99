"""The msgpack wire format of protocol messages, with one strict, validating decoder.

Every message is a msgpack map with exactly three keys::

    {"v": 1, "type": "<TypeName>", "body": {<field name>: <value>, ...}}

``type`` is ``Offer``, ``Bid``, ``Voucher``, ``Receipt`` or ``Lease``, whose body maps each
camelCase name in the class's ``FIELDS`` to its value, or ``SignedOffer``, ``SignedBid``,
``SignedVoucher`` or ``SignedReceipt``, whose body is
``{"message": <the inner message's body map>, "signature": <bin>}``: 65 bytes or 64 (EIP-2098) for
an ECDSA signature, anything from 1 to ``MAX_SIGNATURE_LENGTH`` bytes for a contract signer's
(ERC-1271); whether it is valid is for ``market.protocol.signing`` to say.

Each kind of value has exactly one msgpack type:

* ``address``: 20-byte bin (the raw address; decoded to its EIP-55 checksum form);
* ``bytes32``: 32-byte bin, except ``gpuModel``, which is a str (the model name);
* ``uint32`` and ``uint64``: msgpack int;
* ``uint256``: always a 32-byte big-endian bin, whatever the value, because msgpack ints stop at
  64 bits. A msgpack int in a ``uint256`` field is refused as non-canonical.

Every field is required and no other key is allowed, at any level. Map keys are str, and a key
may not repeat. Arrays, floats, nil, bools and extension types (timestamps included) appear
nowhere in the format and are refused wherever they appear. A frame is refused before parsing
when it is longer than ``max_size``, and after parsing when bytes follow the message.

:func:`encode` writes keys in the ``FIELDS`` order with msgpack's shortest headers. The decoder
checks types, not byte layout: another writer's key order or wider int header is accepted, and
``encode(decode(data))`` is the canonical form of ``data``. Signatures cover the EIP-712 digest,
never these bytes.

:func:`decode` raises :class:`~market.errors.DecodeError` (or its subclasses
:class:`~market.errors.FrameTooLarge` and :class:`~market.errors.UnknownMessageType`) when the
bytes are not a well-formed message, and :class:`~market.errors.InvalidField` when a value is
well-formed but breaks its field's rule (an int out of range, a bad GPU model name, ``minDuration``
above ``maxDuration``). Both are :class:`~market.errors.ProtocolError`.
"""

from __future__ import annotations

from typing import Any, Final, TypeAlias, TypeVar, cast, get_args, get_origin

import msgpack

from market.errors import DecodeError, FrameTooLarge, UnknownMessageType
from market.protocol.types import Bid, Lease, Offer, Receipt, Signed, Voucher, checksum_address

WIRE_VERSION: Final = 1
"""The ``v`` of every message this module writes and the only one it reads."""
MAX_FRAME_SIZE: Final = 64 * 1024
"""The default limit on an encoded message's length, in bytes."""
MAX_SIGNATURE_LENGTH: Final = Signed.MAX_SIGNATURE_LENGTH
"""The longest signature a frame may carry, in bytes (a longer bin is refused while parsing)."""

Decoded: TypeAlias = (
    Offer
    | Bid
    | Voucher
    | Lease
    | Receipt
    | Signed[Offer]
    | Signed[Bid]
    | Signed[Voucher]
    | Signed[Receipt]
)
"""Anything :func:`decode` returns."""
D = TypeVar("D", bound=Decoded)

_MessageClass: TypeAlias = type[Offer] | type[Bid] | type[Voucher] | type[Lease] | type[Receipt]
_SignableClass: TypeAlias = type[Offer] | type[Bid] | type[Voucher] | type[Receipt]
_Message: TypeAlias = Offer | Bid | Voucher | Lease | Receipt
_SignedMessage: TypeAlias = Signed[Offer] | Signed[Bid] | Signed[Voucher] | Signed[Receipt]
_SIGNED_PREFIX = "Signed"
_ENVELOPE_KEYS = ("v", "type", "body")
_SIGNED_KEYS = ("message", "signature")

# Bounds given to the msgpack parser; every legitimate message is far inside them. The longest
# str is a GPU model of 32 characters; the longest bin is a signature.
_UNPACK_LIMITS: Final = {
    "max_str_len": 128,
    "max_bin_len": MAX_SIGNATURE_LENGTH,
    "max_array_len": 0,
    "max_map_len": 32,
    "max_ext_len": 0,
}
_BIN_LENGTH = {"address": 20, "bytes32": 32, "uint256": 32}


def _wire_kind(attr: str, solidity_type: str) -> str:
    """How a field travels: ``address``, ``bytes32``, ``uint256``, ``uint``, ``bool`` or
    ``model``."""
    if attr == "gpu_model":
        return "model"
    if solidity_type in ("address", "bytes32", "uint256", "bool"):
        return solidity_type
    return "uint"


_MESSAGE_CLASSES: dict[str, _MessageClass] = {
    cls.TYPE_NAME: cls for cls in (Offer, Bid, Voucher, Lease, Receipt)
}
_SIGNABLE_CLASSES: dict[str, _SignableClass] = {
    _SIGNED_PREFIX + cls.TYPE_NAME: cls for cls in (Offer, Bid, Voucher, Receipt)
}
# (python attribute, wire name, wire kind) for each message class, in the struct's order.
_WIRE_FIELDS: dict[_MessageClass, tuple[tuple[str, str, str], ...]] = {
    cls: tuple((attr, name, _wire_kind(attr, t)) for attr, name, t in cls.FIELDS)
    for cls in _MESSAGE_CLASSES.values()
}


def encode(obj: Decoded) -> bytes:
    """The canonical msgpack encoding of a message or signed message."""
    body: dict[str, Any]
    if type(obj) is Signed:
        inner = obj.message
        if type(inner) not in (Offer, Bid, Voucher, Receipt):
            raise TypeError(
                f"only offers, bids, vouchers and receipts are signed, not {type(inner)!r}"
            )
        type_name = _SIGNED_PREFIX + inner.TYPE_NAME
        body = {"message": _encode_body(inner), "signature": obj.signature}
    elif type(obj) in _WIRE_FIELDS:
        message = cast(_Message, obj)
        type_name = message.TYPE_NAME
        body = _encode_body(message)
    else:
        raise TypeError(f"cannot encode {type(obj)!r}: not a protocol message")
    packed: bytes = msgpack.packb(
        {"v": WIRE_VERSION, "type": type_name, "body": body}, use_bin_type=True
    )
    return packed


def _encode_body(message: _Message) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for attr, name, kind in _WIRE_FIELDS[type(message)]:
        value = getattr(message, attr)
        if kind == "address":
            body[name] = bytes.fromhex(value[2:])
        elif kind == "uint256":
            body[name] = value.to_bytes(32, "big")
        elif kind == "uint":
            body[name] = int(value)  # an IntEnum (Billing) travels as its number
        else:
            body[name] = value
    return body


def decode(data: bytes, *, max_size: int = MAX_FRAME_SIZE) -> Decoded:
    """The message encoded in ``data``, which must hold exactly one message and nothing else.

    Raises FrameTooLarge (before parsing) when ``data`` is longer than ``max_size`` bytes,
    UnknownMessageType for a ``type`` this version does not know, DecodeError for anything else
    that is not a well-formed message, and InvalidField when a value breaks its field's rule.
    """
    if len(data) > max_size:
        raise FrameTooLarge(len(data), max_size)
    tree = _unpack(data)
    if not isinstance(tree, dict):
        raise DecodeError(f"a message is a msgpack map, got {_wire_type(tree)}")
    version = tree.get("v")
    if type(version) is not int or version != WIRE_VERSION:
        raise DecodeError(
            f"unsupported wire version {version!r}: this node reads version {WIRE_VERSION} only"
        )
    _check_keys(tree, _ENVELOPE_KEYS, "message")
    type_name = tree["type"]
    body = tree["body"]
    if type(type_name) is str and type_name in _MESSAGE_CLASSES:
        return _decode_message(_MESSAGE_CLASSES[type_name], body, type_name)
    if type(type_name) is str and type_name in _SIGNABLE_CLASSES:
        return _decode_signed(_SIGNABLE_CLASSES[type_name], body, type_name)
    raise UnknownMessageType(type_name)


def decode_as(data: bytes, cls: type[D], *, max_size: int = MAX_FRAME_SIZE) -> D:
    """:func:`decode`, then raise DecodeError unless the message is a ``cls``.

    ``cls`` is a message class or ``Signed[Offer]``, ``Signed[Bid]``, ``Signed[Voucher]``,
    ``Signed[Receipt]`` (``Signed`` alone accepts any signed message).
    """
    origin = get_origin(cls) or cls
    inner = get_args(cls)[0] if get_args(cls) else None
    if origin is not Signed and origin not in _WIRE_FIELDS:
        raise TypeError(f"{cls!r} is not a protocol message class")
    obj = decode(data, max_size=max_size)
    if origin is Signed:
        matches = type(obj) is Signed and (inner is None or type(obj.message) is inner)
        expected = _SIGNED_PREFIX + (inner.TYPE_NAME if inner is not None else "*")
    else:
        matches = type(obj) is origin
        expected = cast(_MessageClass, origin).TYPE_NAME
    if not matches:
        raise DecodeError(f"expected a {expected} message, got {_type_name(obj)}")
    return cast(D, obj)


def _type_name(obj: Decoded) -> str:
    if type(obj) is Signed:
        return _SIGNED_PREFIX + obj.message.TYPE_NAME
    return cast(_Message, obj).TYPE_NAME


def _unpack(data: bytes) -> object:
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=False,
            object_pairs_hook=_map_from_pairs,
            ext_hook=_refuse_ext,
            **_UNPACK_LIMITS,
        )
    except msgpack.ExtraData as exc:
        raise DecodeError(f"{len(exc.extra)} trailing bytes after the message") from exc
    except (ValueError, msgpack.UnpackException) as exc:
        # ValueError covers truncated input, reserved bytes, bad UTF-8, non-str map keys and
        # values over the parser's limits.
        raise DecodeError(f"malformed msgpack ({type(exc).__name__}: {exc})") from exc


def _map_from_pairs(pairs: list[tuple[object, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if type(key) is not str:
            raise DecodeError(f"map keys must be str, got {_wire_type(key)} {key!r}")
        if key in result:
            raise DecodeError(f"map key {key!r} appears twice")
        result[key] = value
    return result


def _refuse_ext(code: int, data: bytes) -> object:
    raise DecodeError(f"msgpack extension type {code} is not part of the protocol")


def _check_keys(mapping: dict[str, object], expected: tuple[str, ...], where: str) -> None:
    missing = [k for k in expected if k not in mapping]
    extra = sorted(k for k in mapping if k not in expected)
    if missing or extra:
        raise DecodeError(f"{where}: missing keys {missing}, unexpected keys {extra}")


def _decode_signed(cls: _SignableClass, body: object, type_name: str) -> _SignedMessage:
    if not isinstance(body, dict):
        raise DecodeError(f"{type_name}.body must be a map, got {_wire_type(body)}")
    _check_keys(body, _SIGNED_KEYS, f"{type_name}.body")
    signature = body["signature"]
    if type(signature) is not bytes or not 0 < len(signature) <= MAX_SIGNATURE_LENGTH:
        raise DecodeError(
            f"{type_name}.signature must be a bin of 1 to {MAX_SIGNATURE_LENGTH} bytes, "
            f"got {_wire_type(signature)}"
        )
    message = _decode_message(cls, body["message"], f"{type_name}.message")
    # The inner class is always one of Offer, Bid, Voucher, Receipt; mypy cannot pair it with
    # Signed's M.
    return cast(_SignedMessage, Signed(message, signature))


def _decode_message(cls: _MessageClass, body: object, where: str) -> _Message:
    if not isinstance(body, dict):
        raise DecodeError(f"{where} body must be a map, got {_wire_type(body)}")
    fields = _WIRE_FIELDS[cls]
    _check_keys(body, tuple(name for _, name, _ in fields), where)
    values = {
        attr: _field_value(body[name], kind, f"{where}.{name}") for attr, name, kind in fields
    }
    return cls(**values)


def _field_value(value: object, kind: str, where: str) -> Any:
    if kind == "uint":
        if type(value) is not int:
            raise DecodeError(f"{where} must be a msgpack int, got {_wire_type(value)}")
        return value  # the dataclass checks the range
    if kind == "bool":
        if type(value) is not bool:
            raise DecodeError(f"{where} must be a msgpack bool, got {_wire_type(value)}")
        return value
    if kind == "model":
        if type(value) is not str:
            raise DecodeError(f"{where} must be a str, got {_wire_type(value)}")
        return value  # the dataclass checks the model name's rules
    length = _BIN_LENGTH[kind]
    if type(value) is not bytes or len(value) != length:
        hint = " (uint256 is never a msgpack int)" if type(value) is int else ""
        raise DecodeError(f"{where} must be a {length}-byte bin, got {_wire_type(value)}{hint}")
    if kind == "address":
        return checksum_address("0x" + value.hex())
    if kind == "uint256":
        return int.from_bytes(value, "big")
    return value


def _wire_type(value: object) -> str:
    """How ``value`` appeared on the wire, for error messages."""
    if isinstance(value, bytes):
        return f"{len(value)}-byte bin"
    names = {bool: "bool", int: "int", float: "float", str: "str", dict: "map", tuple: "array"}
    if value is None:
        return "nil"
    return names.get(type(value), type(value).__name__)


__all__ = [
    "MAX_FRAME_SIZE",
    "MAX_SIGNATURE_LENGTH",
    "WIRE_VERSION",
    "Decoded",
    "decode",
    "decode_as",
    "encode",
]
