"""Prometheus metrics for the daemons, on ``prometheus_client``.

    metrics = Metrics()                                   # one registry per daemon
    orders = metrics.counter("gpumarket_relay_orders_total", "Orders, by result.", ("status",))
    orders.inc(status="accepted")
    metrics.gauge("gpumarket_relay_book_orders", "Orders.", lambda: [((("side", "bid"),), 3)])
    app = web.Application(middlewares=[metrics.timed_routes, ...])   # latency per route
    chain = DurableChain(db, client, observe=metrics.observe_chain_action)
    metrics.render()                                      # the text exposition /metrics serves

Each daemon owns a :class:`~prometheus_client.CollectorRegistry`, never the global one, so several
relays, agents and labs can live in one process (the tests run them so). Counters declare their
label names; gauges are read when scraped; two histograms come with every daemon:

* ``gpumarket_http_request_duration_seconds{route, method, status}``: each HTTP request, labelled
  by the route's canonical path (``/v1/book/{model}``, never the raw URL), its method (``other``
  past the standard ones) and the status class (``2xx`` ... ``5xx``), so cardinality is bounded
  by the routes the daemon declares;
* ``gpumarket_chain_action_seconds{kind, outcome}``: each durable chain action
  (:class:`nodes.state.DurableChain`), from intent to outcome (``done``, ``failed``, ``obsolete``,
  or ``error`` when it raised).

``_created`` series are disabled (``prometheus_client.disable_created_metrics``) for the whole
process: nothing here reads them, and they double every counter's lines.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Sequence

import prometheus_client
from aiohttp import web
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from nodes.daemon.health import ChainHealth

prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

Labels = tuple[tuple[str, str], ...]
"""A gauge sample's labels, as ``(name, value)`` pairs."""
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Seconds: an order batch takes milliseconds, a receipts answer with outputs up to seconds."""
CHAIN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
"""Seconds: a transaction waits for its receipt (a block or more), a reconcile may wait longer."""
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Counter:
    """A ``prometheus_client`` counter whose label values are given with each increment; each
    series' child is looked up once (``labels()`` costs a lock and a dict, several times the
    increment itself, and the relay counts every order)."""

    def __init__(self, counter: prometheus_client.Counter, labels: Sequence[str]) -> None:
        self.counter = counter
        self.labels = tuple(labels)
        self._children: dict[tuple[str, ...], prometheus_client.Counter] = {}

    def inc(self, amount: float = 1, **labels: str) -> None:
        """Add ``amount`` to the series ``labels`` names (exactly the declared label names)."""
        if not self.labels:
            self.counter.inc(amount)
            return
        key = tuple(labels.get(name, "") for name in self.labels)
        child = self._children.get(key)
        if child is None or len(labels) != len(self.labels):
            child = self.counter.labels(**labels)  # refuses missing or undeclared labels
            self._children[key] = child
        child.inc(amount)

    def value(self, **labels: str) -> float:
        """The series' current value (0 before its first increment)."""
        for family in self.counter.collect():
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels == labels:
                    return float(sample.value)
        return 0.0


class _ReadGauge(Collector):
    """A gauge whose samples ``read`` returns when scraped."""

    def __init__(
        self, name: str, help_text: str, read: Callable[[], Iterable[tuple[Labels, float]]]
    ) -> None:
        self.name = name
        self.help = help_text
        self.read = read

    def describe(self) -> Iterable[Metric]:
        return [Metric(self.name, self.help, "gauge")]  # registered without reading

    def collect(self) -> Iterable[Metric]:
        metric = Metric(self.name, self.help, "gauge")
        for labels, value in self.read():
            metric.add_sample(self.name, dict(labels), float(value))
        return [metric]


class Metrics:
    """A daemon's metrics in its own registry: counters it increments, gauges read when scraped,
    and the HTTP-route and chain-action latency histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http = Histogram(
            "gpumarket_http_request_duration_seconds",
            "HTTP requests answered, by route (its canonical path), method and status class.",
            ("route", "method", "status"),
            registry=self.registry,
            buckets=HTTP_BUCKETS,
        )
        self.chain_actions = Histogram(
            "gpumarket_chain_action_seconds",
            "Durable chain actions, from intent to outcome, by kind and outcome.",
            ("kind", "outcome"),
            registry=self.registry,
            buckets=CHAIN_BUCKETS,
        )
        self.chain = ChainHealth()
        """Whether the daemon's last chain round reached the chain (its ``/healthz``)."""
        self.gauge(
            "gpumarket_chain_up",
            "1 while the daemon's last chain round reached its RPC endpoint, else 0.",
            lambda: [((), 1.0 if self.chain.up else 0.0)],
        )

    def counter(self, name: str, help_text: str, labels: Sequence[str] = ()) -> Counter:
        """A counter named ``name`` (ending ``_total``) with the label names ``labels``."""
        made = prometheus_client.Counter(name, help_text, tuple(labels), registry=self.registry)
        return Counter(made, labels)

    def gauge(
        self, name: str, help_text: str, read: Callable[[], Iterable[tuple[Labels, float]]]
    ) -> None:
        """A gauge whose ``(labels, value)`` samples ``read`` returns at each scrape."""
        self.registry.register(_ReadGauge(name, help_text, read))

    def observe_chain_action(self, kind: str, outcome: str, seconds: float) -> None:
        """Record a durable chain action (the :class:`nodes.state.DurableChain` hook)."""
        self.chain_actions.labels(kind=kind, outcome=outcome).observe(seconds)

    @web.middleware
    async def timed_routes(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """aiohttp middleware: the request's latency, by route, method and status class; put it
        first so it sees the status the other middlewares answered."""
        start = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            self.http.labels(
                route=route_of(request),
                method=request.method if request.method in _METHODS else "other",
                status=f"{status // 100}xx",
            ).observe(time.perf_counter() - start)

    def render(self) -> str:
        """The registry in Prometheus' text exposition format."""
        return generate_latest(self.registry).decode()


def route_of(request: web.Request) -> str:
    """The canonical path of the route ``request`` matched (``unmatched`` when none did)."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


__all__ = ["CHAIN_BUCKETS", "HTTP_BUCKETS", "Counter", "Labels", "Metrics", "route_of"]
