"""The msgpack wire format of protocol messages, and the one envelope every frame travels in.

Every frame, a protocol message here or a daemon message in ``nodes.wire``, is a msgpack map
with exactly three keys, the :class:`Envelope`::

    {"v": 1, "type": "<TypeName>", "body": {<field name>: <value>, ...}}

This module owns it: :func:`open_frame` checks the size, the envelope and the version and hands
back the type and the body's raw bytes, :func:`read_body` decodes a body into a msgspec ``Struct``
and :func:`seal_frame` writes a frame. ``nodes.wire`` builds its frames on these three.

Protocol messages: ``type`` is ``Offer``, ``Bid``, ``Voucher``, ``Receipt`` or ``Lease``, whose
body maps each camelCase name in the class's ``FIELDS`` to its value, or ``SignedOffer``,
``SignedBid``, ``SignedVoucher`` or ``SignedReceipt``, whose body is
``{"message": <the inner message's body map>, "signature": <bin>}``: 65 bytes or 64 (EIP-2098) for
an ECDSA signature, anything from 1 to ``MAX_SIGNATURE_LENGTH`` bytes for a contract signer's
(ERC-1271); whether it is valid is for ``market.protocol.signing`` to say.

Each kind of value has exactly one msgpack type:

* ``address``: 20-byte bin (the raw address; decoded to its EIP-55 checksum form);
* ``bytes32``: 32-byte bin, except ``gpuModel``, which is a str (the model name);
* ``uint32`` and ``uint64``: msgpack int;
* ``uint256``: always a 32-byte big-endian bin, whatever the value, because msgpack ints stop at
  64 bits. A msgpack int in a ``uint256`` field is refused as non-canonical.

The body of each message is a msgspec ``Struct`` derived from the class's ``FIELDS`` (one
spelling: the protocol's types), decoded strictly: every field is required, no other key is
allowed, values of another msgpack type are refused (a bool is not an int, an int not a bin).
Map keys are str, and a key may not repeat: every map of the format has a fixed set of keys, so
a map whose header counts more entries than its keys repeats one. Arrays, floats, nil and
extension types (timestamps included) appear nowhere in the format and are refused wherever they
appear. A frame is refused before parsing when it is longer than ``max_size``, and after parsing
when bytes follow the message.

:func:`encode` writes keys in the ``FIELDS`` order with msgpack's shortest headers. The decoder
checks types, not byte layout: another writer's key order or wider int header is accepted, and
``encode(decode(data))`` is the canonical form of ``data``. Signatures cover the EIP-712 digest,
never these bytes.

:func:`decode` raises :class:`~market.errors.DecodeError` (or its subclasses
:class:`~market.errors.FrameTooLarge` and :class:`~market.errors.UnknownMessageType`) when the
bytes are not a well-formed message, naming the path of the value at fault, and
:class:`~market.errors.InvalidField` when a value is well-formed but breaks its field's rule (an
int out of range, a bad GPU model name, ``minDuration`` above ``maxDuration``). Both are
:class:`~market.errors.ProtocolError`.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Final, TypeAlias, TypeVar, cast, get_args, get_origin

import msgpack
import msgspec

from market.errors import (
    DecodeError,
    FrameTooLarge,
    InvalidField,
    ProtocolError,
    UnknownMessageType,
)
from market.protocol.types import (
    Bid,
    Lease,
    Offer,
    Receipt,
    Signed,
    Voucher,
    checksum_address,
    unsafe_from_codec,
)

WIRE_VERSION: Final = 1
"""The ``v`` of every frame this module writes and the only one it reads."""
MAX_FRAME_SIZE: Final = 64 * 1024
"""The default limit on an encoded message's length, in bytes."""
MAX_SIGNATURE_LENGTH: Final = Signed.MAX_SIGNATURE_LENGTH
"""The longest signature a frame may carry, in bytes."""
MAX_MODEL_LENGTH: Final = 128
"""The longest str a protocol frame carries (a GPU model name has at most 32 characters)."""

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
S = TypeVar("S", bound=msgspec.Struct)


