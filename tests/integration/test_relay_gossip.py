"""Two relays that name each other as peers: an order sent to either reaches both, exactly once,
and the gossip stops there."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from market.chain.devnet import free_port
from market.protocol.types import Bid, Offer, Signed
from nodes.wire import OrderStatus
from tests.integration.conftest import MarketEnv
from tests.integration.relay_harness import (
    RelayHandle,
    Relays,
    bid,
    fund_market,
    offer,
    open_relays,
    statuses,
)
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def relays(env: MarketEnv, tmp_path: Path) -> Iterator[Relays]:
    with open_relays(env, tmp_path) as started:
        yield started


def _holds(relay: RelayHandle, order: Signed[Offer] | Signed[Bid]) -> bool:
    snapshot = relay.book()
    return order in [e.order.signed for e in (*snapshot.offers, *snapshot.bids)]


def _gossip(relay: RelayHandle, status: OrderStatus) -> float:
    return relay.state(lambda r: r.metrics.gossip_orders.value(status=status.value))


def _drained(relay: RelayHandle) -> bool:
    return relay.lt.run(relay.relay.gossiper.drain(10))


def test_two_relays_gossip_orders_both_ways_without_loops(env: MarketEnv, relays: Relays) -> None:
    fund_market(env)
    port_a, port_b = free_port(), free_port()
    a = relays.start(relays.config("a", port=port_a, peers=(f"http://127.0.0.1:{port_b}",)))
    b = relays.start(relays.config("b", port=port_b, peers=(f"http://127.0.0.1:{port_a}",)))

    to_a, to_b = offer(env), bid(env, max_price_per_gpu_second=1)
    assert statuses(a.submit(to_a)) == [OrderStatus.ACCEPTED]
    wait_until(lambda: _holds(b, to_a), 20, "relay b to learn the offer from a")
    assert statuses(b.submit(to_b)) == [OrderStatus.ACCEPTED]
    wait_until(lambda: _holds(a, to_b), 20, "relay a to learn the bid from b")
    assert _drained(a)
    assert _drained(b)

    for relay in (a, b):
        snapshot = relay.book()
        assert [e.order.signed for e in snapshot.offers] == [to_a]
        assert [e.order.signed for e in snapshot.bids] == [to_b]
    # Each relay accepted by gossip exactly the order it did not receive directly. The offer went
    # a -> b and, before b knew a's id, back to a once as a known order, where it stopped; the bid
    # went b -> a only, since a had learned b's id by then.
    assert _gossip(b, OrderStatus.ACCEPTED) == 1
    assert _gossip(a, OrderStatus.ACCEPTED) == 1
    assert _gossip(a, OrderStatus.DUPLICATE_ORDER) == 1
    assert _gossip(b, OrderStatus.DUPLICATE_ORDER) == 0
    delivered = [r.state(lambda x: x.metrics.gossip_sent.value(result="delivered")) for r in (a, b)]
    assert delivered == [1, 2]


def test_gossip_to_an_absent_peer_is_retried_then_dropped_without_blocking(
    env: MarketEnv, relays: Relays, caplog: pytest.LogCaptureFixture
) -> None:
    fund_market(env)
    nobody = f"http://127.0.0.1:{free_port()}"
    relay = relays.start(peers=(nobody,), gossip_attempts=2)
    with caplog.at_level(logging.DEBUG, logger="gpumarket.relay"):
        assert statuses(relay.submit(offer(env))) == [OrderStatus.ACCEPTED]
        assert _drained(relay)
    assert relay.state(lambda r: r.metrics.gossip_sent.value(result="dropped")) == 1
    assert len(relay.book().offers) == 1
    events = [(r.event, r.fields) for r in caplog.records if hasattr(r, "event")]
    assert [e for e, _ in events if e.startswith("gossip_")] == ["gossip_retry", "gossip_dropped"]
    dropped = dict(events)["gossip_dropped"]
    assert (dropped["peer"], dropped["orders"]) == (nobody, 1)
    assert dropped["relay"] == relay.relay.relay_id
