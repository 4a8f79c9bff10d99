"""Config values msgspec cannot check with a bound alone, each a type its decoder converts to.

    class GpuDeclaration(Table):
        model: GpuModel                       # printable ASCII, at most 32 characters
        attributes: Attributes = ...          # names and values of market.matching.VOCABULARY

Each class's ``parse`` takes what the TOML file holds and returns the value, or raises
:class:`Invalid` saying why (and where under the field: ``.colour``, ``[1]``); the decoder
(:mod:`nodes.daemon.toml`) calls it through msgspec's ``dec_hook`` and turns the error into a
:class:`~nodes.errors.ConfigError` naming the whole field path.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Self, cast
from urllib.parse import urlsplit

from eth_typing import ChecksumAddress

from market.matching.constraints import VOCABULARY
from market.protocol.types import Billing, checksum_address
from nodes.errors import ConfigError


class Invalid(ConfigError, ValueError):
    """A value a config field cannot take. ``field`` is relative: the name of a struct's field
    (raised by its ``__post_init__``), or ``""``, ``.name``, ``[i]`` under a value's own path.
    A ValueError, so msgspec reports it with the path it was decoding; constructed directly, the
    struct raises it as the ConfigError it is (``path`` the struct's name)."""

    def __init__(self, reason: str, field: str = "", owner: str = "") -> None:
        super().__init__(owner, field, reason)


def _positive(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise Invalid(f"must be a positive number, got {value!r}")
    return float(value)


class Url(str):
    """An http(s) URL with a host."""

    __slots__ = ()

    @classmethod
    def parse(cls, value: object) -> Self:
        parts = urlsplit(value) if isinstance(value, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise Invalid(f"must be an http(s) URL, got {value!r}")
        return cls(value)


class GpuModel(str):
    """A GPU model as orders sign it: 1 to 32 printable ASCII characters (``H100-80GB``)."""

    __slots__ = ()

    @classmethod
    def parse(cls, value: object) -> Self:
        if not isinstance(value, str) or not value:
            raise Invalid("must be a non-empty string")
        if not value.isascii() or not value.isprintable() or len(value) > 32:
            raise Invalid(f"must be at most 32 printable ASCII characters: {value!r}")
        return cls(value)


class GiBytes(int):
    """A size written in GiB (``max_memory_gib = 1.5``), held in bytes."""

    __slots__ = ()

    @classmethod
    def parse(cls, value: object) -> Self:
        return cls(int(_positive(value) * 2**30))


class Address(str):
    """A 0x-prefixed 20-byte hex address, not zero: all lower or upper case, or with a right
    EIP-55 checksum (a mixed case that is not one is a typo); held checksummed."""

    __slots__ = ()

    @classmethod
    def parse(cls, value: object) -> Self:
        if not isinstance(value, str):
            raise Invalid(f"must be a 0x-prefixed hex address string, got {value!r}")
        try:
            address = checksum_address(value)
        except ValueError as exc:
            raise Invalid(f"must be a 0x-prefixed 20-byte hex address, got {value!r}") from exc
        if value[2:] not in (address[2:], value[2:].lower(), value[2:].upper()):
            raise Invalid(f"has a wrong EIP-55 checksum: {value!r}; the checksum is {address}")
        if int(address, 16) == 0:
            raise Invalid("must not be the zero address")
        return cls(address)

    @property
    def checksummed(self) -> ChecksumAddress:
        return cast(ChecksumAddress, str(self))


def billing_names() -> tuple[str, ...]:
    """The billing modes as configs spell them: ``rental``, ``metered``."""
    return tuple(b.name.lower() for b in Billing)


class BillingModes(tuple[Billing, ...]):
    """A non-empty list of distinct billing modes by name (``["rental", "metered"]``), in the
    order given."""

    __slots__ = ()

    @classmethod
    def parse(cls, value: object) -> Self:
        names = list(billing_names())
        if not isinstance(value, list) or not value:
            raise Invalid(f"must be a non-empty list of {names}")
        for i, item in enumerate(value):
            if item not in names:
                raise Invalid(f"must be one of {names}, got {item!r}", f"[{i}]")
        if len(set(value)) != len(value):
            raise Invalid("a name repeats")
        return cls(Billing[n.upper()] for n in value)


class Attributes(Mapping[str, tuple[str, ...]]):
    """Signed attributes by name (``{ region = "eu-west", capabilities = ["ecc", "mig"] }``):
    each attribute and value one of :data:`market.matching.VOCABULARY`'s (a free-form one could
    not be signed, so the contract could not enforce it), a list for several values."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, tuple[str, ...]] | None = None) -> None:
        self._values = dict(values or {})

    @classmethod
    def parse(cls, value: object) -> Self:
        if not isinstance(value, dict):
            raise Invalid("must be a table of attribute = value or [values]")
        out: dict[str, tuple[str, ...]] = {}
        for name, given in value.items():
            where = f".{name}"
            if name not in VOCABULARY:
                raise Invalid(
                    f"is not an attribute orders can sign; known: {sorted(VOCABULARY)}", where
                )
            allowed = VOCABULARY[name][1]
            values = given if isinstance(given, list) else [given]
            if not values:
                raise Invalid(f"name at least one of {list(allowed)}", where)
            for v in values:
                if v not in allowed:
                    raise Invalid(f"{v!r} is not one of {list(allowed)}", where)
            if len(set(values)) != len(values):
                raise Invalid("a value repeats", where)
            out[name] = tuple(values)
        return cls(out)

    def __getitem__(self, key: str) -> tuple[str, ...]:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self.items()) == dict(other.items())

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._values.items())))

    def __repr__(self) -> str:
        return f"Attributes({self._values!r})"


__all__ = [
    "Address",
    "Attributes",
    "BillingModes",
    "GiBytes",
    "GpuModel",
    "Invalid",
    "Url",
    "billing_names",
]
