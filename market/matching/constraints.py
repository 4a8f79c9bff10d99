"""Hardware terms as the chain compares them: attribute bits, requirements and the one fit rule.

Every term a lab may require of an offer is signed by both parties and checked by
``Market.openLease``, so the relay, the lab SDK, the provider agent and the contract apply one
rule (``docs/decisions/0011-signed-terms.md``):

- numbers: ``offer.memory_gib >= bid.min_memory_gib``, ``offer.bandwidth_gbps >=
  bid.min_bandwidth_gbps``;
- attributes: an offer signs ``features``, a 256-bit set in 16 lanes of 16 bits. Each lane is one
  attribute of :data:`VOCABULARY` (interconnect, region...), each bit one of its values. A bid
  signs ``required_features`` (bits the offer must all have: flags such as ``ecc``) and
  ``accepted_features`` (per lane, the values it accepts; a lane left at zero accepts anything,
  an offer that declares none included);
- billing: the bid's mode is one the offer's ``billing_modes`` accepts;
- disputes and griefing: both name the same ``arbiter``, and the offer's ``min_charge_bps`` is at
  most the bid's ``max_min_charge_bps``.

Build the bits from names, never by hand::

    features = encode_attributes({"interconnect": "nvlink", "region": "eu-west",
                                  "capabilities": ("ecc", "mig")})
    reqs = Requirements(min_memory_gib=80, constraints=(
        Constraint("interconnect", "in", ("nvlink", "nvswitch")),
        Constraint("region", "eq", "eu-west"),
        Constraint("capabilities", "has", "ecc"),
        Constraint("bandwidth_gbps", "ge", 400),
    ))
    bid = Bid(..., **reqs.bid_fields())

Anything that cannot be written this way (an upper bound, a free-text attribute) is not a term
the contract could enforce, so it is not part of the signed API.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal, get_args

from market.errors import InvalidField
from market.protocol.types import Bid, Billing, Offer

LANE_BITS = 16
LANES = 16
_LANE_MASK = (1 << LANE_BITS) - 1

VOCABULARY: Mapping[str, tuple[int, tuple[str, ...]]] = {
    # attribute: (lane, values in bit order). Append values, never reorder: bits are signed.
    "interconnect": (0, ("pcie", "nvlink", "nvswitch")),
    "network": (1, ("ethernet", "infiniband", "roce")),
    "region": (
        2,
        (
            "us-east",
            "us-west",
            "us-central",
            "canada",
            "eu-west",
            "eu-central",
            "eu-north",
            "uk",
            "asia-east",
            "asia-south",
            "asia-southeast",
            "japan",
            "oceania",
            "south-america",
            "middle-east",
            "africa",
        ),
    ),
    "tier": (3, ("home", "tier1", "tier2", "tier3", "tier4")),
    "form_factor": (4, ("sxm", "pcie-card")),
    "capabilities": (
        5,
        (
            "ecc",
            "mig",
            "confidential-computing",
            "encrypted-storage",
            "dedicated-host",
            "public-ip",
            "job-network",  # the provider lets jobs that sign network = true reach the network
        ),
    ),
}
"""The attributes an offer can sign, each a lane of ``features`` with up to 16 values."""

NUMERIC = ("memory_gib", "bandwidth_gbps")
"""Terms compared as numbers (``ge`` only): the offer's memory and bandwidth per GPU."""

AttrValue = str | tuple[str, ...]
Attributes = Mapping[str, AttrValue]
Op = Literal["eq", "in", "has", "ge"]
_OPS: frozenset[str] = frozenset(get_args(Op))
EMPTY_ATTRIBUTES: Attributes = {}


def feature_bit(attribute: str, value: str) -> int:
    """The bit of ``attribute = value`` in a features word; InvalidField for a name outside
    :data:`VOCABULARY`."""
    try:
        lane, values = VOCABULARY[attribute]
    except KeyError:
        raise InvalidField(
            "Attributes", attribute, f"is not an attribute; known: {sorted(VOCABULARY)}"
        ) from None
    try:
        index = values.index(value)
    except ValueError:
        raise InvalidField(
            "Attributes", attribute, f"{value!r} is not one of {list(values)}"
        ) from None
    return 1 << (lane * LANE_BITS + index)


