"""A relay cluster of real processes: orders accepted per second with 1, 2 and 3 instances,
propagation from one instance's acceptance to another's book, and a fault run.

python -m bench.relay_cluster      -> bench/results/relay_cluster.json

An anvil devnet with the market of ``bench.relay`` (16 providers, 16 labs; its ``open_market``,
``make_orders``, ``frames`` and ``RelayProcess`` are reused), one PostgreSQL server
(``tests/integration/pg_server.py``) and one ``nats-server -js``
(``tests/integration/nats_server.py``). Each measurement gets a fresh database and its own
cluster name (so its own stream), and starts its instances with the CLI (``gpumarket relay
--store URL --cluster NAME --nats URL --instance ID``, a matcher key each: one leads).

* Throughput: the same signed orders (none crossing: no fill) in SubmitOrders frames of
  ``--batch``, sent by ``--clients`` clients per instance, each client to one instance, all at
  once; ``orders_per_s_N`` counts orders answered ``accepted`` over the wall time, and
  ``ratio_N`` is that over the one-instance figure. Every order is admitted whole by the instance
  it reached (signatures, stake, funds, bounds), stored in PostgreSQL and published to the stream
  (its ack awaited) before the answer, and applied by every other instance's book.
* Propagation: two instances; single orders sent to the first one at a time (paced at
  ``PACE_PER_S``), while a ``/v1/stream`` subscriber of each instance records when each order's
  ``BookChange`` arrives (one process, one clock). A latency is the second instance's arrival
  less the first's: from the moment the first instance's book took the order (before it
  published it and answered ``accepted``) to the moment the second's did, through the stream;
  p50 and p99 over ``PROPAGATION_ORDERS`` orders.
* Fault run: three instances; resting orders and crossing bids (one in ``FAULT_CROSS_EVERY``)
  sent to the two instances that do not lead, the leader killed with SIGKILL halfway. Afterwards
  ``lost_orders`` counts orders answered ``accepted`` that are neither in both surviving
  instances' books nor in a lease the chain opened, and ``double_opens`` the LeaseOpened events
  beyond the first for one (offer, bid) pair.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg

from bench.relay import (
    MODELS,
    Market,
    RelayProcess,
    _accepted,
    frames,
    make_orders,
    open_market,
)
from bench.results_file import write
from market.chain.client import MarketClient
from market.chain.devnet import Devnet
from market.matching import Submission
from market.protocol.eip712 import order_hash
from market.protocol.types import Bid, Offer, Signed
from nodes.wire import (
    BookChange,
    OrdersAccepted,
    OrderStatus,
    RelayClient,
    RelayStream,
    SubmitOrders,
    decode_as,
    encode,
)
from tests.integration.nats_server import NatsServer
from tests.integration.pg_server import PgServer

INSTANCES = (1, 2, 3)
ORDERS = 12_000
BATCH = 200
CLIENTS = 2
"""Clients per instance."""
PROPAGATION_ORDERS = 300
PACE_PER_S = 100.0
FAULT_ORDERS = 2_000
FAULT_CROSS_EVERY = 20
LEASE_TTL_S = 2.0
SETTLE_DEADLINE_S = 90.0
PROVIDERS, LABS = 16, 16


class Cluster:
    """``n`` instances of cluster ``name`` on ``store`` and ``nats``, stopped on exit."""

    def __init__(
        self, market: Market, workdir: Path, store: str, nats: str, name: str, n: int
    ) -> None:
        self.store = store
        self.instances: list[RelayProcess] = []
        try:
            for i in range(n):
                state = ["--store", store, "--cluster", name, "--nats", nats]
                state += ["--instance", f"{name}-{i}", "--lease-ttl", str(LEASE_TTL_S)]
                self.instances.append(RelayProcess(market, workdir, state, f"{name}-{i}"))
        except BaseException:
            self.stop()
            raise

    def leader(self) -> int | None:
        """Which instance holds the matcher lease (its index), as PostgreSQL has it."""
        with psycopg.connect(self.store, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT holder FROM matcher_lease WHERE expires > clock_timestamp()"
            ).fetchone()
        return None if row is None else int(str(row[0]).rsplit("-", 1)[1])

    def stop(self) -> None:
        for relay in self.instances:
            if relay.proc.poll() is None:
                relay.stop()


@contextlib.contextmanager
def cluster(
    market: Market, workdir: Path, pg: PgServer, nats: NatsServer, name: str, n: int
) -> Iterator[Cluster]:
    with pg.database() as url:
        running = Cluster(market, workdir, url, nats.url, name, n)
        try:
            yield running
        finally:
            running.stop()


def _percentile_ms(sorted_s: list[float], q: float) -> float:
    index = min(len(sorted_s) - 1, max(0, round(q * len(sorted_s)) - 1))
    return round(sorted_s[index] * 1e3, 2)


def _wait(predicate: Callable[[], bool], deadline_s: float, what: str) -> None:
    end = time.monotonic() + deadline_s
    while not predicate():
        if time.monotonic() > end:
            raise RuntimeError(f"timed out after {deadline_s}s waiting for {what}")
        time.sleep(0.05)  # polling a server's state, with a deadline


# --- throughput ---------------------------------------------------------------------------------


async def _send(urls: list[str], bodies: list[bytes], clients: int) -> tuple[float, int]:
    """Every frame once, ``clients`` clients per URL; (seconds, orders accepted)."""
    pending = iter(range(len(bodies)))
    answers: list[bytes] = []

    async def worker(client: RelayClient) -> None:
        for i in pending:
            status, data = await client.raw("POST", "/v1/orders", bodies[i])
            if status != 200:
                raise RuntimeError(f"batch {i}: HTTP {status} from {client.url}")
            answers.append(data)

    relays = [RelayClient(url, timeout_s=60.0) for url in urls for _ in range(clients)]
    try:
        for c in relays:
            await c.raw("GET", "/healthz")
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in relays))
        seconds = time.perf_counter() - t0
    finally:
        for c in relays:
            await c.close()
    return seconds, _accepted(answers)[0]


def throughput(
    market: Market, workdir: Path, pg: PgServer, nats: NatsServer, orders: int, clients: int
) -> dict[str, float | int]:
    signed = make_orders(market, orders + 2 * BATCH, cross_every=0)
    bodies = frames(signed, BATCH)
    figures: dict[str, float | int] = {}
    for n in INSTANCES:
        with cluster(market, workdir, pg, nats, f"tput{n}", n) as running:
            urls = [r.url for r in running.instances]
            warm = asyncio.run(_send(urls[:1], bodies[:2], 1))  # stakes read once
            assert warm[1] == 2 * BATCH, warm
            seconds, accepted = asyncio.run(_send(urls, bodies[2:], clients))
            assert accepted == orders, f"{n} instances accepted {accepted} of {orders}"
            figures[f"orders_per_s_{n}"] = round(accepted / seconds, 1)
            for url in urls:  # every instance's book holds every order: the stream reached all
                _wait(_holds(url, orders + 2 * BATCH), 60, f"every order in {url}'s book")
    one = figures["orders_per_s_1"]
    for n in INSTANCES:
        figures[f"ratio_{n}"] = round(figures[f"orders_per_s_{n}"] / one, 3)
    return figures


def _holds(url: str, total: int) -> Callable[[], bool]:
    return lambda: _book_size(url) == total


def _book_size(url: str) -> int:
    async def size() -> int:
        async with RelayClient(url) as client:
            text = await client.text("/metrics")
        return sum(
            int(float(line.split()[-1]))
            for line in text.splitlines()
            if line.startswith("gpumarket_relay_book_orders{")
        )

    return asyncio.run(size())


# --- propagation --------------------------------------------------------------------------------


async def _propagation(
    first: str, second: str, orders: list[Signed[Offer] | Signed[Bid]]
) -> list[float]:
    """Send ``orders`` one at a time to ``first``; for each, the time from its BookChange on
    ``first``'s stream (its book took it) to its BookChange on ``second``'s, one clock."""
    seen: list[dict[bytes, float]] = [{}, {}]
    async with (
        RelayClient(first) as sender,
        RelayClient(second) as watcher,
        sender.stream() as at_first,
        watcher.stream() as at_second,
    ):

        async def watch(stream: RelayStream, into: dict[bytes, float]) -> None:
            while len(into) < len(orders):
                message = await stream.receive(timeout_s=30)
                if isinstance(message, BookChange) and message.remaining > 0:
                    into.setdefault(message.order_hash, time.perf_counter())

        watching = [
            asyncio.create_task(watch(at_first, seen[0])),
            asyncio.create_task(watch(at_second, seen[1])),
        ]
        gap = 1 / PACE_PER_S
        for order in orders:
            started = time.perf_counter()
            body = encode(SubmitOrders((Submission(order),)))
            status, data = await sender.raw("POST", "/v1/orders", body)
            assert status == 200, status
            (result,) = decode_as(data, OrdersAccepted).results
            assert result.status is OrderStatus.ACCEPTED, result
            await asyncio.sleep(max(0.0, gap - (time.perf_counter() - started)))
        await asyncio.wait_for(asyncio.gather(*watching), 30)
    return sorted(seen[1][h] - t for h, t in seen[0].items())


def propagation(
    market: Market, workdir: Path, pg: PgServer, nats: NatsServer
) -> dict[str, float | int]:
    signed = make_orders(market, PROPAGATION_ORDERS, cross_every=0, seed=23)
    with cluster(market, workdir, pg, nats, "prop", 2) as running:
        a, b = (r.url for r in running.instances)
        asyncio.run(_send([a], frames(signed[:2], 2), 1))  # warm: stakes read
        latencies = asyncio.run(_propagation(a, b, signed[2:]))
    return {
        "propagation_p50_ms": _percentile_ms(latencies, 0.50),
        "propagation_p99_ms": _percentile_ms(latencies, 0.99),
        "propagation_mean_ms": round(statistics.fmean(latencies) * 1e3, 2),
        "propagation_orders": len(latencies),
    }


# --- the fault run ------------------------------------------------------------------------------


def fault_run(
    market: Market, workdir: Path, pg: PgServer, nats: NatsServer
) -> dict[str, float | int]:
    signed = make_orders(market, FAULT_ORDERS, cross_every=FAULT_CROSS_EVERY, seed=31)
    with cluster(market, workdir, pg, nats, "fault", 3) as running:
        _wait(lambda: running.leader() is not None, 30, "a leader")
        leader = running.leader()
        assert leader is not None
        others = [r.url for i, r in enumerate(running.instances) if i != leader]
        bodies = frames(signed, 50)
        half = len(bodies) // 2
        accepted: set[bytes] = set()
        accepted |= asyncio.run(_send_kept(others, bodies[:half]))
        victim = running.instances[leader].proc
        victim.send_signal(signal.SIGKILL)
        victim.wait(30)
        accepted |= asyncio.run(_send_kept(others, bodies[half:]))
        _wait(lambda: running.leader() not in (None, leader), 30, "another leader")
        crossing = {
            order_hash(market.domain, o.message)
            for o in signed
            if isinstance(o.message, Bid) and o.message.max_price_per_gpu_second == 2_500
        }
        lost: set[bytes] = set()

        def settled() -> bool:
            opened = _opened(market)
            leased = {h for pair in opened for h in pair}
            books = [_book_hashes(market, url) for url in others]
            lost.clear()
            lost.update(h for h in accepted if h not in leased and not all(h in b for b in books))
            # every crossing bid that can fill has: none of them still rests in full
            return not lost and not (crossing - leased)

        with contextlib.suppress(RuntimeError):
            _wait(settled, SETTLE_DEADLINE_S, "the books and the chain to settle")
        opened = _opened(market)
    return {
        "instances": len(running.instances),
        "fault_orders_accepted": len(accepted),
        "fault_leases_opened": sum(opened.values()),
        "lost_orders": len(lost),
        "double_opens": sum(n - 1 for n in opened.values() if n > 1),
    }


async def _send_kept(urls: list[str], bodies: list[bytes]) -> set[bytes]:
    """Send every frame (round-robin over ``urls``); the hashes answered ``accepted``."""

    kept: set[bytes] = set()
    clients = [RelayClient(url, timeout_s=60.0) for url in urls]
    try:
        for i, body in enumerate(bodies):
            status, data = await clients[i % len(clients)].raw("POST", "/v1/orders", body)
            if status == 200:
                kept |= {
                    r.order_hash
                    for r in decode_as(data, OrdersAccepted).results
                    if r.status is OrderStatus.ACCEPTED
                }
    finally:
        for c in clients:
            await c.close()
    return kept


def _opened(market: Market) -> Counter[tuple[bytes, bytes]]:
    reader = MarketClient(market.devnet.web3(), market.contracts)
    return Counter(
        (e.args["offer_hash"], e.args["bid_hash"])
        for e in reader.events()
        if e.name == "LeaseOpened"
    )


def _book_hashes(market: Market, url: str) -> set[bytes]:
    async def read() -> set[bytes]:
        found: set[bytes] = set()
        async with RelayClient(url) as client:
            for model in MODELS:
                snap = await client.book(model, depth=1000)
                found |= {
                    order_hash(market.domain, e.order.signed.message)
                    for e in (*snap.offers, *snap.bids)
                }
        return found

    return asyncio.run(read())


def measure(orders: int, clients: int) -> dict[str, float | int]:
    with Devnet.start(accounts=2 + PROVIDERS + LABS) as dev, tempfile.TemporaryDirectory() as tmp:
        market = open_market(dev)
        workdir = Path(tmp)
        pg = PgServer.start()
        nats = NatsServer(workdir / "nats")
        try:
            nats.start()
            figures = throughput(market, workdir, pg, nats, orders, clients)
            figures |= propagation(market, workdir, pg, nats)
            figures |= fault_run(market, workdir, pg, nats)
        finally:
            nats.stop()
            pg.stop()
    figures |= {"orders": orders, "batch_size": BATCH, "clients_per_instance": clients}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=ORDERS, help="timed orders per run")
    parser.add_argument("--clients", type=int, default=CLIENTS, help="clients per instance")
    args = parser.parse_args()
    figures = measure(args.orders, args.clients)
    path = write("relay_cluster", dict(figures))
    for key, value in sorted(figures.items()):
        print(f"{key:<32} {value}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
