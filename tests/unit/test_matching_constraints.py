"""The signed terms' vocabulary: attribute names to feature bits and back, requirements to signed
bid fields, and names outside the vocabulary refused."""

from __future__ import annotations

import dataclasses

import pytest
from eth_utils import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from market.errors import InvalidField
from market.matching import (
    VOCABULARY,
    Constraint,
    Requirements,
    Unfit,
    decode_features,
    encode_attributes,
    unaccepted_lane,
    unfit,
)
from market.matching.constraints import LANE_BITS, feature_bit, lane_mask
from market.protocol.types import Bid, Billing, Offer, billing_modes
from tests.unit.order_factory import LAB_KEYS, NOW, PROVIDER_KEYS

pytestmark = pytest.mark.unit

# Any subset of each attribute's values (several at once only make sense for flag sets such as
# capabilities, but the encoding does not care).
attribute_sets = st.fixed_dictionaries(
    {},
    optional={
        name: st.lists(st.sampled_from(values), min_size=1, unique=True).map(tuple)
        for name, (_, values) in VOCABULARY.items()
    },
)


@given(attribute_sets)
@settings(max_examples=200, deadline=None)
def test_attributes_round_trip_through_feature_bits(attrs: dict[str, tuple[str, ...]]) -> None:
    bits = encode_attributes(attrs)
    decoded = decode_features(bits)
    assert {k: set(v) for k, v in decoded.items()} == {k: set(v) for k, v in attrs.items()}
    assert encode_attributes(decoded) == bits
    for name, values in attrs.items():  # each attribute stays in its own lane
        assert bits & lane_mask(name) == sum(feature_bit(name, v) for v in values)


def test_each_attribute_has_its_own_lane_of_at_most_16_values() -> None:
    lanes = [lane for lane, _ in VOCABULARY.values()]
    assert len(set(lanes)) == len(lanes)
    assert all(0 <= lane < 16 for lane in lanes)
    assert all(len(values) <= LANE_BITS for _, values in VOCABULARY.values())
    assert feature_bit("region", "us-east") == 1 << (2 * LANE_BITS)
    assert encode_attributes({"interconnect": "nvlink"}) == 0b10


def test_a_single_value_and_a_one_value_tuple_encode_alike() -> None:
    assert encode_attributes({"region": "uk"}) == encode_attributes({"region": ("uk",)})


@pytest.mark.parametrize(
    ("attrs", "field", "words"),
    [
        ({"colour": "red"}, "colour", "is not an attribute; known: ['capabilities'"),
        ({"region": "mars"}, "region", "'mars' is not one of ['us-east'"),
        ({"capabilities": ("ecc", "wings")}, "capabilities", "'wings' is not one of ['ecc'"),
        ({"tier": 3}, "tier", "values are strings, got 3"),
    ],
)
def test_names_outside_the_vocabulary_are_refused(
    attrs: dict[str, object], field: str, words: str
) -> None:
    with pytest.raises(InvalidField) as err:
        encode_attributes(attrs)  # type: ignore[arg-type]
    assert err.value.field == field
    assert words in err.value.reason


@pytest.mark.parametrize(
    ("key", "op", "value", "field"),
    [
        ("colour", "eq", "red", "colour"),
        ("region", "in", ("eu-west", "atlantis"), "region"),
        ("region", "ne", "eu-west", "op"),
        ("region", "in", (), "value"),
        ("region", "ge", 3, "key"),
        ("memory_gib", "ge", -1, "value"),
        ("memory_gib", "ge", "80", "value"),
        ("capabilities", "has", 1, "value"),
    ],
)
def test_constraints_outside_the_vocabulary_are_refused(
    key: str, op: str, value: object, field: str
) -> None:
    with pytest.raises(InvalidField) as err:
        Constraint(key, op, value)  # type: ignore[arg-type]
    assert err.value.field == field


def test_bid_fields_state_every_requirement_as_a_signed_field() -> None:
    reqs = Requirements(
        min_memory_gib=40,
        constraints=(
            Constraint("memory_gib", "ge", 80),
            Constraint("bandwidth_gbps", "ge", 200),
            Constraint("bandwidth_gbps", "ge", 400),
            Constraint("capabilities", "has", "ecc"),
            Constraint("capabilities", "has", "mig"),
            Constraint("interconnect", "in", ("nvlink", "nvswitch")),
            Constraint("region", "eq", "uk"),
        ),
        all_or_none=True,
        billing=Billing.METERED,
    )
    assert reqs.bid_fields() == {
        "min_memory_gib": 80,  # the stricter of the two
        "min_bandwidth_gbps": 400,
        "required_features": encode_attributes({"capabilities": ("ecc", "mig")}),
        "accepted_features": encode_attributes(
            {"interconnect": ("nvlink", "nvswitch"), "region": "uk"}
        ),
        "all_or_none": True,
        "billing": Billing.METERED,
    }
    assert Requirements().bid_fields()["accepted_features"] == 0  # zero lanes accept anything