def lane_mask(attribute: str) -> int:
    """Every bit of ``attribute``'s lane."""
    if attribute not in VOCABULARY:
        raise InvalidField(
            "Attributes", attribute, f"is not an attribute; known: {sorted(VOCABULARY)}"
        )
    return _LANE_MASK << (VOCABULARY[attribute][0] * LANE_BITS)


def encode_attributes(attributes: Attributes) -> int:
    """An offer's ``features`` from attribute names: one value per attribute, or a tuple of
    values (a flag set such as ``capabilities``)."""
    features = 0
    for attribute, value in attributes.items():
        values = value if isinstance(value, tuple) else (value,)
        for v in values:
            if not isinstance(v, str):
                raise InvalidField("Attributes", attribute, f"values are strings, got {v!r}")
            features |= feature_bit(attribute, v)
    return features


def decode_features(features: int) -> dict[str, tuple[str, ...]]:
    """The attribute names a features word sets (bits outside the vocabulary are ignored)."""
    out: dict[str, tuple[str, ...]] = {}
    for attribute, (lane, values) in VOCABULARY.items():
        bits = features >> (lane * LANE_BITS) & _LANE_MASK
        names = tuple(v for i, v in enumerate(values) if bits >> i & 1)
        if names:
            out[attribute] = names
    return out


@dataclass(frozen=True, slots=True)
class Constraint:
    """One requirement: ``attribute eq value``, ``attribute in (values)`` (the offer has one of
    them), ``attribute has value`` (the offer has that value; several may be required), or
    ``memory_gib|bandwidth_gbps ge n``."""

    key: str
    op: Op
    value: str | int | tuple[str, ...]

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise InvalidField("Constraint", "op", f"{self.op!r} is not one of {sorted(_OPS)}")
        if self.op == "ge":
            if self.key not in NUMERIC:
                raise InvalidField("Constraint", "key", f"'ge' compares one of {NUMERIC}")
            if type(self.value) is not int or not 0 <= self.value < 2**32:
                raise InvalidField("Constraint", "value", "'ge' takes a uint32")
            return
        if self.op == "in" and (not isinstance(self.value, tuple) or not self.value):
            raise InvalidField("Constraint", "value", "'in' takes a non-empty tuple of values")
        values = self.value if self.op == "in" and isinstance(self.value, tuple) else (self.value,)
        for v in values:
            if not isinstance(v, str):
                raise InvalidField("Constraint", "value", f"attribute values are str: {v!r}")
            feature_bit(self.key, v)  # refuses names outside the vocabulary

    def bits(self) -> int:
        values = self.value if isinstance(self.value, tuple) else (self.value,)
        return sum(feature_bit(self.key, v) for v in values if isinstance(v, str))

    def __str__(self) -> str:
        return f"{self.key} {self.op} {self.value!r}"


@dataclass(frozen=True, slots=True)
class Requirements:
    """What a bid needs of the offers that fill it, beyond model, price and duration, as the
    signed bid fields :meth:`bid_fields` returns. Several ``in``/``eq`` constraints on one
    attribute intersect."""

    min_memory_gib: int = 0
    constraints: tuple[Constraint, ...] = ()
    all_or_none: bool = False
    billing: Billing = Billing.RENTAL

    def bid_fields(self) -> dict[str, Any]:
        """The signed ``Bid`` fields that state these requirements."""
        memory = self.min_memory_gib
        bandwidth = 0
        required = 0
        accepted: dict[int, int] = {}
        for c in self.constraints:
            if c.op == "ge":
                assert isinstance(c.value, int)
                if c.key == "memory_gib":
                    memory = max(memory, c.value)
                else:
                    bandwidth = max(bandwidth, c.value)
            elif c.op == "has":
                required |= c.bits()
            else:
                lane = lane_mask(c.key)
                accepted[lane] = accepted.get(lane, lane) & c.bits()
                if accepted[lane] == 0:
                    raise InvalidField(
                        "Requirements", c.key, "its constraints accept no value together"
                    )
        return {
            "min_memory_gib": memory,
            "min_bandwidth_gbps": bandwidth,
            "required_features": required,
            "accepted_features": sum(accepted.values()),
            "all_or_none": self.all_or_none,
            "billing": self.billing,
        }


