"""How the library's values travel inside daemon messages.

A message field holds the library's own objects (a ``Submission``, a ``Signed[Bid]``, a
``Lease``, an ``Explanation``, a ``Reputation``, an address string, a uint256 int); each such type
has one wire form, declared here:

* orders, bids, receipts, vouchers and lease terms travel as bins holding a
  ``market.protocol.codec`` frame, decoded and checked by that codec (an order is ``{"order":
  <bin>}``: the signed order alone, its terms being its signed fields);
* an address is a 20-byte bin (its EIP-55 string in Python), a uint256 a 32-byte big-endian bin;
* a :data:`Value` (the numbers behind a reason or a refusal) is a str, a msgpack int, or an int
  beyond msgpack's range as a 32-byte bin (refused when it would fit a msgpack int);
* an ``Explanation``, ``Reputation`` or ``LabRecord`` travels as the Struct of the same
  attributes below (camelCase keys, bounds as ``Meta``).

In a message class the annotation names the type msgspec decodes (a marker below; the machinery
is ``hooks.py``), while mypy reads the library's type (the ``TYPE_CHECKING`` aliases).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Final, TypeAlias

import msgspec

from market.errors import InvalidField, ProtocolError
from market.matching import Change, Explanation, Reason, ReasonCode, Submission
from market.protocol import codec
from market.protocol.types import Bid, Lease, Offer, Receipt, Signed, Voucher, checksum_address
from market.reputation import LabRecord, Reputation
from nodes.wire.hooks import (
    Marker,
    Nested,
    dec_hook,
    json_dec_hook,
    path_of,
    preparer,
    struct_lowerer,
)

INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**64 - 1
"""msgpack ints span [INT_MIN, INT_MAX]; a larger int travels as a 32-byte big-endian bin."""

Value = int | str


# --- marker types: what msgspec decodes through dec_hook -------------------------------------


def _bin(raw: object, json: bool, what: str) -> bytes:
    if json and type(raw) is str and raw.startswith("0x"):
        try:
            return bytes.fromhex(raw[2:])
        except ValueError:
            pass
    if type(raw) is bytes and not json:
        return raw
    kind = type(raw).__name__ if raw is not None else "nil"
    raise ValueError(f"Expected {what}, got `{kind}`")


class _AddressBin(Marker):
    what = "a 20-byte bin (an address)"
    holds = (str,)

    @classmethod
    def decode(cls, raw: object, json: bool) -> str:
        if json and type(raw) is str:
            try:
                return checksum_address(raw)
            except ValueError as exc:
                raise ValueError(f"Expected {cls.what}: {exc}") from exc
        data = _bin(raw, json, cls.what)
        if len(data) != 20:
            raise ValueError(f"Expected {cls.what}, got {len(data)} bytes")
        return checksum_address("0x" + data.hex())

    @classmethod
    def lower(cls, value: str, json: bool) -> object:
        return value if json else bytes.fromhex(value[2:])


class _UInt256Bin(Marker):
    what = "a 32-byte bin (a uint256)"
    holds = (int,)

    @classmethod
    def decode(cls, raw: object, json: bool) -> int:
        if json and type(raw) is int and raw >= 0 and raw.bit_length() <= 256:
            return raw
        data = _bin(raw, json, cls.what)
        if len(data) != 32:
            raise ValueError(f"Expected {cls.what}, got {len(data)} bytes")
        return int.from_bytes(data, "big")

    @classmethod
    def lower(cls, value: int, json: bool) -> object:
        return value if json else value.to_bytes(32, "big")


class _Number(Marker):
    what = "a str, an int, or a 32-byte bin for an int beyond 64 bits"
    holds = (int, str)
    numeric = True

    @classmethod
    def decode(cls, raw: object, json: bool) -> Value:
        if type(raw) is str or type(raw) is int:
            return raw
        if type(raw) is bytes and len(raw) == 32:
            value = int.from_bytes(raw, "big")
            if value <= INT_MAX:
                raise ValueError(f"{value} fits a msgpack int and must be sent as one")
            return value
        raise ValueError(f"Expected {cls.what}, got `{type(raw).__name__}`")

    @classmethod
    def lower(cls, value: Value, json: bool) -> object:
        if json or type(value) is not int or INT_MIN <= value <= INT_MAX:
            return value
        if value < 0:
            raise ValueError(f"{value} is below the wire's int range")
        return value.to_bytes(32, "big")


class _Frame(Marker):
    """A bin holding one codec frame of the kinds ``accepts`` lets through."""

    label = ""

    @staticmethod
    def accepts(obj: object) -> bool:
        raise NotImplementedError

    @classmethod
    def decode(cls, raw: object, json: bool) -> object:
        data = _bin(raw, json, "a bin holding a codec frame")
        try:
            obj = codec.decode(data, max_size=codec.MAX_FRAME_SIZE)
        except ProtocolError as exc:
            raise Nested(exc) from exc
        if not cls.accepts(obj):
            raise ValueError(f"Expected a codec frame of {cls.label}, got {_kind(obj)}")
        return obj

    @classmethod
    def lower(cls, value: Any, json: bool) -> object:
        data = codec.encode(value)
        return "0x" + data.hex() if json else data


def _kind(obj: object) -> str:
    if type(obj) is Signed:
        return "Signed" + type(obj.message).__name__
    return type(obj).__name__


class _SignedOrderBin(_Frame):
    label = "SignedOffer or SignedBid"
    holds = (Signed,)

    @staticmethod
    def accepts(obj: object) -> bool:
        return type(obj) is Signed and type(obj.message) in (Offer, Bid)


class _OrderBin(_Frame):
    label = "Offer or Bid"
    holds = (Offer, Bid)

    @staticmethod
    def accepts(obj: object) -> bool:
        return type(obj) in (Offer, Bid)


class _LeaseBin(_Frame):
    label = "Lease"
    holds = (Lease,)

    @staticmethod
    def accepts(obj: object) -> bool:
        return type(obj) is Lease


class _SignedBidBin(_Frame):
    label = "SignedBid"
    holds = (Signed,)

    @staticmethod
    def accepts(obj: object) -> bool:
        return type(obj) is Signed and type(obj.message) is Bid


class _SignedReceiptBin(_Frame):
    label = "SignedReceipt"
    holds = (Signed,)

    @staticmethod
    def accepts(obj: object) -> bool:
        return type(obj) is Signed and type(obj.message) is Receipt


class _SignedVoucherBin(_Frame):
    label = "SignedVoucher"
    holds = (Signed,)

    @staticmethod
    def accepts(obj: object) -> bool:
        return type(obj) is Signed and type(obj.message) is Voucher


class _Form(Marker):
    """A library value that travels as the Struct ``form`` (same attribute names)."""

    form: type[msgspec.Struct]
    make: Callable[[msgspec.Struct], object]

    @classmethod
    def decode(cls, raw: object, json: bool) -> object:
        prepared = preparer(cls.form, json)(raw)
        try:
            hook = json_dec_hook if json else dec_hook
            form = msgspec.convert(prepared, cls.form, dec_hook=hook)
        except msgspec.ValidationError as exc:
            inner = exc.__cause__
            if isinstance(inner, Nested):  # from a value inside: the whole path to it
                raise Nested(inner.error, path_of(exc) + inner.path[1:]) from exc
            raise Nested(exc) from exc  # the refusal names its own path
        try:
            return cls.make(form)
        except InvalidField as exc:
            raise Nested(exc) from exc

    @classmethod
    def lower(cls, value: Any, json: bool) -> object:
        # Always a map of the form's keys: the value is the library's object, not the form.
        return struct_lowerer(cls.form, json)(value)


class _Order(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """An order on the wire: its signed frame alone."""

    order: _SignedOrderBin


class _SubmissionMap(_Form):
    what = "an order"
    form = _Order
    holds = (Submission,)

    @staticmethod
    def make(form: Any) -> Submission:
        return Submission(form.order)

    @classmethod
    def decode(cls, raw: object, json: bool) -> object:
        # The relay's hot path: one key holding a valid order. Anything else takes the general
        # path, which says what is wrong and where.
        if type(raw) is dict and len(raw) == 1 and "order" in raw:
            try:
                order = _SignedOrderBin.decode(raw["order"], json)
                return Submission(order)  # type: ignore[arg-type]  # accepts() checked it
            except ValueError:
                pass
        return super().decode(raw, json)

    @classmethod
    def lower(cls, value: Submission, json: bool) -> object:
        return {"order": _SignedOrderBin.lower(value.signed, json)}


_UINT64 = Annotated[int, msgspec.Meta(ge=0)]  # msgpack ints stop at 2^64 - 1
_TEXT = Annotated[str, msgspec.Meta(max_length=4096)]
_KEY = Annotated[str, msgspec.Meta(max_length=64)]
_DETAILS = Annotated[dict[_KEY, _Number], msgspec.Meta(max_length=64)]


class _Reason(msgspec.Struct, forbid_unknown_fields=True, frozen=True, rename="camel"):
    code: ReasonCode
    message: _TEXT
    values: _DETAILS


class _Change(msgspec.Struct, forbid_unknown_fields=True, frozen=True, rename="camel"):
    field: _KEY
    current: _Number
    suggested: _Number


class _Explanation(msgspec.Struct, forbid_unknown_fields=True, frozen=True, rename="camel"):
    matchable: bool
    available_gpus: _UINT64
    reasons: Annotated[tuple[_Reason, ...], msgspec.Meta(max_length=64)]
    changes: Annotated[tuple[_Change, ...], msgspec.Meta(max_length=64)]


class _ExplanationMap(_Form):
    form = _Explanation
    holds = (Explanation,)

    @staticmethod
    def make(form: Any) -> Explanation:
        return Explanation(
            form.matchable,
            form.available_gpus,
            tuple(Reason(r.code, r.message, dict(r.values)) for r in form.reasons),
            tuple(Change(c.field, c.current, c.suggested) for c in form.changes),
        )


class _Reputation(msgspec.Struct, forbid_unknown_fields=True, frozen=True, rename="camel"):
    provider: _AddressBin
    leases_opened: _UINT64
    leases_completed: _UINT64
    leases_terminated: _UINT64
    leases_slashed: _UINT64
    leases_unpaid: _UINT64
    gpu_seconds_delivered: _UInt256Bin
    tokens_earned: _UInt256Bin
    claims_posted: _UINT64
    claims_finalized: _UINT64
    claims_disputed: _UINT64
    slashes: _UINT64
    stake_slashed: _UInt256Bin
    median_first_claim_s: _UINT64 | None


class _ReputationMap(_Form):
    form = _Reputation
    holds = (Reputation,)

    @staticmethod
    def make(form: Any) -> Reputation:
        return Reputation(**msgspec.structs.asdict(form))


class _LabRecord(msgspec.Struct, forbid_unknown_fields=True, frozen=True, rename="camel"):
    lab: _AddressBin
    leases_opened: _UINT64
    disputes_opened: _UINT64
    disputes_won: _UINT64
    disputes_lost: _UINT64
    bonds_lost: _UInt256Bin


class _LabRecordMap(_Form):
    form = _LabRecord
    holds = (LabRecord,)

    @staticmethod
    def make(form: Any) -> LabRecord:
        return LabRecord(**msgspec.structs.asdict(form))


# --- hooks and lowering ----------------------------------------------------------------------


if TYPE_CHECKING:
    # What a message's fields hold in Python, as mypy reads them.
    Address: TypeAlias = str
    UInt256: TypeAlias = int
    Number: TypeAlias = Value
    SignedOrderBin: TypeAlias = Signed[Offer] | Signed[Bid]
    OrderBin: TypeAlias = Offer | Bid
    LeaseBin: TypeAlias = Lease
    SignedBidBin: TypeAlias = Signed[Bid]
    SignedReceiptBin: TypeAlias = Signed[Receipt]
    SignedVoucherBin: TypeAlias = Signed[Voucher]
    SubmissionMap: TypeAlias = Submission
    ExplanationMap: TypeAlias = Explanation
    ReputationMap: TypeAlias = Reputation
    LabRecordMap: TypeAlias = LabRecord
else:
    # What msgspec reads: the markers, whose values dec_hook decodes.
    Address = _AddressBin
    UInt256 = _UInt256Bin
    Number = _Number
    SignedOrderBin = _SignedOrderBin
    OrderBin = _OrderBin
    LeaseBin = _LeaseBin
    SignedBidBin = _SignedBidBin
    SignedReceiptBin = _SignedReceiptBin
    SignedVoucherBin = _SignedVoucherBin
    SubmissionMap = _SubmissionMap
    ExplanationMap = _ExplanationMap
    ReputationMap = _ReputationMap
    LabRecordMap = _LabRecordMap

__all__ = [
    "INT_MAX",
    "INT_MIN",
    "Address",
    "ExplanationMap",
    "LabRecordMap",
    "LeaseBin",
    "Number",
    "OrderBin",
    "ReputationMap",
    "SignedBidBin",
    "SignedOrderBin",
    "SignedReceiptBin",
    "SignedVoucherBin",
    "SubmissionMap",
    "UInt256",
    "Value",
]