_NIL: Final = msgspec.Raw(b"\xc0")


class Envelope(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``{v, type, body}``: the one envelope of every frame, the protocol's and the daemons'.

    Each value is kept raw: :func:`open_frame` reads ``v`` and ``type`` as scalars, so that
    another version or an unknown type is refused as such (not as a value of the wrong msgpack
    type), and no value of the envelope is ever parsed into an untyped tree.
    """

    v: msgspec.Raw = _NIL
    type: msgspec.Raw
    body: msgspec.Raw


class Unreadable(str):
    """What a ``v`` or ``type`` that is no scalar looks like in a refusal: ``<a msgpack map>``."""

    __slots__ = ()


_ENVELOPE = msgspec.msgpack.Decoder(Envelope)
_SCALAR = msgspec.msgpack.Decoder(int | float | bool | str | None)
_BIN = msgspec.msgpack.Decoder(bytes)
_GOT = re.compile(r"got `(\w+)`")


def scalar(raw: msgspec.Raw | bytes, where: str) -> object:
    """The scalar in ``raw`` (an int, a float, a bool, a str, nil or a bin), or an
    :class:`Unreadable` naming what else it is; an extension type is a DecodeError."""
    try:
        return _SCALAR.decode(raw)
    except msgspec.ValidationError as exc:
        got = _GOT.search(str(exc))
        kind = got.group(1) if got else "value"
        if kind == "bytes":
            return _BIN.decode(raw)
        if kind == "ext" or str(exc).startswith("Timestamp"):
            raise DecodeError(
                f"{where}: msgpack extension types are not part of the format"
            ) from exc
        return Unreadable(f"<a msgpack {kind}>")
    except msgspec.DecodeError as exc:  # a str that is not UTF-8
        raise refusal(exc, where) from exc


def plain(obj: object) -> object:
    """msgspec's ``enc_hook``: a subclass of a plain type (a config's ``GpuModel`` str, web3's
    ``HexBytes``) travels as that type; anything else is not part of the format."""
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, bytes):
        return bytes(obj)
    raise TypeError(f"{type(obj)!r} has no wire form")


_ENCODER = msgspec.msgpack.Encoder(enc_hook=plain)
_ENVELOPE_KEYS = 3


# --- the envelope, shared with nodes.wire ----------------------------------------------------


def open_frame(
    data: bytes, *, max_size: int, where: str = "message", repeats: bool = True
) -> tuple[object, msgspec.Raw]:
    """The ``type`` (unchecked: the caller knows its closed set) and the raw body of the one frame
    in ``data``. Raises FrameTooLarge (before parsing) over ``max_size`` bytes, and DecodeError
    for anything that is not one envelope of this version (``repeats``: a repeated key included;
    a caller that proves the frame canonical may leave that check out)."""
    if len(data) > max_size:
        raise FrameTooLarge(len(data), max_size)
    try:
        envelope = _ENVELOPE.decode(data)
    except (msgspec.DecodeError, RecursionError) as exc:
        _refuse_repeats(exc, data, where)
        raise refusal(exc, where, size=len(data)) from exc
    version = None if envelope.v is _NIL else scalar(envelope.v, f"{where}.v")
    if type(version) is not int or version != WIRE_VERSION:
        shown = version if isinstance(version, Unreadable) else repr(version)
        raise DecodeError(
            f"unsupported wire version {shown}: this node reads version {WIRE_VERSION} only"
        )
    if repeats:
        check_map(data, _ENVELOPE_KEYS, where)
    return scalar(envelope.type, f"{where}.type"), envelope.body


def read_body(
    decoder: msgspec.msgpack.Decoder[S],
    raw: msgspec.Raw | bytes,
    where: str,
    hints: Mapping[str, str] | None = None,
    *,
    repeats: bool = True,
) -> S:
    """``raw`` decoded by ``decoder`` (a Struct of required fields only), every repeated key
    refused (``repeats``, as in :func:`open_frame`); msgspec's refusals become DecodeErrors
    naming ``where`` and the path."""
    try:
        body = decoder.decode(raw)
    except (msgspec.DecodeError, RecursionError) as exc:
        _refuse_repeats(exc, raw, where)
        raise refusal(exc, where, hints=hints) from exc
    if repeats:
        check_map(raw, len(body.__struct_fields__), where)
    return body


def seal_frame(
    type_name: str, body: object, *, enc_hook: Callable[[Any], Any] | None = None
) -> bytes:
    """The frame ``{v, type, body}`` of a body msgspec can encode."""
    frame = {"v": WIRE_VERSION, "type": type_name, "body": body}
    if enc_hook is None:
        return _ENCODER.encode(frame)
    return msgspec.msgpack.encode(frame, enc_hook=enc_hook)


def check_map(data: msgspec.Raw | bytes, keys: int, where: str) -> None:
    """Refuse a map that parsed into ``keys`` distinct keys but whose header counts more: one
    key repeats (msgspec keeps the last; the format refuses them)."""
    view = memoryview(data)
    first = view[0]
    if 0x80 <= first <= 0x8F:
        count = first & 0x0F
    elif first == 0xDE:
        count = int.from_bytes(view[1:3], "big")
    elif first == 0xDF:
        count = int.from_bytes(view[1:5], "big")
    else:
        return
    if count != keys:
        raise DecodeError(f"{where}: map key {_repeated_key(bytes(data))!r} appears twice")


def _refuse_repeats(exc: BaseException, data: msgspec.Raw | bytes, where: str) -> None:
    """A key said missing may have been written twice in its place: say so."""
    if isinstance(exc, msgspec.ValidationError) and str(exc).startswith("Object missing"):
        try:
            repeated = _repeated_key(bytes(data))
        except (ValueError, msgpack.UnpackException):
            return
        if repeated != "?":
            raise DecodeError(f"{where}: map key {repeated!r} appears twice") from exc


def _repeated_key(data: bytes) -> object:
    """The first key that repeats in the map that ``data`` starts with (the slow path of a
    refusal)."""
    found: list[object] = []

    def pairs(items: list[tuple[object, object]]) -> dict[object, object]:
        keys = [k for k, _ in items]
        found.extend(k for i, k in enumerate(keys) if k in keys[:i])
        return {}

    unpacker = msgpack.Unpacker(raw=False, object_pairs_hook=pairs, strict_map_key=False)
    unpacker.feed(data)
    next(unpacker, None)
    return found[-1] if found else "?"


_AT = re.compile(r"^(?P<msg>.*?)(?: - at `(?P<key>key` in `)?(?P<path>\$[^`]*)`)?$", re.S)
_TRAILING = re.compile(r"trailing characters \(byte (\d+)\)")


def refusal(
    exc: BaseException,
    where: str,
    *,
    size: int | None = None,
    hints: Mapping[str, str] | None = None,
) -> ProtocolError:
    """The DecodeError for msgspec's refusal ``exc`` of the value at ``where``: the path of the
    value at fault and what was wrong, in this format's words."""
    if isinstance(exc, RecursionError):
        return DecodeError(f"{where}: msgpack nested too deeply")
    text = str(exc)
    if not isinstance(exc, msgspec.ValidationError):
        trailing = _TRAILING.search(text)
        if trailing and size is not None:
            return DecodeError(f"{size - int(trailing.group(1))} trailing bytes after the {where}")
        if "Timestamp" in text:  # an extension type msgspec parses before the Struct sees it
            return DecodeError(f"{where}: msgpack extension types are not part of the format")
        return DecodeError(f"malformed msgpack ({text})")
    match = _AT.match(text)
    assert match is not None  # the pattern matches any text
    msg, path = match.group("msg"), match.group("path") or "$"
    at = where + path[1:]
    if match.group("key"):
        return DecodeError(f"{at}: map keys must be str ({msg})")
    if field := re.match(r"Object missing required field `(.*)`$", msg):
        return DecodeError(f"{at}: missing keys [{field.group(1)!r}]")
    if field := re.match(r"Object contains unknown field `(.*)`$", msg):
        return DecodeError(f"{at}: unexpected keys [{field.group(1)!r}]")
    if msg.endswith("got `ext`") or msg.startswith("Timestamp"):
        return DecodeError(f"{at}: msgpack extension types are not part of the format")
    if got := re.match(r"Expected `object`, got `(.*)`$", msg):
        return DecodeError(f"{at} must be a map, got {got.group(1)}")
    name = path.rsplit(".", 1)[-1]
    if hints and name in hints:
        return DecodeError(f"{at} must be {hints[name]} ({msg})")
    return DecodeError(f"{at}: {msg}")


