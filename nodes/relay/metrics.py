"""The relay's Prometheus metrics, rendered in the text exposition format (version 0.0.4)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

_Labels = tuple[tuple[str, str], ...]


class Counter:
    def __init__(self, name: str, help_text: str) -> None:
        self.name = name
        self.help = help_text
        self.values: dict[_Labels, float] = {}

    def inc(self, amount: float = 1, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        self.values[key] = self.values.get(key, 0) + amount

    def value(self, **labels: str) -> float:
        return self.values.get(tuple(sorted(labels.items())), 0)

    def samples(self) -> Iterable[tuple[_Labels, float]]:
        return self.values.items()

    kind = "counter"


class Gauge:
    """A value read when scraped."""

    kind = "gauge"

    def __init__(
        self, name: str, help_text: str, read: Callable[[], Iterable[tuple[_Labels, float]]]
    ) -> None:
        self.name = name
        self.help = help_text
        self.read = read

    def samples(self) -> Iterable[tuple[_Labels, float]]:
        return self.read()


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
        self, name: str, help_text: str, read: Callable[[], Iterable[tuple[_Labels, float]]]
    ) -> None:
        self.gauges.append(Gauge(name, help_text, read))

    def render(self) -> str:
        lines: list[str] = []
        metrics: list[Counter | Gauge] = [
            self.orders,
            self.requests,
            self.fills,
            self.gossip_sent,
            self.gossip_orders,
            *self.gauges,
        ]
        for metric in metrics:
            lines.append(f"# HELP {metric.name} {metric.help}")
            lines.append(f"# TYPE {metric.name} {metric.kind}")
            for labels, value in sorted(metric.samples()):
                lines.append(f"{metric.name}{_labels(labels)} {_number(value)}")
        return "\n".join(lines) + "\n"


def _labels(labels: _Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


__all__ = ["Counter", "Gauge", "RelayMetrics"]
