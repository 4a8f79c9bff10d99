"""nodes.metrics on prometheus_client: declared labels, gauges read at scrape, one registry each."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from nodes.metrics import Metrics

pytestmark = pytest.mark.unit


def _families(metrics: Metrics) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    return {
        f.name: [(s.name, dict(s.labels), s.value) for s in f.samples]
        for f in text_string_to_metric_families(metrics.render())
    }


def test_a_counter_refuses_labels_it_did_not_declare_and_keeps_each_series() -> None:
    m = Metrics()
    jobs = m.counter("gpumarket_test_jobs_total", "Jobs.", ("outcome",))
    jobs.inc(outcome="started")
    jobs.inc(3, outcome="started")
    jobs.inc(outcome="failed")
    for wrong in ({}, {"result": "x"}, {"outcome": "x", "extra": "y"}):
        with pytest.raises(ValueError, match="label"):
            jobs.inc(**wrong)
    assert (jobs.value(outcome="started"), jobs.value(outcome="failed")) == (4, 1)
    assert _families(m)["gpumarket_test_jobs"] == [
        ("gpumarket_test_jobs_total", {"outcome": "started"}, 4.0),
        ("gpumarket_test_jobs_total", {"outcome": "failed"}, 1.0),
    ]


def test_a_gauge_is_read_at_each_scrape_and_not_when_registered() -> None:
    m = Metrics()
    reads: list[int] = []

    def read() -> list[tuple[tuple[tuple[str, str], ...], float]]:
        reads.append(1)
        return [((("phase", "open"),), float(len(reads)))]

    m.gauge("gpumarket_test_leases", "Leases.", read)
    assert reads == []
    assert _families(m)["gpumarket_test_leases"] == [
        ("gpumarket_test_leases", {"phase": "open"}, 1.0)
    ]
    assert _families(m)["gpumarket_test_leases"][0][2] == 2.0


def test_chain_actions_are_observed_by_kind_and_outcome_in_the_daemons_own_registry() -> None:
    a, b = Metrics(), Metrics()
    a.observe_chain_action("withdraw", "done", 0.3)
    a.observe_chain_action("withdraw", "done", 2.0)
    a.observe_chain_action("close_lease", "error", 0.01)
    samples = _families(a)["gpumarket_chain_action_seconds"]
    count = {tuple(sorted(ls.items())): v for n, ls, v in samples if n.endswith("_count")}
    assert count == {
        (("kind", "withdraw"), ("outcome", "done")): 2.0,
        (("kind", "close_lease"), ("outcome", "error")): 1.0,
    }
    below_1s = [v for n, ls, v in samples if n.endswith("_bucket") and ls.get("le") == "1.0"]
    assert sorted(below_1s) == [1.0, 1.0]  # withdraw: 0.3 only; close_lease: 0.01
    assert _families(b)["gpumarket_chain_action_seconds"] == []
    assert "_created" not in a.render()
