"""The events a relay cluster's instances share on its stream, each declared once as a msgspec
``Struct`` of the wire's kind (camelCase keys, unknown keys refused, bounds as ``Meta``).

An event travels as a frame of the protocol codec's envelope ``{v, type, body}``, exactly as a
daemon message does (``nodes/wire/frames.py``), but in a set of its own: these are the cluster's
internal record, not a daemon API, so no daemon accepts them over HTTP. The accepted order is
the signed order's codec frame in a bin, decoded and checked by ``market.protocol.codec``.

Each event has its stable message id (:func:`message_id`), which JetStream uses to store a
publish once however often it is retried (``Nats-Msg-Id``): an order's is its hash, so two
instances accepting the same order store it once; any other event's is the hash of its frame,
which every field of it is part of (a fill intent's id included, so two fills of the same pair
and size stay apart).
"""

from __future__ import annotations

from typing import ClassVar, Final, TypeAlias, cast, get_args

import msgspec

from market.errors import DecodeError, ProtocolError, UnknownMessageType
from market.protocol import codec
from market.protocol.keccak import keccak
from nodes.wire import FillStatus
from nodes.wire.hooks import Nested, dec_hook, lowerer
from nodes.wire.messages import ZERO32, Hash, Struct, Text, UInt32, UInt64
from nodes.wire.values import Address, SignedOrderBin, UInt256

MAX_EVENT_SIZE: Final = 2 * codec.MAX_FRAME_SIZE
"""The largest event frame: an order's codec frame (at most ``codec.MAX_FRAME_SIZE``) and its
hash, with room to spare."""


class OrderAccepted(Struct, frozen=True):
    """An instance admitted ``order`` (whose hash is ``order_hash``): every instance's book
    takes it."""

    order_hash: Hash
    order: SignedOrderBin
    TYPE_NAME: ClassVar[str] = "OrderAccepted"


class OrderEvicted(Struct, frozen=True):
    """An instance took the resting order ``order_hash`` out of its full book to make room for
    ``evicted_for`` (``nodes/relay/capacity.py``; or withdrew it, ``evicted_for`` zero, when its
    acceptance could not be published): every instance takes it out. It leaves no mark: the
    order may enter again. ``evicted_for`` keeps two evictions of one order apart (the message
    id is the frame's hash)."""

    order_hash: Hash
    evicted_for: Hash = ZERO32
    TYPE_NAME: ClassVar[str] = "OrderEvicted"


class OrderCancelled(Struct, frozen=True):
    """The chain cancelled the order ``order_hash`` (``OrderCancelled`` in ``block_number``)."""

    order_hash: Hash
    block_number: UInt64
    TYPE_NAME: ClassVar[str] = "OrderCancelled"


class NonceFloorRaised(Struct, frozen=True):
    """The chain cancelled every order of ``signer`` with a nonce below ``min_nonce``."""

    signer: Address
    min_nonce: UInt256
    block_number: UInt64
    TYPE_NAME: ClassVar[str] = "NonceFloorRaised"


class LeaseOpened(Struct, frozen=True):
    """The chain opened lease ``lease_id`` of ``gpus`` GPUs from this pair (by any matcher)."""

    lease_id: Hash
    offer_hash: Hash
    bid_hash: Hash
    gpus: UInt32
    block_number: UInt64
    TYPE_NAME: ClassVar[str] = "LeaseOpened"


class ChainRewound(Struct, frozen=True):
    """The chain replaced the blocks from ``fork`` on (a reorganisation deeper than the
    confirmations): leases of those blocks no longer count, and the resting orders take the
    filled counts of the leases before ``fork``. ``token`` (random) keeps two reorganisations
    at the same height apart (the message id is the frame's hash)."""

    fork: UInt64
    token: Hash
    TYPE_NAME: ClassVar[str] = "ChainRewound"