# --- protocol messages -----------------------------------------------------------------------

_MessageClass: TypeAlias = type[Offer] | type[Bid] | type[Voucher] | type[Lease] | type[Receipt]
_SignableClass: TypeAlias = type[Offer] | type[Bid] | type[Voucher] | type[Receipt]
_Message: TypeAlias = Offer | Bid | Voucher | Lease | Receipt
_SignedMessage: TypeAlias = Signed[Offer] | Signed[Bid] | Signed[Voucher] | Signed[Receipt]
_SIGNED_PREFIX = "Signed"

_ADDRESS = Annotated[bytes, msgspec.Meta(min_length=20, max_length=20)]
_WORD = Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
_MODEL = Annotated[str, msgspec.Meta(max_length=MAX_MODEL_LENGTH)]
_WIRE_TYPES: dict[str, Any] = {
    "address": _ADDRESS,
    "bytes32": _WORD,
    "uint256": _WORD,
    "uint": int,  # unsafe_from_codec checks the range, as InvalidField
    "bool": bool,
    "model": _MODEL,
}
_HINTS = {
    "address": "a 20-byte bin",
    "bytes32": "a 32-byte bin",
    "uint256": "a 32-byte bin (uint256 is never a msgpack int)",
    "uint": "a msgpack int",
    "bool": "a msgpack bool",
    "model": "a str",
}


