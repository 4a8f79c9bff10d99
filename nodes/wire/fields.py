"""The kinds of value a wire message holds, each with one msgpack form and a validating decoder.

A :class:`Kind` turns a Python value into its msgpack form (``encode``) and checks a parsed msgpack
value back into a Python value (``decode``), raising :class:`~market.errors.DecodeError` with the
value's path for a wrong type, size or key set. A :class:`Struct` maps a dataclass's attributes to
camelCase keys: every key is required and no other is allowed. Signed orders, unsigned orders and
lease terms travel as bins holding a ``market.protocol.codec`` frame, decoded by that codec, so an
order inside a daemon message is byte-for-byte the order the protocol defines.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any, Generic, TypeVar

from market.errors import DecodeError, InvalidField, ProtocolError
from market.protocol import codec
from market.protocol.types import checksum_address

T = TypeVar("T")
E = TypeVar("E", bound=StrEnum)
INT_MIN = -(2**63)
INT_MAX = 2**64 - 1
"""msgpack ints span [INT_MIN, INT_MAX]; a larger int travels as a 32-byte big-endian bin."""


class Kind(Generic[T]):
    """How one value travels; subclasses say what they accept."""

    what = "value"

    def encode(self, value: T) -> object:
        return value

    def decode(self, raw: object, where: str) -> T:
        raise NotImplementedError

    def wrong(self, raw: object, where: str) -> DecodeError:
        return DecodeError(f"{where} must be {self.what}, got {wire_type(raw)}")


class UInt(Kind[int]):
    def __init__(self, bits: int) -> None:
        self.max = 2**bits - 1
        self.what = f"a uint{bits} (msgpack int)"

    def decode(self, raw: object, where: str) -> int:
        if type(raw) is not int:
            raise self.wrong(raw, where)
        if not 0 <= raw <= self.max:
            raise DecodeError(f"{where} is {raw}, outside [0, {self.max}]")
        return raw


class Bool(Kind[bool]):
    what = "a bool"

    def decode(self, raw: object, where: str) -> bool:
        if type(raw) is not bool:
            raise self.wrong(raw, where)
        return raw


class Text(Kind[str]):
    def __init__(self, max_len: int) -> None:
        self.max_len = max_len
        self.what = f"a str of at most {max_len} characters"

    def decode(self, raw: object, where: str) -> str:
        if type(raw) is not str or len(raw) > self.max_len:
            raise self.wrong(raw, where)
        return raw


class GpuModel(Text):
    """A GPU model name: 1 to 32 printable ASCII characters, as the protocol's types require."""

    def __init__(self) -> None:
        super().__init__(32)
        self.what = "a GPU model name (1-32 printable ASCII characters)"

    def decode(self, raw: object, where: str) -> str:
        value = super().decode(raw, where)
        if not value or not value.isascii() or not value.isprintable():
            raise DecodeError(f"{where} must be {self.what}, got {value!r}")
        return value


class Bin(Kind[bytes]):
    """A bin of exactly ``length`` bytes, or of at most ``max_len`` bytes."""

    def __init__(self, length: int | None = None, *, max_len: int | None = None) -> None:
        if (length is None) == (max_len is None):
            raise ValueError("give length or max_len")
        self.length = length
        self.max_len = max_len
        self.what = f"a {length}-byte bin" if length is not None else f"a bin of <= {max_len} bytes"

    def decode(self, raw: object, where: str) -> bytes:
        if type(raw) is not bytes:
            raise self.wrong(raw, where)
        if len(raw) != self.length if self.length is not None else len(raw) > (self.max_len or 0):
            raise self.wrong(raw, where)
        return raw


class Address(Kind[str]):
    """An account address: a 20-byte bin on the wire (as in ``market.protocol.codec``), its EIP-55
    form in Python."""

    what = "a 20-byte bin (an address)"

    def encode(self, value: str) -> object:
        return bytes.fromhex(value[2:])

    def decode(self, raw: object, where: str) -> str:
        if type(raw) is not bytes or len(raw) != 20:
            raise self.wrong(raw, where)
        return checksum_address("0x" + raw.hex())


class UInt256(Kind[int]):
    """A uint256 (token amounts and their sums): a 32-byte big-endian bin, as in
    ``market.protocol.codec``."""

    what = "a 32-byte bin (a uint256)"

    def encode(self, value: int) -> object:
        return value.to_bytes(32, "big")

    def decode(self, raw: object, where: str) -> int:
        if type(raw) is not bytes or len(raw) != 32:
            raise self.wrong(raw, where)
        return int.from_bytes(raw, "big")


class Choice(Kind[E]):
    """A str naming one member of a closed StrEnum."""

    def __init__(self, enum: type[E]) -> None:
        self.enum = enum
        self.what = f"one of {sorted(m.value for m in enum)}"

    def encode(self, value: E) -> object:
        return self.enum(value).value

    def decode(self, raw: object, where: str) -> E:
        if type(raw) is not str or raw not in self.enum.__members__.values():
            raise self.wrong(raw, where)
        return self.enum(raw)


class Frame(Kind[T]):
    """A bin holding one ``market.protocol.codec`` frame of an accepted kind."""

    def __init__(self, what: str, accepts: Callable[[object], bool], max_size: int) -> None:
        self.label = what
        self.what = f"a bin holding a codec frame of {what}"
        self.accepts = accepts
        self.max_size = max_size

    def encode(self, value: T) -> object:
        return codec.encode(value)  # type: ignore[arg-type]  # T is always a codec message

    def decode(self, raw: object, where: str) -> T:
        if type(raw) is not bytes:
            raise self.wrong(raw, where)
        try:
            obj = codec.decode(raw, max_size=self.max_size)
        except ProtocolError as exc:
            raise located(exc, where) from exc
        if not self.accepts(obj):
            raise DecodeError(f"{where} must hold {self.label}, got {type(obj).__name__}")
        return obj  # type: ignore[return-value]  # checked by accepts


