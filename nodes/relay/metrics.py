"""The relay's Prometheus metrics, rendered in the text exposition format (version 0.0.4)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from nodes.metrics import Counter, Gauge, Labels, render


class RelayMetrics:
    """Counters the relay increments; gauges are registered with a function that reads them."""

    def __init__(self) -> None:
        self.orders = Counter(
            "gpumarket_relay_orders_total",
            "Orders received, by result: accepted or the reason they were refused.",
        )
        self.requests = Counter(
            "gpumarket_relay_requests_total", "HTTP requests answered, by endpoint and status."
        )
        self.fills = Counter(
            "gpumarket_relay_fills_total",
            "openLease transactions by outcome: submitted, opened, failed, unknown.",
        )
        self.gossip_sent = Counter(
            "gpumarket_relay_gossip_batches_total", "Gossip batches sent to peers, by result."
        )
        self.gossip_orders = Counter(
            "gpumarket_relay_gossip_orders_total", "Orders received by gossip, by result."
        )
        self.gauges: list[Gauge] = []

    def gauge(
        self, name: str, help_text: str, read: Callable[[], Iterable[tuple[Labels, float]]]
    ) -> None:
        self.gauges.append(Gauge(name, help_text, read))

    def render(self) -> str:
        metrics: list[Counter | Gauge] = [
            self.orders,
            self.requests,
            self.fills,
            self.gossip_sent,
            self.gossip_orders,
            *self.gauges,
        ]
        return render(metrics)


__all__ = ["Counter", "Gauge", "RelayMetrics"]
