"""The daemons' Prometheus exposition: a request to a real relay and a chain action on anvil show
up in the latency histograms with bounded labels (route template, method, status class; action
kind, outcome)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from nodes.metrics import Metrics
from nodes.state import ClaimBatch, DurableChain, StateDB
from tests.integration.conftest import MarketEnv
from tests.integration.relay_harness import MODEL, Relays, open_relays
from tests.integration.state_setup import Leased, open_lease

pytestmark = pytest.mark.integration

Sample = tuple[str, dict[str, str], float]


def _samples(exposition: str) -> list[Sample]:
    """Every sample of ``exposition``, parsed by prometheus_client's own parser."""
    return [
        (s.name, dict(s.labels), float(s.value))
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
    ]


def _value(samples: list[Sample], name: str, **labels: str) -> float | None:
    return next((v for n, ls, v in samples if n == name and ls == labels), None)


@pytest.fixture
def relays(env: MarketEnv, tmp_path: Path) -> Iterator[Relays]:
    with open_relays(env, tmp_path) as started:
        yield started


def test_requests_are_timed_by_route_template_method_and_status_class(relays: Relays) -> None:
    relay = relays.start()
    relay.book(MODEL)
    relay.book(MODEL)
    status, _ = relay.raw("GET", "/v1/no/such/route")
    assert status == 404
    samples = _samples(relay.do(lambda c: c.text("/metrics")))
    count = "gpumarket_http_request_duration_seconds_count"
    assert _value(samples, count, route="/v1/book/{model}", method="GET", status="2xx") == 2
    assert _value(samples, count, route="unmatched", method="GET", status="4xx") == 1
    # The raw URL never becomes a label: one series per declared route.
    routes = {ls["route"] for n, ls, _ in samples if n == count}
    assert routes == {"/v1/book/{model}", "unmatched"}
    total = "gpumarket_http_request_duration_seconds_sum"
    book_s = _value(samples, total, route="/v1/book/{model}", method="GET", status="2xx")
    assert book_s is not None
    assert book_s > 0
    # The counters tests and dashboards already read keep their names.
    assert _value(
        samples, "gpumarket_relay_requests_total", endpoint="/v1/book/{model}", status="200"
    ) == 2  # fmt: skip


def test_chain_actions_are_timed_by_kind_and_outcome(env: MarketEnv, tmp_path: Path) -> None:
    leased: Leased = open_lease(env)
    metrics = Metrics()
    db = StateDB.open(tmp_path / "provider.sqlite")
    try:
        chain = DurableChain(db, leased.provider.client, observe=metrics.observe_chain_action)
        action = ClaimBatch(((leased.lease, leased.voucher),))
        assert chain.run(action).status == "done"
        assert chain.run(action).status == "obsolete"  # paid already: no transaction
    finally:
        db.close()
    samples = _samples(metrics.render())
    count = "gpumarket_chain_action_seconds_count"
    assert _value(samples, count, kind="claim_batch", outcome="done") == 1
    assert _value(samples, count, kind="claim_batch", outcome="obsolete") == 1
    done_s = _value(
        samples, "gpumarket_chain_action_seconds_sum", kind="claim_batch", outcome="done"
    )
    assert done_s is not None
    assert done_s > 0
