"""What a bid asks of an offer beyond the signed fields, expressed as data.

An offer commits to an attributes document (interconnect, region, driver...) through its signed
``attributesHash``; the document itself travels beside the offer and must hash to it. A bid's
:class:`Requirements` (minimum memory per GPU, attribute constraints, all-or-none) travel beside
the bid. Both are plain data, so the relay, the lab SDK and the provider agent evaluate them the
same way and can explain a miss with the numbers behind it.

    reqs = Requirements(min_memory_gib=80, constraints=(
        Constraint("interconnect", "eq", "nvlink"),
        Constraint("region", "in", ("eu-west", "eu-central")),
        Constraint("bandwidth_gbps", "ge", 400),
    ))
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

import msgpack

from market.errors import InvalidField
from market.protocol.keccak import keccak

AttrValue = str | int
Attributes = Mapping[str, AttrValue]
Op = Literal["eq", "ne", "in", "ge", "le", "has"]
_OPS: frozenset[str] = frozenset(get_args(Op))
EMPTY_ATTRIBUTES: Attributes = {}


def attributes_hash(attributes: Attributes) -> bytes:
    """keccak256 of the canonical msgpack of ``attributes`` (keys sorted); the zero hash of none.

    An offer signs this hash as ``attributesHash``; a relay refuses a document that does not hash
    to it.
    """
    if not attributes:
        return bytes(32)
    for key, value in attributes.items():
        if not isinstance(key, str) or type(value) not in (str, int):
            raise InvalidField("Attributes", str(key), "keys are strings, values str or int")
    packed = msgpack.packb(sorted(attributes.items()), use_bin_type=True)
    return keccak(packed)


@dataclass(frozen=True, slots=True)
class Constraint:
    """``attributes[key] <op> value``; ``has`` only asks that the key be present."""

    key: str
    op: Op
    value: AttrValue | tuple[AttrValue, ...] | None = None

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise InvalidField("Constraint", "op", f"{self.op!r} is not one of {sorted(_OPS)}")
        if self.op == "in" and not isinstance(self.value, tuple):
            raise InvalidField("Constraint", "value", "'in' takes a tuple of values")
        if self.op in ("ge", "le") and type(self.value) is not int:
            raise InvalidField("Constraint", "value", f"'{self.op}' compares integers")

    def holds(self, attributes: Attributes) -> bool:
        if self.key not in attributes:
            return False
        have = attributes[self.key]
        if self.op == "has":
            return True
        if self.op == "eq":
            return have == self.value
        if self.op == "ne":
            return have != self.value
        if self.op == "in":
            assert isinstance(self.value, tuple)
            return have in self.value
        assert isinstance(self.value, int)
        if type(have) is not int:
            return False
        return have >= self.value if self.op == "ge" else have <= self.value

    def __str__(self) -> str:
        return f"{self.key} {self.op} {self.value!r}" if self.op != "has" else f"has {self.key}"


@dataclass(frozen=True, slots=True)
class Requirements:
    """What a bid needs of the offers that fill it, beyond model, price and duration.

    ``all_or_none``: fill the whole bid in one matching pass (a cluster of leases from several
    providers) or not at all; without it the bid may be filled in parts over time.
    """

    min_memory_gib: int = 0
    constraints: tuple[Constraint, ...] = ()
    all_or_none: bool = False

    def unmet(self, attributes: Attributes) -> list[Constraint]:
        """The constraints an offer's attributes break (memory is checked apart)."""
        return [c for c in self.constraints if not c.holds(attributes)]


NO_REQUIREMENTS = Requirements()

__all__ = [
    "EMPTY_ATTRIBUTES",
    "NO_REQUIREMENTS",
    "AttrValue",
    "Attributes",
    "Constraint",
    "Op",
    "Requirements",
    "attributes_hash",
]