class ListOf(Kind[tuple[T, ...]]):
    def __init__(self, item: Kind[T], max_len: int) -> None:
        self.item = item
        self.max_len = max_len
        self.what = f"an array of at most {max_len} items"

    def encode(self, value: tuple[T, ...]) -> object:
        return [self.item.encode(v) for v in value]

    def decode(self, raw: object, where: str) -> tuple[T, ...]:
        if type(raw) is not tuple or len(raw) > self.max_len:
            raise self.wrong(raw, where)
        return tuple(self.item.decode(v, f"{where}[{i}]") for i, v in enumerate(raw))


class MapOf(Kind[dict[str, T]]):
    """A map from str keys (at most ``key_len`` characters) to values of one kind."""

    def __init__(self, value: Kind[T], *, max_len: int, key_len: int = 64) -> None:
        self.value = value
        self.key = Text(key_len)
        self.max_len = max_len
        self.what = f"a map of at most {max_len} entries"

    def encode(self, value: dict[str, T]) -> object:
        return {k: self.value.encode(v) for k, v in value.items()}

    def decode(self, raw: object, where: str) -> dict[str, T]:
        if not isinstance(raw, dict) or len(raw) > self.max_len:
            raise self.wrong(raw, where)
        for k in raw:
            self.key.decode(k, f"{where} key")
        return {k: self.value.decode(v, f"{where}.{k}") for k, v in raw.items()}


class Number(Kind[int | str]):
    """A value with the numbers behind a reason: a str, a msgpack int, or an int beyond msgpack's
    range as a 32-byte big-endian bin (refused when the int would fit a msgpack int)."""

    what = "a str, an int, or a 32-byte bin for an int beyond 64 bits"

    def encode(self, value: int | str) -> object:
        if type(value) is int and not INT_MIN <= value <= INT_MAX:
            if value < 0:
                raise ValueError(f"{value} is below the wire's int range")
            return value.to_bytes(32, "big")
        return value

    def decode(self, raw: object, where: str) -> int | str:
        if type(raw) is str or type(raw) is int:
            return raw
        if type(raw) is bytes and len(raw) == 32:
            value = int.from_bytes(raw, "big")
            if value <= INT_MAX:
                raise DecodeError(f"{where}: {value} fits a msgpack int and must be sent as one")
            return value
        raise self.wrong(raw, where)


class Nullable(Kind[T | None]):
    """nil or a value of ``inner`` (used only where the protocol gives nil a meaning)."""

    def __init__(self, inner: Kind[T]) -> None:
        self.inner = inner
        self.what = f"nil or {inner.what}"

    def encode(self, value: T | None) -> object:
        return None if value is None else self.inner.encode(value)

    def decode(self, raw: object, where: str) -> T | None:
        return None if raw is None else self.inner.decode(raw, where)


class Struct(Kind[T]):
    """A map whose keys are exactly the wire names of ``fields``, built into ``make(**values)``."""

    def __init__(
        self, make: Callable[..., T], fields: tuple[tuple[str, str, Kind[Any]], ...]
    ) -> None:
        self.make = make
        self.fields = fields
        self.names = tuple(name for _, name, _ in fields)
        self.what = "a map with keys " + ", ".join(self.names)

    def encode(self, value: T) -> object:
        return {name: kind.encode(getattr(value, attr)) for attr, name, kind in self.fields}

    def decode(self, raw: object, where: str) -> T:
        if not isinstance(raw, dict):
            raise self.wrong(raw, where)
        check_keys(raw, self.names, where)
        values = {
            attr: kind.decode(raw[name], f"{where}.{name}") for attr, name, kind in self.fields
        }
        try:
            return self.make(**values)
        except InvalidField as exc:
            raise located(exc, where) from exc


def check_keys(mapping: Mapping[str, object], expected: tuple[str, ...], where: str) -> None:
    missing = [k for k in expected if k not in mapping]
    extra = sorted(k for k in mapping if k not in expected)
    if missing or extra:
        raise DecodeError(f"{where}: missing keys {missing}, unexpected keys {extra}")


def located(exc: ProtocolError, where: str) -> ProtocolError:
    """``exc`` with the path of the value that raised it, keeping InvalidField's type."""
    if isinstance(exc, InvalidField):
        return InvalidField(exc.message_type, exc.field, f"{exc.reason} (at {where})")
    return DecodeError(f"{where}: {exc}")


def wire_type(value: object) -> str:
    """How ``value`` appeared on the wire, for error messages."""
    if isinstance(value, bytes):
        return f"{len(value)}-byte bin"
    if value is None:
        return "nil"
    names = {bool: "bool", int: "int", float: "float", str: "str", dict: "map", tuple: "array"}
    return names.get(type(value), type(value).__name__)


__all__ = [
    "Address",
    "Bin",
    "Bool",
    "Choice",
    "Frame",
    "GpuModel",
    "Kind",
    "ListOf",
    "MapOf",
    "Number",
    "Nullable",
    "Struct",
    "Text",
    "UInt",
    "UInt256",
    "check_keys",
    "located",
    "wire_type",
]
