"""The relay in JSON for people and browsers: real HTTP requests, as curl would send them, against
a running relay; msgpack stays the default."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from market.protocol import codec
from market.protocol.eip712 import order_hash
from nodes.wire import CONTENT_TYPE, BookSnapshot, decode_as
from tests.integration.conftest import MarketEnv
from tests.integration.relay_harness import MODEL, Relays, fund_market, offer, open_relays

pytestmark = pytest.mark.integration

JSON = "application/json"


@pytest.fixture
def market(env: MarketEnv) -> MarketEnv:
    return fund_market(env)


@pytest.fixture
def relays(env: MarketEnv, tmp_path: Path) -> Iterator[Relays]:
    with open_relays(env, tmp_path) as started:
        yield started


def _http(
    url: str, *, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, str, bytes]:
    """(status, Content-Type, body) of one plain HTTP request, errors included."""
    request = urllib.request.Request(url, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.headers["Content-Type"], answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


def _frame(data: bytes) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(data)
    assert set(frame) == {"v", "type", "body"}
    assert frame["v"] == 1
    return frame


def test_orders_posted_in_json_are_admitted_and_the_book_is_read_in_json(
    market: MarketEnv, relays: Relays
) -> None:
    relay = relays.start()
    url = relay.client.url
    signed = offer(market)
    request = {
        "v": 1,
        "type": "SubmitOrders",
        "body": {"orders": [{"order": "0x" + codec.encode(signed).hex()}]},
    }
    status, media, data = _http(
        url + "/v1/orders",
        body=json.dumps(request).encode(),
        headers={"Content-Type": JSON, "Accept": JSON},
    )
    assert (status, media.split(";")[0]) == (200, JSON)
    answer = _frame(data)
    assert answer["type"] == "OrdersAccepted"
    [result] = answer["body"]["results"]
    expected_hash = order_hash(market.client().domain, signed.message)
    assert result == {
        "orderHash": "0x" + expected_hash.hex(),
        "status": "accepted",
        "message": "",
        "details": {},
    }

    status, media, data = _http(f"{url}/v1/book/{MODEL}?depth=5", headers={"Accept": JSON})
    assert (status, media.split(";")[0]) == (200, JSON)
    book = _frame(data)
    assert book["type"] == "BookSnapshot"
    assert book["body"]["model"] == MODEL
    [entry] = book["body"]["offers"]
    assert entry["order"] == {"order": "0x" + codec.encode(signed).hex()}
    assert entry["remaining"] == signed.message.gpu_count
    assert book["body"]["bids"] == []


def test_msgpack_stays_the_default_and_what_accept_prefers_wins(
    market: MarketEnv, relays: Relays
) -> None:
    relay = relays.start()
    relay.submit(offer(market))
    url = f"{relay.client.url}/v1/book/{MODEL}"
    for accept in (None, "*/*", CONTENT_TYPE, f"{JSON};q=0.5, {CONTENT_TYPE}"):
        status, media, data = _http(url, headers={"Accept": accept} if accept else {})
        assert (status, media) == (200, CONTENT_TYPE), accept
        assert len(decode_as(data, BookSnapshot).offers) == 1
    for accept in (JSON, f"{CONTENT_TYPE};q=0.2, {JSON}", "text/html, application/json;q=0.9"):
        status, media, data = _http(url, headers={"Accept": accept})
        assert (status, media.split(";")[0]) == (200, JSON), accept
        assert len(_frame(data)["body"]["offers"]) == 1


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "malformed_frame"),
        (b'{"v": 1, "type": "Teleport", "body": {}}', 400, "unknown_type"),
        (b'{"v": 1, "type": "SubmitOrders", "body": {"orders": [{"order": "0x00"}]}}', 400,
         "malformed_frame"),
        (b'{"v": 1, "type": "SubmitOrders", "body": {"orders": [], "extra": 1}}', 400,
         "malformed_frame"),
        (b'{"v": 1, "type": "BookQuery", "body": {"model": "H100-80GB", "depth": 1}}', 400,
         "wrong_type"),
    ],
    ids=["not-json", "unknown-type", "bad-order", "unknown-key", "wrong-type"],
)  # fmt: skip
def test_bad_json_is_refused_with_a_typed_error_in_json(
    market: MarketEnv, relays: Relays, body: bytes, status: int, code: str
) -> None:
    relay = relays.start()
    got, media, data = _http(
        relay.client.url + "/v1/orders",
        body=body,
        headers={"Content-Type": JSON, "Accept": JSON},
    )
    assert (got, media.split(";")[0]) == (status, JSON)
    error = _frame(data)
    assert (error["type"], error["body"]["code"]) == ("ErrorResponse", code)
    assert relay.book().offers == ()
