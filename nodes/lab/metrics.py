"""The lab client's Prometheus metrics (text exposition format 0.0.4), on :mod:`nodes.metrics`."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from nodes.metrics import Counter, Gauge, Labels, render


class LabMetrics:
    """Counters the lab increments; gauges read when scraped."""

    def __init__(self) -> None:
        self.events = Counter(
            "gpumarket_lab_events_total",
            "Lab progress events: leases opened, receipts verified, vouchers sent, ...",
        )
        self.vouched = Counter(
            "gpumarket_lab_vouched_total", "Tokens newly promised by vouchers signed since start."
        )
        self.rejected = Counter(
            "gpumarket_lab_receipts_rejected_total", "Receipts or outputs refused, by reason."
        )
        self.gauges: list[Gauge] = []

    def gauge(
        self, name: str, help_text: str, read: Callable[[], Iterable[tuple[Labels, float]]]
    ) -> None:
        self.gauges.append(Gauge(name, help_text, read))

    def render(self) -> str:
        return render([self.events, self.vouched, self.rejected, *self.gauges])


__all__ = ["LabMetrics"]
