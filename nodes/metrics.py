"""Prometheus metrics for the daemons, rendered in the text exposition format (version 0.0.4):
counters each daemon increments, gauges read when scraped."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

Labels = tuple[tuple[str, str], ...]
_Labels = Labels


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


class Metrics:
    """A daemon's metrics, rendered in the order they were made: counters it increments, and
    gauges registered with a function that reads them when scraped."""

    def __init__(self) -> None:
        self._metrics: list[Counter | Gauge] = []

    def counter(self, name: str, help_text: str) -> Counter:
        counter = Counter(name, help_text)
        self._metrics.append(counter)
        return counter

    def gauge(
        self, name: str, help_text: str, read: Callable[[], Iterable[tuple[Labels, float]]]
    ) -> None:
        self._metrics.append(Gauge(name, help_text, read))

    def render(self) -> str:
        return render(self._metrics)


def render(metrics: Sequence[Counter | Gauge]) -> str:
    lines: list[str] = []
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


__all__ = ["Counter", "Gauge", "Labels", "Metrics", "render"]
