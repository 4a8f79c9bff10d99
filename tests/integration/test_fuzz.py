"""A short seeded fuzz campaign (``bench.fuzz``) against a relay, a provider and a lab, and the
regressions it found."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from bench.fuzz import daemon_routes, fuzz, signed_orders, start_daemons
from market.chain.devnet import Devnet
from nodes.localnet import Daemon, LocalMarket
from nodes.wire import ErrorCode, ErrorResponse, decode
from tests.integration.conftest import MarketEnv
from tests.integration.relay_harness import Relays, open_relays, small_limits
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


@dataclass
class Net:
    market: LocalMarket
    daemons: dict[str, Daemon]


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    with Devnet.start(accounts=12) as dev:
        market = LocalMarket(dev, tmp_path_factory.mktemp("fuzz"))
        try:
            yield Net(market, start_daemons(market))
        finally:
            market.stop_all()


def _refusal(method: str, url: str) -> tuple[int, ErrorResponse]:
    request = urllib.request.Request(url, method=method, data=b"" if method != "GET" else None)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    message = decode(refused.value.read())
    assert isinstance(message, ErrorResponse)
    return refused.value.code, message


def test_short_campaign_answers_every_frame_typed_and_never_5xx(net: Net) -> None:
    orders = signed_orders(net.market, 20)
    figures = fuzz(net.daemons, frames=2000, seed=7, batch=500, flood_every=2, orders=orders)
    assert figures["frames"] == 2000
    results = dict(r.split(":") for r in str(figures["order_results"]).split(","))
    assert {"accepted", "lab_unfunded", "invalid_signature"} <= results.keys()
    failures = figures.get("first_failures", "")
    assert (figures["errors_5xx"], figures["undecodable_refusals"]) == (0, 0), failures
    assert (figures["undecodable_successes"], figures["timeouts"]) == (0, 0), failures
    assert figures["connection_errors"] == 0, failures
    assert figures["stream_subscribers_left"] == 0
    assert all(d.running for d in net.daemons.values())


def test_routes_are_read_from_every_daemons_app() -> None:
    found = {(r.daemon, r.method, r.path) for r in daemon_routes()}
    assert {("relay", "POST", "/v1/orders"), ("relay", "GET", "/v1/stream"),
            ("provider", "POST", "/v1/challenge/open"),
            ("lab", "GET", "/healthz")} <= found  # fmt: skip
    assert not any(method == "HEAD" for _, method, _ in found)


def test_lab_refuses_unknown_routes_and_methods_with_error_responses(net: Net) -> None:
    base = net.daemons["lab"].ready_field("metrics").removesuffix("/metrics")
    status, error = _refusal("POST", base + "/metrics")
    assert (status, error.code) == (405, ErrorCode.METHOD_NOT_ALLOWED)
    status, error = _refusal("GET", base + "/v1/nothing")
    assert (status, error.code) == (404, ErrorCode.NOT_FOUND)


@pytest.fixture
def relays(env: MarketEnv, tmp_path: Path) -> Iterator[Relays]:
    with open_relays(env, tmp_path) as started:
        yield started


def test_stream_asked_without_a_websocket_handshake_keeps_no_subscriber(relays: Relays) -> None:
    relay = relays.start()
    # The relay's own reads follow the hub (bids' fates): count the strangers' subscriptions.
    before = relay.state(lambda r: len(r.hub.subscribers))
    for _ in range(20):
        status, data = relay.raw("GET", "/v1/stream")
        message = decode(data)
        assert status == 400
        assert isinstance(message, ErrorResponse)
    assert relay.state(lambda r: len(r.hub.subscribers)) == before


def test_stream_message_past_its_cap_closes_the_stream_with_1009(relays: Relays) -> None:
    limit = 4096
    relay = relays.start(limits=small_limits(max_frame_size=limit))
    url = relay.client.url + "/v1/stream"

    async def send_too_big() -> tuple[int | None, int]:
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
            await ws.send_bytes(b"\x00" * (limit + 1))  # within the cap: a typed refusal
            answer = decode((await ws.receive(10)).data)
            assert isinstance(answer, ErrorResponse)
            assert answer.code is ErrorCode.FRAME_TOO_LARGE
            await ws.send_bytes(b"\x00" * (4 * limit + 1))
            closed = await ws.receive(10)
            return ws.close_code, closed.type.value

    before = relay.state(lambda r: len(r.hub.subscribers))  # the relay's own reads follow it
    code, kind = relay.lt.run(send_too_big())
    assert (code, kind) == (1009, aiohttp.WSMsgType.CLOSE.value)
    wait_until(lambda: relay.state(lambda r: len(r.hub.subscribers)) == before, 10, "unsubscribed")