def _wire_kind(attr: str, solidity_type: str) -> str:
    """How a field travels: ``address``, ``bytes32``, ``uint256``, ``uint``, ``bool`` or
    ``model``."""
    if attr == "gpu_model":
        return "model"
    if solidity_type in ("address", "bytes32", "uint256", "bool"):
        return solidity_type
    return "uint"


_PAD12: Final = bytes(12)


def _model_word(model: str) -> bytes:
    """A GPU model name as the ``bytes32`` it is signed as (ASCII, left-aligned, zero-padded):
    a model no valid message could hold raises InvalidField (or UnicodeEncodeError)."""
    raw = model.encode("ascii")
    if len(raw) > 32:
        raise InvalidField("Order", "gpu_model", f"{len(raw)} bytes: at most 32")
    return raw.ljust(32, b"\0")


_WORD_OF_WIRE: dict[str, Callable[[Any], bytes]] = {
    "address": lambda raw: _PAD12 + raw,  # the 20 bytes, left-padded as abi.encode does
    "bytes32": lambda raw: raw,
    "uint256": lambda raw: raw,  # 32 bytes big-endian already
    "uint": lambda n: n.to_bytes(32, "big"),
    "bool": lambda b: b.to_bytes(32, "big"),
    "model": _model_word,
}
"""How each kind of wire value becomes its EIP-712 ``encodeData`` word, as
``market.protocol.eip712`` encodes the built message's field."""