class FillChanged(Struct, frozen=True):
    """The cluster's matcher took a pair (``pending``, fill intent ``intent``), then the lease
    opened (``opened``, ``lease_id``) or its transaction failed (``failed``, ``error``)."""

    intent: UInt64
    offer_hash: Hash
    bid_hash: Hash
    gpus: UInt32
    status: FillStatus
    lease_id: Hash = ZERO32
    error: Text = ""
    TYPE_NAME: ClassVar[str] = "FillChanged"


ClusterEvent: TypeAlias = (
    OrderAccepted
    | OrderEvicted
    | OrderCancelled
    | NonceFloorRaised
    | LeaseOpened
    | ChainRewound
    | FillChanged
)

EVENTS: Final[dict[str, type[ClusterEvent]]] = {
    cls.TYPE_NAME: cls for cls in cast(tuple[type[ClusterEvent], ...], get_args(ClusterEvent))
}
"""Every event class by its frame ``type``: the closed set."""


_LOWERERS: Final = {name: lowerer(cls, False) for name, cls in EVENTS.items()}
_DECODERS: Final = {
    name: msgspec.msgpack.Decoder(cls, dec_hook=dec_hook) for name, cls in EVENTS.items()
}


def encode_event(event: ClusterEvent) -> bytes:
    """The msgpack frame of ``event``."""
    cls = type(event)
    if EVENTS.get(getattr(cls, "TYPE_NAME", "")) is not cls:
        raise TypeError(f"{cls!r} is not a cluster event")
    lower = _LOWERERS[event.TYPE_NAME]
    return codec.seal_frame(event.TYPE_NAME, event if lower is None else lower(event))


def decode_event(data: bytes) -> ClusterEvent:
    """The event in ``data``, exactly one frame of the closed set; raises a ProtocolError
    (DecodeError, UnknownMessageType, FrameTooLarge, InvalidField) naming what is wrong."""
    type_name, raw = codec.open_frame(data, max_size=MAX_EVENT_SIZE, where="event")
    decoder = _DECODERS.get(type_name) if type(type_name) is str else None
    if decoder is None:
        raise UnknownMessageType(type_name)
    where = cast(str, type_name)
    try:
        event = decoder.decode(raw)
    except msgspec.ValidationError as exc:
        inner = exc.__cause__
        if isinstance(inner, Nested) and isinstance(inner.error, ProtocolError):
            raise inner.error from exc  # the order's own codec refusal, typed
        raise codec.refusal(exc, where) from exc
    except (msgspec.DecodeError, RecursionError) as exc:
        raise codec.refusal(exc, where) from exc
    codec.check_map(raw, len(msgspec.structs.fields(type(event))), where)
    return event


def message_id(event: ClusterEvent, frame: bytes | None = None) -> str:
    """The stable id JetStream deduplicates ``event`` by: an order's hash (0x-hex) for an
    accepted order, else ``<type>:`` and the keccak of its frame (``frame``, if already
    encoded)."""
    if isinstance(event, OrderAccepted):
        return "0x" + event.order_hash.hex()
    body = frame if frame is not None else encode_event(event)
    return f"{event.TYPE_NAME}:0x{keccak(body).hex()}"


def check_order_hash(event: OrderAccepted, computed: bytes) -> None:
    """Refuse an accepted order whose carried hash is not the one ``computed`` under this
    relay's EIP-712 domain (another chain's or market's cluster, or a corrupt record)."""
    if computed != event.order_hash:
        raise DecodeError(
            f"OrderAccepted.orderHash 0x{event.order_hash.hex()} is not the order's hash "
            f"0x{computed.hex()} under this relay's domain: the stream belongs to another market"
        )


__all__ = [
    "EVENTS",
    "ChainRewound",
    "MAX_EVENT_SIZE",
    "ClusterEvent",
    "FillChanged",
    "LeaseOpened",
    "NonceFloorRaised",
    "OrderAccepted",
    "OrderCancelled",
    "OrderEvicted",
    "check_order_hash",
    "decode_event",
    "encode_event",
    "message_id",
]
