"""A daemon's /healthz: 200 while its chain rounds reach the chain, 503 with why once not."""

from __future__ import annotations

from nodes.daemon.health import ChainHealth, health_response
from nodes.metrics import Metrics


def test_healthy_until_a_round_fails_then_again_once_one_reaches_the_chain() -> None:
    health = ChainHealth()
    assert health.up
    assert health.describe() is None
    ok = health_response(health, "relay=r1")
    assert (ok.status, ok.text) == (200, "ok relay=r1\n")

    health.unreachable("http://127.0.0.1:9: connection refused")
    health.unreachable("http://127.0.0.1:9: timed out")  # the outage's start is kept
    assert not health.up
    down = health_response(health)
    assert down.status == 503
    assert down.text is not None
    assert down.text.startswith("chain_unavailable http://127.0.0.1:9: timed out for ")

    health.reached()
    assert health.up
    assert health_response(health).status == 200


def test_the_chain_up_gauge_follows_the_health() -> None:
    metrics = Metrics()
    assert "gpumarket_chain_up 1.0" in metrics.render()
    metrics.chain.unreachable("down")
    assert "gpumarket_chain_up 0.0" in metrics.render()
    metrics.chain.reached()
    assert "gpumarket_chain_up 1.0" in metrics.render()