class _Wire:
    """How one message class travels: its body Struct (derived from ``FIELDS``), its decoder,
    and the conversions between the two."""

    def __init__(self, cls: _MessageClass) -> None:
        self.cls = cls
        self.fields = tuple((attr, name, _wire_kind(attr, t)) for attr, name, t in cls.FIELDS)
        self.struct: type[msgspec.Struct] = msgspec.defstruct(
            cls.TYPE_NAME,
            [(attr, _WIRE_TYPES[kind]) for attr, _, kind in self.fields],
            rename={attr: name for attr, name, _ in self.fields},
            forbid_unknown_fields=True,
        )
        self.decoder = msgspec.msgpack.Decoder(self.struct)
        self.hints = {name: _HINTS[kind] for _, name, kind in self.fields}
        self.addresses = tuple(attr for attr, _, kind in self.fields if kind == "address")
        self.words = tuple(attr for attr, _, kind in self.fields if kind == "uint256")
        self.ints = tuple(attr for attr, _, kind in self.fields if kind == "uint")
        self.word_of = tuple(_WORD_OF_WIRE[kind] for _, _, kind in self.fields)

    def body(self, message: _Message) -> msgspec.Struct:
        values = {attr: getattr(message, attr) for attr, _, _ in self.fields}
        for attr in self.addresses:
            values[attr] = bytes.fromhex(values[attr][2:])
        for attr in self.words:
            values[attr] = values[attr].to_bytes(32, "big")
        for attr in self.ints:
            values[attr] = int(values[attr])  # an IntEnum (Billing) travels as its number
        return self.struct(**values)

    def message(
        self, raw: msgspec.Raw | bytes, where: str, *, repeats: bool = True
    ) -> tuple[_Message, msgspec.Struct]:
        """The message in ``raw``, and the body it was read from."""
        body = read_body(self.decoder, raw, where, self.hints, repeats=repeats)
        return self.build(body), body

    def build(self, body: msgspec.Struct) -> _Message:
        """The message a body decoded by :attr:`decoder` (or as part of a larger Struct) holds."""
        values = msgspec.structs.asdict(body)
        for attr in self.addresses:
            values[attr] = checksum_address("0x" + values[attr].hex())
        for attr in self.words:
            values[attr] = int.from_bytes(values[attr], "big")
        # The body's types proved each field's type (see unsafe_from_codec): the rest is checked
        # there, once.
        return unsafe_from_codec(self.cls, values)

    def encoding(self, body: msgspec.Struct) -> bytes:
        """The EIP-712 ``encodeData`` of the message a body holds (its fields' words in
        ``FIELDS`` order), without building the message."""
        values = msgspec.structs.astuple(body)
        return b"".join([word(v) for word, v in zip(self.word_of, values, strict=True)])


_SIGNATURE = Annotated[bytes, msgspec.Meta(min_length=1, max_length=MAX_SIGNATURE_LENGTH)]


class _SignedBody(msgspec.Struct, forbid_unknown_fields=True):
    message: msgspec.Raw
    signature: _SIGNATURE


_SIGNED = msgspec.msgpack.Decoder(_SignedBody)
_SIGNED_HINTS = {"signature": f"a bin of 1 to {MAX_SIGNATURE_LENGTH} bytes"}
_WIRES: dict[type, _Wire] = {cls: _Wire(cls) for cls in (Offer, Bid, Voucher, Lease, Receipt)}
_BY_NAME: dict[str, _Wire] = {wire.cls.TYPE_NAME: wire for wire in _WIRES.values()}
_SIGNABLE: dict[str, _Wire] = {
    _SIGNED_PREFIX + cls.TYPE_NAME: _WIRES[cls] for cls in (Offer, Bid, Voucher, Receipt)
}


