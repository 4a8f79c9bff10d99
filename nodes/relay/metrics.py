"""The relay's Prometheus metrics, in its own registry (:mod:`nodes.metrics`)."""

from __future__ import annotations

from nodes.metrics import Counter, Metrics


class RelayMetrics(Metrics):
    """Counters the relay increments; gauges are registered with a function that reads them."""

    def __init__(self) -> None:
        super().__init__()
        self.orders = self.counter(
            "gpumarket_relay_orders_total",
            "Orders received, by result: accepted or the reason they were refused.",
            ("status",),
        )
        self.requests = self.counter(
            "gpumarket_relay_requests_total",
            "HTTP requests answered, by endpoint and status.",
            ("endpoint", "status"),
        )
        self.fills = self.counter(
            "gpumarket_relay_fills_total",
            "openLease transactions by outcome: submitted, opened, failed, unknown.",
            ("status",),
        )
        self.gossip_sent = self.counter(
            "gpumarket_relay_gossip_batches_total", "Gossip batches sent to peers, by result.",
            ("result",),
        )  # fmt: skip
        self.gossip_orders = self.counter(
            "gpumarket_relay_gossip_orders_total", "Orders received by gossip, by result.",
            ("status",),
        )  # fmt: skip
        self.evicted = self.counter(
            "gpumarket_relay_orders_evicted_total",
            "Resting orders evicted from the full book to make room for others.",
        )


__all__ = ["Counter", "RelayMetrics"]