NO_REQUIREMENTS = Requirements()


class Unfit(Enum):
    """Why an offer cannot serve a bid, one per ``Market`` custom error of the pair check."""

    MODEL = "MarketGpuModelMismatch"
    DURATION = "MarketDurationOutOfRange"
    MEMORY = "MarketMemoryTooLow"
    BANDWIDTH = "MarketBandwidthTooLow"
    FEATURES_MISSING = "MarketFeaturesMissing"
    FEATURE_NOT_ACCEPTED = "MarketFeatureNotAccepted"
    BILLING = "MarketBillingNotOffered"
    ARBITER = "MarketArbiterMismatch"
    MIN_CHARGE = "MarketMinChargeTooHigh"


def _nonzero_lanes(x: int) -> int:
    """Bit ``lane`` set for each lane of ``x`` that is not zero."""
    if not x:
        return 0  # most bids accept any value: the book calls this for every pair it compares
    return sum(1 << lane for lane in range(LANES) if x >> (lane * LANE_BITS) & _LANE_MASK)


def unfit(offer: Offer, bid: Bid) -> Unfit | None:
    """The first signed term, in the contract's order, on which ``offer`` cannot serve ``bid``
    (price, size, signatures and stake apart), or None when it fits. This is
    ``Market._checkPair``: a pair fits here exactly when the contract accepts those terms."""
    if offer.gpu_model != bid.gpu_model:
        return Unfit.MODEL
    if not offer.min_duration <= bid.duration <= offer.max_duration:
        return Unfit.DURATION
    if offer.memory_gib < bid.min_memory_gib:
        return Unfit.MEMORY
    if offer.bandwidth_gbps < bid.min_bandwidth_gbps:
        return Unfit.BANDWIDTH
    if bid.required_features & ~offer.features:
        return Unfit.FEATURES_MISSING
    accepted = bid.accepted_features
    if _nonzero_lanes(accepted) & ~_nonzero_lanes(accepted & offer.features):
        return Unfit.FEATURE_NOT_ACCEPTED
    if not offer.accepts(bid.billing):
        return Unfit.BILLING
    if offer.arbiter != bid.arbiter:
        return Unfit.ARBITER
    if offer.min_charge_bps > bid.max_min_charge_bps:
        return Unfit.MIN_CHARGE
    return None


def unaccepted_lane(offer: Offer, bid: Bid) -> int | None:
    """The first lane where the bid accepts values and the offer has none of them."""
    accepted = bid.accepted_features
    unmet = _nonzero_lanes(accepted) & ~_nonzero_lanes(accepted & offer.features)
    return (unmet & -unmet).bit_length() - 1 if unmet else None


def fits_terms(offer: Offer, bid: Bid) -> bool:
    """Whether every signed term of the pair but price and size fits (:func:`unfit` is None)."""
    return unfit(offer, bid) is None


__all__ = [
    "EMPTY_ATTRIBUTES",
    "LANES",
    "LANE_BITS",
    "NO_REQUIREMENTS",
    "NUMERIC",
    "VOCABULARY",
    "AttrValue",
    "Attributes",
    "Constraint",
    "Op",
    "Requirements",
    "Unfit",
    "decode_features",
    "encode_attributes",
    "feature_bit",
    "fits_terms",
    "lane_mask",
    "unaccepted_lane",
    "unfit",
]