class _Canonical:
    """The one-pass decoding of a canonical signed frame (the relay's hot path): the whole frame
    as one Struct, for frames that start as this type's canonical frame does."""

    def __init__(self, type_name: str, wire: _Wire) -> None:
        self.type_name, self.wire = type_name, wire
        body = msgspec.defstruct(
            type_name + "Body",
            [("message", wire.struct), ("signature", _SIGNATURE)],
            forbid_unknown_fields=True,
        )
        frame = msgspec.defstruct(
            type_name + "Frame",
            [("v", int), ("type", str), ("body", body)],
            forbid_unknown_fields=True,
        )
        self.decoder = msgspec.msgpack.Decoder(frame)
        self.prefix = b"\x83" + _ENCODER.encode({"v": WIRE_VERSION, "type": type_name})[1:]
        self.signer = "provider" if wire.cls is Offer else "lab"
        """The field naming who signs (an order's; a voucher or receipt is never asked for it)."""

    def decode(self, data: bytes) -> _SignedMessage | None:
        """The signed message in ``data`` if ``data`` is exactly its canonical frame (which rules
        out repeated keys, other versions and trailing bytes), else None: the general path then
        decodes it, or says what is wrong with it."""
        try:
            frame: Any = self.decoder.decode(data)
        except msgspec.DecodeError:  # a ValidationError too
            return None
        if frame.v != WIRE_VERSION or frame.type != self.type_name:
            return None
        if _ENCODER.encode(frame) != data:
            return None
        message = self.wire.build(frame.body.message)
        return cast(_SignedMessage, Signed(message, frame.body.signature))

    def encoding(self, data: bytes) -> tuple[bytes, bytes, bytes] | None:
        """``(encodeData, signer, signature)`` of the signed order in ``data`` (see
        :func:`signed_order_encoding`), or None when ``data`` is not this type's frame."""
        try:
            frame: Any = self.decoder.decode(data)
            encoded = self.wire.encoding(frame.body.message)
        except (msgspec.DecodeError, InvalidField, UnicodeEncodeError):  # a ValidationError too
            return None
        if frame.v != WIRE_VERSION or frame.type != self.type_name:
            return None
        if _ENCODER.encode(frame) != data:  # not canonical: a key repeated, or another order
            return None
        signer: bytes = getattr(frame.body.message, self.signer)
        return encoded, signer, frame.body.signature


def encode(obj: Decoded) -> bytes:
    """The canonical msgpack encoding of a message or signed message."""
    if type(obj) is Signed:
        if (frame := _remembered(obj)) is not None:
            return frame
        inner: object = obj.message
        wire = _SIGNABLE.get(_SIGNED_PREFIX + getattr(type(inner), "TYPE_NAME", ""))
        if wire is None:
            raise TypeError(
                f"only offers, bids, vouchers and receipts are signed, not {type(inner)!r}"
            )
        body = {"message": wire.body(cast(_Message, inner)), "signature": obj.signature}
        return seal_frame(_SIGNED_PREFIX + wire.cls.TYPE_NAME, body)
    wire = _WIRES.get(type(obj))
    if wire is None:
        raise TypeError(f"cannot encode {type(obj)!r}: not a protocol message")
    return seal_frame(wire.cls.TYPE_NAME, wire.body(cast(_Message, obj)))


