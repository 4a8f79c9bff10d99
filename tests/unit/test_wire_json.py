"""The daemons' frames in JSON: the same messages, bins as 0x-hex strings, the same refusals; and
the content negotiation the HTTP servers share."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings

from market.errors import DecodeError, InvalidField, UnknownMessageType
from market.protocol import codec
from nodes.wire import (
    BookQuery,
    Message,
    SubmitOrders,
    VoucherAccepted,
    decode,
    decode_json,
    encode,
    encode_json,
)
from nodes.wire.answers import wants_json
from tests.unit.wire_strategies import MESSAGES, SAMPLES

pytestmark = pytest.mark.unit


def _tree(message: Message) -> dict[str, Any]:
    tree: dict[str, Any] = json.loads(encode_json(message))
    return tree


@settings(max_examples=200, deadline=None)
@given(message=MESSAGES)
def test_every_message_round_trips_through_json(message: Message) -> None:
    assert decode_json(encode_json(message)) == message
    assert decode(encode(decode_json(encode_json(message)))) == message


def test_every_sampled_type_round_trips_through_json() -> None:
    for name, message in SAMPLES.items():
        assert decode_json(encode_json(message)) == message, name
        assert _tree(message)["type"] == name


def test_bins_are_hex_and_orders_are_their_codec_frames() -> None:
    message = SAMPLES["SubmitOrders"]
    assert isinstance(message, SubmitOrders)
    tree = _tree(message)
    assert tree["v"] == 1
    order = tree["body"]["orders"][0]["order"]
    assert order == "0x" + codec.encode(message.orders[0].signed).hex()
    accepted = _tree(VoucherAccepted(b"\x07" * 32, 2**200, True))["body"]
    assert accepted == {"leaseId": "0x" + "07" * 32, "cumulativeAmount": 2**200, "new": True}


def test_addresses_are_eip55_strings() -> None:
    tree = _tree(SAMPLES["ReputationReport"])
    provider = tree["body"]["reputations"][0]["provider"]
    assert provider.startswith("0x")
    assert len(provider) == 42


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (lambda t: t["body"].update(extra=1), DecodeError, r"unexpected keys \['extra'\]"),
        (lambda t: t["body"].pop("depth"), DecodeError, r"missing keys \['depth'\]"),
        (lambda t: t["body"].update(depth=-1), DecodeError, r"BookQuery\.depth"),
        (lambda t: t["body"].update(model="H100\n"), DecodeError, r"BookQuery\.model"),
        (lambda t: t.update(type="Teleport"), UnknownMessageType, "Teleport"),
        (lambda t: t.update(v=2), DecodeError, "unsupported wire version 2"),
    ],
    ids=["extra", "missing", "negative", "model", "type", "version"],
)
def test_bad_json_is_refused_like_bad_msgpack(change: Any, error: type, match: str) -> None:
    tree = _tree(BookQuery("H100-80GB", 3))
    change(tree)
    with pytest.raises(error, match=match):
        decode_json(json.dumps(tree).encode())


def test_an_order_in_json_is_checked_by_the_codec_with_its_path() -> None:
    tree = _tree(SAMPLES["SubmitOrders"])
    tree["body"]["orders"][0]["order"] = "0x" + codec.encode(SAMPLES["ExplainRequest"].order).hex()  # type: ignore[union-attr]
    with pytest.raises(DecodeError, match=r"SubmitOrders\.orders\[0\]\.order"):
        decode_json(json.dumps(tree).encode())
    tree["body"]["orders"][0]["order"] = "0xzz"
    with pytest.raises(DecodeError, match=r"SubmitOrders\.orders\[0\]\.order"):
        decode_json(json.dumps(tree).encode())


def test_a_json_address_must_be_an_address() -> None:
    tree = _tree(SAMPLES["ReputationQuery"])
    tree["body"]["after"] = "0x1234"
    with pytest.raises(DecodeError, match=r"ReputationQuery\.after"):
        decode_json(json.dumps(tree).encode())


def test_a_json_query_breaking_a_rule_is_an_invalid_field() -> None:
    tree = _tree(SAMPLES["ReputationQuery"])
    tree["body"]["limit"] = 0
    with pytest.raises(InvalidField, match="must be at least 1"):
        decode_json(json.dumps(tree).encode())


def test_oversize_json_is_refused_before_parsing() -> None:
    with pytest.raises(DecodeError, match="exceeds"):
        decode_json(b"{" * 100, max_size=99)


@pytest.mark.parametrize(
    ("accept", "json_wanted"),
    [
        (None, False),
        ("", False),
        ("*/*", False),
        ("application/msgpack", False),
        ("application/json", True),
        ("text/html, application/json;q=0.9", True),
        ("application/json;q=0.5, application/msgpack", False),
        ("application/msgpack;q=0.2, application/json", True),
        ("application/json, application/msgpack", True),
        ("application/msgpack, application/json", False),
        ("application/json;q=0", False),
    ],
)
def test_accept_picks_json_only_when_it_prefers_it(accept: str | None, json_wanted: bool) -> None:
    assert wants_json(accept) is json_wanted
