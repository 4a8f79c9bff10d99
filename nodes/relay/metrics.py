"""The relay's Prometheus metrics (text exposition format 0.0.4), on :mod:`nodes.metrics`."""

from __future__ import annotations

from nodes.metrics import Counter, Gauge, Metrics


class RelayMetrics(Metrics):
    """Counters the relay increments; gauges are registered with a function that reads them."""

    def __init__(self) -> None:
        super().__init__()
        self.orders = self.counter(
            "gpumarket_relay_orders_total",
            "Orders received, by result: accepted or the reason they were refused.",
        )
        self.requests = self.counter(
            "gpumarket_relay_requests_total", "HTTP requests answered, by endpoint and status."
        )
        self.fills = self.counter(
            "gpumarket_relay_fills_total",
            "openLease transactions by outcome: submitted, opened, failed, unknown.",
        )
        self.gossip_sent = self.counter(
            "gpumarket_relay_gossip_batches_total", "Gossip batches sent to peers, by result."
        )
        self.gossip_orders = self.counter(
            "gpumarket_relay_gossip_orders_total", "Orders received by gossip, by result."
        )
        self.evicted = self.counter(
            "gpumarket_relay_orders_evicted_total",
            "Resting orders evicted from the full book to make room for others.",
        )


__all__ = ["Counter", "Gauge", "RelayMetrics"]