def decode(data: bytes, *, max_size: int = MAX_FRAME_SIZE) -> Decoded:
    """The message encoded in ``data``, which must hold exactly one message and nothing else.

    Raises FrameTooLarge (before parsing) when ``data`` is longer than ``max_size`` bytes,
    UnknownMessageType for a ``type`` this version does not know, DecodeError for anything else
    that is not a well-formed message, and InvalidField when a value breaks its field's rule.
    """
    if type(data) is bytes and len(data) <= max_size:
        for fast in _CANONICAL:
            if data.startswith(fast.prefix):
                if (hit := fast.decode(data)) is not None:
                    _remember(hit, data)  # canonical, as fast.decode proved
                    return hit
                break
    type_name, raw = open_frame(data, max_size=max_size, repeats=False)
    if type(type_name) is str:
        if (wire := _BY_NAME.get(type_name)) is not None:
            check_map(data, _ENVELOPE_KEYS, "message")
            return wire.message(raw, type_name)[0]
        if (wire := _SIGNABLE.get(type_name)) is not None:
            signed = read_body(_SIGNED, raw, type_name, _SIGNED_HINTS, repeats=False)
            where = f"{type_name}.message"
            message, body = wire.message(signed.message, where, repeats=False)
            # The inner class is one of Offer, Bid, Voucher, Receipt; mypy cannot pair it with
            # Signed's M.
            obj = cast(_SignedMessage, Signed(message, signed.signature))
            canonical = {"message": body, "signature": signed.signature}
            if _ENCODER.encode({"v": WIRE_VERSION, "type": type_name, "body": canonical}) == data:
                _remember(obj, data)  # canonical: no key repeats anywhere in it
            else:
                check_map(data, _ENVELOPE_KEYS, "message")
                check_map(raw, len(_SignedBody.__struct_fields__), type_name)
                check_map(signed.message, len(wire.fields), where)
            return obj
    raise UnknownMessageType(type_name)


_CANONICAL: Final = tuple(_Canonical(name, wire) for name, wire in _SIGNABLE.items())

# Signed orders are decoded by the relay, then encoded again to be stored and gossiped: the
# canonical frames of the last ones decoded are kept, by the (frozen) object's identity.
_MEMO: OrderedDict[int, tuple[object, bytes]] = OrderedDict()
_MEMO_SIZE: Final = 8192


def _remember(obj: object, frame: bytes) -> None:
    _MEMO[id(obj)] = (obj, frame)  # the entry holds obj: its id is not reused meanwhile
    if len(_MEMO) > _MEMO_SIZE:
        _MEMO.popitem(last=False)


def _remembered(obj: object) -> bytes | None:
    hit = _MEMO.get(id(obj))
    return hit[1] if hit is not None and hit[0] is obj else None


_ORDER_FRAMES: Final[tuple[tuple[_Canonical, type[Offer] | type[Bid]], ...]] = tuple(
    (fast, fast.wire.cls) for fast in _CANONICAL if fast.wire.cls is Offer or fast.wire.cls is Bid
)


def signed_order_encoding(
    data: bytes,
) -> tuple[type[Offer] | type[Bid], bytes, bytes, bytes] | None:
    """A signed offer's or bid's canonical frame read for a signature check alone, without
    building the message: its class, the EIP-712 ``encodeData`` of its fields (what
    :func:`market.protocol.eip712.struct_hash` hashes after the type hash), its signer's 20
    bytes and its signature. None when ``data`` is not such a frame (decode it then).

    Only the msgpack types are checked, not the fields' rules: this is for frames that this
    process's codec wrote from messages it had built, and so checked (a relay's signature
    workers, ``market.matching.pool``)."""
    for fast, cls in _ORDER_FRAMES:
        if data.startswith(fast.prefix):
            parts = fast.encoding(data)
            return None if parts is None else (cls, *parts)
    return None


def decode_as(data: bytes, cls: type[D], *, max_size: int = MAX_FRAME_SIZE) -> D:
    """:func:`decode`, then raise DecodeError unless the message is a ``cls``.

    ``cls`` is a message class or ``Signed[Offer]``, ``Signed[Bid]``, ``Signed[Voucher]``,
    ``Signed[Receipt]`` (``Signed`` alone accepts any signed message).
    """
    origin = get_origin(cls) or cls
    inner = get_args(cls)[0] if get_args(cls) else None
    if origin is not Signed and origin not in _WIRES:
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


__all__ = [
    "MAX_FRAME_SIZE",
    "MAX_SIGNATURE_LENGTH",
    "WIRE_VERSION",
    "Decoded",
    "Envelope",
    "Unreadable",
    "check_map",
    "decode",
    "decode_as",
    "encode",
    "open_frame",
    "plain",
    "read_body",
    "refusal",
    "scalar",
    "seal_frame",
    "signed_order_encoding",
]