def test_constraints_on_one_attribute_intersect() -> None:
    both = Requirements(
        constraints=(
            Constraint("region", "in", ("eu-west", "eu-central", "uk")),
            Constraint("region", "in", ("uk", "eu-west", "japan")),
        )
    )
    assert both.bid_fields()["accepted_features"] == encode_attributes(
        {"region": ("eu-west", "uk")}
    )
    disjoint = Requirements(
        constraints=(Constraint("region", "eq", "uk"), Constraint("region", "eq", "japan"))
    )
    with pytest.raises(InvalidField, match="accept no value together"):
        disjoint.bid_fields()


def _pair(offer_attrs: dict[str, object], reqs: Requirements, **offer_kw: int) -> tuple[Offer, Bid]:
    fields: dict[str, object] = {
        "provider": PROVIDER_KEYS[0].address,
        "gpu_model": "H100-80GB",
        "gpu_count": 1,
        "memory_gib": 80,
        "price_per_gpu_second": 1,
        "min_duration": 60,
        "max_duration": 3600,
        "expiry": NOW,
        "nonce": 1,
        "features": encode_attributes(offer_attrs),  # type: ignore[arg-type]
    }
    fields.update(offer_kw)
    offer = Offer(**fields)  # type: ignore[arg-type]
    bid = Bid(LAB_KEYS[0].address, "H100-80GB", 1, 1, 600, NOW, 1, **reqs.bid_fields())
    return offer, bid


def test_the_fit_rule_reads_requirements_as_the_contract_does() -> None:
    eu_nvlink = {"region": "eu-west", "interconnect": "nvlink", "capabilities": ("ecc",)}
    wants = Requirements(
        constraints=(
            Constraint("region", "in", ("eu-west", "uk")),
            Constraint("capabilities", "has", "ecc"),
        )
    )
    assert unfit(*_pair(eu_nvlink, wants)) is None
    assert unfit(*_pair({"region": "uk"}, wants)) is Unfit.FEATURES_MISSING
    offer, bid = _pair({"region": "japan", "capabilities": ("ecc",)}, wants)
    assert unfit(offer, bid) is Unfit.FEATURE_NOT_ACCEPTED
    assert unaccepted_lane(offer, bid) == VOCABULARY["region"][0]
    offer, bid = _pair({"capabilities": ("ecc",)}, wants)  # no region at all: not accepted
    assert unfit(offer, bid) is Unfit.FEATURE_NOT_ACCEPTED
    assert unfit(*_pair({}, Requirements())) is None  # no requirement: any offer
    metered = Requirements(billing=Billing.METERED)
    assert unfit(*_pair({}, metered)) is Unfit.BILLING
    both = billing_modes(Billing.RENTAL, Billing.METERED)
    assert unfit(*_pair({}, metered, billing_modes=both)) is None
    assert unfit(*_pair({}, Requirements(min_memory_gib=81))) is Unfit.MEMORY
    fast = Requirements(constraints=(Constraint("bandwidth_gbps", "ge", 1),))
    assert unfit(*_pair({}, fast)) is Unfit.BANDWIDTH
    assert unfit(*_pair({}, Requirements(), min_duration=601)) is Unfit.DURATION
    offer, bid = _pair({}, Requirements())
    judge = to_checksum_address("0x" + "aa" * 20)
    assert unfit(dataclasses.replace(offer, arbiter=judge), bid) is Unfit.ARBITER
    assert unfit(dataclasses.replace(offer, min_charge_bps=1), bid) is Unfit.MIN_CHARGE
    assert unfit(offer, dataclasses.replace(bid, max_min_charge_bps=1)) is None
    assert [u.value for u in Unfit] == [
        "MarketGpuModelMismatch",
        "MarketDurationOutOfRange",
        "MarketMemoryTooLow",
        "MarketBandwidthTooLow",
        "MarketFeaturesMissing",
        "MarketFeatureNotAccepted",
        "MarketBillingNotOffered",
        "MarketArbiterMismatch",
        "MarketMinChargeTooHigh",
    ]
