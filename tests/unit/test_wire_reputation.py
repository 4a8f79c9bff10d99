"""ReputationQuery and ReputationReport on the wire: they round-trip, and everything else is a
typed refusal with the value's path. (Missing, unknown and wrongly typed top-level fields of every
message, these included, are covered by test_wire.py through the samples.)"""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings

from market.errors import DecodeError, InvalidField
from market.reputation import Reputation
from nodes.wire import (
    MAX_REPUTATIONS,
    ZERO_ADDRESS,
    Message,
    ReputationQuery,
    ReputationReport,
    decode,
    decode_as,
    encode,
)
from tests.unit.wire_strategies import REPUTATION_QUERIES, REPUTATION_REPORTS, SAMPLES

pytestmark = pytest.mark.unit

REPORT: ReputationReport = SAMPLES["ReputationReport"]
QUERY: ReputationQuery = SAMPLES["ReputationQuery"]


def _tree(message: Message) -> dict[str, Any]:
    tree: dict[str, Any] = msgpack.unpackb(encode(message), raw=False)
    return tree


def _pack(tree: object) -> bytes:
    packed: bytes = msgpack.packb(tree, use_bin_type=True)
    return packed


@settings(max_examples=300, deadline=None)
@given(message=REPUTATION_QUERIES | REPUTATION_REPORTS)
def test_reputation_messages_round_trip(message: ReputationQuery | ReputationReport) -> None:
    data = encode(message)
    assert decode_as(data, type(message)) == message
    assert encode(decode(data)) == data


def test_addresses_travel_as_20_byte_bins_and_come_back_checksummed() -> None:
    provider = REPORT.reputations[0].provider
    tree = _tree(ReputationQuery((provider.lower(),), ZERO_ADDRESS, 5))
    assert tree["body"]["providers"] == [bytes.fromhex(provider[2:])]
    assert tree["body"]["after"] == bytes(20)
    assert decode_as(_pack(tree), ReputationQuery).providers == (provider,)


def test_token_figures_travel_as_32_byte_bins_beyond_64_bits() -> None:
    tree = _tree(REPORT)
    second = tree["body"]["reputations"][1]
    assert second["stakeSlashed"] == (2**70).to_bytes(32, "big")
    assert second["medianFirstClaimS"] is None
    assert decode_as(_pack(tree), ReputationReport).reputations[1].stake_slashed == 2**70


def test_the_reputation_keys_are_the_documented_camel_case_names() -> None:
    keys = list(_tree(REPORT)["body"]["reputations"][0])
    assert keys == [
        "provider",
        "leasesOpened",
        "leasesCompleted",
        "leasesTerminated",
        "leasesSlashed",
        "leasesUnpaid",
        "gpuSecondsDelivered",
        "tokensEarned",
        "claimsPosted",
        "claimsFinalized",
        "claimsDisputed",
        "slashes",
        "stakeSlashed",
        "medianFirstClaimS",
    ]


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("provider", b"\x01" * 19, r"reputations\[0\]\.provider: Expected a 20-byte bin"),
        ("provider", "0x" + "11" * 20, r"reputations\[0\]\.provider: Expected a 20-byte bin"),
        ("leasesOpened", -1, r"reputations\[0\]\.leasesOpened: Expected `int` >= 0"),
        ("leasesOpened", 1.5, r"leasesOpened: Expected `int`, got `float`"),
        ("tokensEarned", 5, r"reputations\[0\]\.tokensEarned: Expected a 32-byte bin"),
        ("tokensEarned", b"\x00" * 33, r"tokensEarned: Expected a 32-byte bin"),
        ("medianFirstClaimS", "12", r"medianFirstClaimS: Expected `int \| null`, got `str`"),
        ("slashes", True, r"slashes: Expected `int`, got `bool`"),
    ],
)
def test_a_bad_figure_is_refused_with_its_path(key: str, value: object, match: str) -> None:
    tree = _tree(REPORT)
    tree["body"]["reputations"][0][key] = value
    with pytest.raises(DecodeError, match=match):
        decode(_pack(tree))


@pytest.mark.parametrize("change", ["missing", "extra"])
def test_a_reputation_with_missing_or_unknown_keys_is_refused(change: str) -> None:
    tree = _tree(REPORT)
    entry = tree["body"]["reputations"][1]
    if change == "missing":
        del entry["slashes"]
    else:
        entry["score"] = 1
    with pytest.raises(
        DecodeError, match=r"ReputationReport\.reputations\[1\]: (missing|unexpected) keys"
    ):
        decode(_pack(tree))


def test_figures_no_history_could_give_are_an_invalid_field() -> None:
    tree = _tree(REPORT)
    tree["body"]["reputations"][0]["leasesOpened"] = 1  # fewer than the 2 that ended
    with pytest.raises(InvalidField, match=r"at ReputationReport\.reputations\[0\]") as info:
        decode(_pack(tree))
    assert (info.value.message_type, info.value.field) == ("Reputation", "leases_opened")


def test_a_query_for_no_provider_at_all_is_an_invalid_field() -> None:
    tree = _tree(QUERY)
    tree["body"]["limit"] = 0
    with pytest.raises(InvalidField, match="must be at least 1") as info:
        decode(_pack(tree))
    assert info.value.field == "limit"
    with pytest.raises(InvalidField):
        ReputationQuery(limit=0)


def test_a_query_naming_too_many_providers_is_refused() -> None:
    tree = _tree(QUERY)
    tree["body"]["providers"] = [b"\x01" * 20] * (MAX_REPUTATIONS + 1)
    with pytest.raises(DecodeError, match=r"providers: Expected `array` of length <= 10000"):
        decode(_pack(tree))


def test_defaults_ask_for_every_provider_from_the_start() -> None:
    query = ReputationQuery()
    assert (query.providers, query.after, query.limit) == ((), ZERO_ADDRESS, MAX_REPUTATIONS)
    report = ReputationReport(1, 2, (Reputation(REPORT.reputations[0].provider),))
    assert report.next_after == ZERO_ADDRESS
    assert decode(encode(report)) == report
