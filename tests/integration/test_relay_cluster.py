"""A relay cluster as real processes: three ``gpumarket relay --cluster`` instances over a real
PostgreSQL, a real NATS JetStream server and anvil. Any instance admits, every instance's book
shows what another accepted, exactly one matches, and faults lose nothing: an instance killed
mid-ingest, the leader killed mid-fill, NATS and PostgreSQL restarted mid-run."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from market.protocol.eip712 import order_hash
from market.protocol.types import Bid, Offer, Signed
from nodes.wire import OrderStatus
from tests.integration.cluster_harness import Cluster, book, booked, chain_block, submit
from tests.integration.conftest import MIN_STAKE, MarketEnv
from tests.integration.nats_server import NatsServer, nats_server  # noqa: F401
from tests.integration.pg_server import PgServer
from tests.integration.relay_harness import LAB, PROVIDER, bid, offer, reorg
from tests.waiting import wait_until

pytestmark = pytest.mark.integration
CATCH_UP_S = 30.0


@pytest.fixture
def cluster(
    env: MarketEnv,
    tmp_path: Path,
    pg_url: str,
    nats_server: NatsServer,  # noqa: F811
) -> Iterator[Cluster]:
    env.provider(PROVIDER).register(stake=MIN_STAKE * 1000, endpoint="http://p1")
    env.lab(LAB).fund(2**200)
    runs = Cluster(env, tmp_path, pg_url, nats_server.url)
    try:
        yield runs
    finally:
        runs.stop_all()


def _hash(env: MarketEnv, order: Signed[Offer] | Signed[Bid]) -> bytes:
    return order_hash(env.client().domain, order.message)


def _accepted(results: tuple[object, ...]) -> bool:
    return all(getattr(r, "status", None) is OrderStatus.ACCEPTED for r in results)


def _opened_per_pair(env: MarketEnv) -> Counter[tuple[bytes, bytes]]:
    events = env.client().events()
    return Counter(
        (e.args["offer_hash"], e.args["bid_hash"]) for e in events if e.name == "LeaseOpened"
    )


def test_cluster_books_show_orders_any_instance_accepted_and_one_instance_matches(
    env: MarketEnv, cluster: Cluster
) -> None:
    a, b, c = cluster.start("a", "b", "c")
    wait_until(lambda: cluster.leader() is not None, 10, "a leader")
    o, low = offer(env), bid(env, max_price_per_gpu_second=2)  # below the offer: rests
    assert _accepted(submit(a.url, [o]))
    assert _accepted(submit(b.url, [low]))
    domain = env.client().domain
    want = {_hash(env, o): 8, _hash(env, low): 4}
    for instance in (a, b, c):
        wait_until(lambda i=instance: booked(i.url, domain) == want, 10, f"{instance.name}'s book")

    high = bid(env, gpus=2)  # crosses the offer: the leader alone opens it
    assert _accepted(submit(c.url, [high]))
    wait_until(lambda: sum(_opened_per_pair(env).values()) == 1, 20, "the lease")
    after = {_hash(env, o): 6, _hash(env, low): 4}
    for instance in (a, b, c):
        wait_until(lambda i=instance: booked(i.url, domain) == after, 10, f"{instance.name}")
    assert _opened_per_pair(env) == {(_hash(env, o), _hash(env, high)): 1}
    leader = cluster.leader()
    assert leader is not None
    # The books may show the lease (from the chain) a moment before the matcher logs its receipt.
    lead = cluster.instances[leader]
    wait_until(lambda: "lease_opened" in lead.log.read_text(), 10, "the leader's lease_opened")
    logs = {i.name: i.log.read_text() for i in (a, b, c)}
    assert [name for name, text in logs.items() if "lease_opened" in text] == [leader]
    assert sum("lease_acquired" in text for text in logs.values()) == 1


def test_cluster_leader_killed_mid_fill_opens_every_pair_once_on_another_instance(
    env: MarketEnv, cluster: Cluster
) -> None:
    cluster.start("a", "b", "c")
    wait_until(lambda: cluster.leader() is not None, 10, "a leader")
    first = cluster.leader()
    assert first is not None
    entry = next(i for i in cluster.live() if i.name != first)
    pairs = 12
    offers = [offer(env, gpus=2) for _ in range(pairs)]
    assert _accepted(submit(entry.url, offers))
    bids = [bid(env, gpus=2) for _ in range(pairs)]
    assert _accepted(submit(entry.url, bids[:4]))
    wait_until(lambda: sum(_opened_per_pair(env).values()) >= 1, 20, "the first leases")
    assert _accepted(submit(entry.url, bids[4:]))
    cluster.kill(first)  # mid-fill: bids still arriving at the leader through the stream

    wait_until(lambda: cluster.leader() not in (None, first), 15, "another leader")
    try:
        wait_until(
            lambda: sum(_opened_per_pair(env).values()) == pairs, CATCH_UP_S, "every bid filled"
        )
    except AssertionError as exc:
        books = {i.name: booked(i.url, env.client().domain) for i in cluster.live()}
        opened = sum(_opened_per_pair(env).values())
        raise AssertionError(f"{exc}; {opened} {books}\n{cluster.logs()}") from None
    opened = _opened_per_pair(env)
    assert max(opened.values()) == 1  # no pair opened twice
    filled = Counter(b for _, b in opened)
    assert filled == Counter({_hash(env, b): 1 for b in bids})  # every bid once: none lost
    domain = env.client().domain
    for instance in cluster.live():
        wait_until(lambda i=instance: booked(i.url, domain) == {}, 10, f"{instance.name} empty")


def test_cluster_instance_killed_mid_ingest_loses_no_accepted_order(
    env: MarketEnv, cluster: Cluster
) -> None:
    a, b, c = cluster.start("a", "b", "c")
    accepted: list[bytes] = []
    sent = threading.Event()
    errors: list[BaseException] = []

    def ingest() -> None:  # bids below every offer's price: they rest
        try:
            for _ in range(200):
                batch = [bid(env, max_price_per_gpu_second=1) for _ in range(5)]
                results = submit(b.url, batch)
                accepted.extend(r.order_hash for r in results if r.status is OrderStatus.ACCEPTED)
                if len(accepted) >= 20:
                    sent.set()
        except Exception as exc:  # the killed instance's connection: ingest ends there
            errors.append(exc)
        finally:
            sent.set()

    thread = threading.Thread(target=ingest)
    thread.start()
    assert sent.wait(60)
    cluster.kill("b")
    thread.join(60)
    assert errors, "the ingest should have been cut by the kill"
    assert len(accepted) >= 20
    domain = env.client().domain
    for instance in (a, c):
        wait_until(
            lambda i=instance: set(accepted) <= set(booked(i.url, domain)),
            CATCH_UP_S,
            f"every accepted order in {instance.name}'s book",
        )


def _submit_until_accepted(url: str, order: Signed[Offer] | Signed[Bid]) -> bytes:
    """Submit ``order`` again until accepted (503 while a server restarts); its hash."""
    answer: list[bytes] = []

    def accepted() -> bool:
        try:
            (result,) = submit(url, [order])
        except Exception:  # refused while the stream or the store is away: try again
            return False
        if result.status is OrderStatus.ACCEPTED:
            answer.append(result.order_hash)
        return result.status is OrderStatus.ACCEPTED

    wait_until(accepted, CATCH_UP_S, "the order accepted")
    return answer[0]


def test_cluster_catches_up_through_nats_and_postgres_restarts(
    env: MarketEnv,
    cluster: Cluster,
    nats_server: NatsServer,  # noqa: F811
    postgres: PgServer,
    pg_url: str,
) -> None:
    a, b = cluster.start("a", "b")
    wait_until(lambda: cluster.leader() is not None, 10, "a leader")
    accepted: list[bytes] = []
    refused: list[str] = []
    stop = threading.Event()

    def ingest() -> None:  # resting bids to both instances in turn, through both restarts
        turn = 0
        while not stop.is_set():
            turn += 1
            url = (a, b)[turn % 2].url
            try:
                results = submit(url, [bid(env, max_price_per_gpu_second=1) for _ in range(3)])
            except Exception as exc:  # a server restarting: refused (503), nothing accepted
                refused.append(type(exc).__name__)
                continue
            accepted.extend(r.order_hash for r in results if r.status is OrderStatus.ACCEPTED)

    thread = threading.Thread(target=ingest)
    thread.start()
    try:
        for restart in (nats_server.restart, postgres.restart):
            before = len(accepted)
            wait_until(lambda n=before: len(accepted) >= n + 15, CATCH_UP_S, "orders accepted")
            restart()
        before = len(accepted)
        wait_until(lambda: len(accepted) >= before + 15, CATCH_UP_S, "orders after the restarts")
    finally:
        stop.set()
        thread.join(30)
    assert refused, "the restarts should have refused some requests"
    high = bid(env, gpus=2)
    accepted += [_submit_until_accepted(a.url, high)]
    o = offer(env, gpus=2)  # crosses ``high`` alone
    _submit_until_accepted(b.url, o)
    wait_until(lambda: sum(_opened_per_pair(env).values()) == 1, CATCH_UP_S, "the lease")
    assert _opened_per_pair(env) == {(_hash(env, o), _hash(env, high)): 1}

    resting = set(accepted) - {_hash(env, high)}
    assert len(resting) == len(accepted) - 1  # each accepted once
    domain = env.client().domain
    for instance in (a, b):
        wait_until(
            lambda i=instance: set(booked(i.url, domain)) == resting,
            CATCH_UP_S,
            f"{instance.name}'s book",
        )
        snap = book(instance.url)
        assert len(snap.bids) == len(resting)  # nothing twice
        assert snap.offers == ()
    with psycopg.connect(pg_url) as conn:  # the shared store holds each resting order once
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (len(resting),)


def test_cluster_reorganisation_found_by_the_leader_rewinds_every_instances_book(
    env: MarketEnv, cluster: Cluster
) -> None:
    a, b = cluster.start("a", "b")
    wait_until(lambda: cluster.leader() is not None, 10, "a leader")
    o, taker = offer(env), bid(env, gpus=2)
    assert _accepted(submit(a.url, [o]))
    assert _accepted(submit(b.url, [taker]))
    wait_until(lambda: sum(_opened_per_pair(env).values()) == 1, 20, "the lease")
    domain = env.client().domain
    for instance in (a, b):
        wait_until(lambda i=instance: booked(i.url, domain) == {_hash(env, o): 6}, 10, "filled")

    reader = env.client()
    (opened,) = [e for e in reader.events() if e.name == "LeaseOpened"]
    leader = cluster.instances[str(cluster.leader())]
    wait_until(lambda: chain_block(leader.url) >= opened.block_number, 10, "the lease read")
    reorg(env, reader.head().number - opened.block_number + 1)  # the lease's block replaced
    assert _opened_per_pair(env) == {}
    for instance in (a, b):  # the offer's GPUs are free again on both
        try:
            wait_until(
                lambda i=instance: booked(i.url, domain) == {_hash(env, o): 8},
                CATCH_UP_S,
                f"{instance.name}'s book rewound",
            )
        except AssertionError as exc:
            books = {i.name: booked(i.url, domain) for i in (a, b)}
            raise AssertionError(f"{exc}: {books}\n{cluster.logs()}") from None
    logs = {i.name: i.log.read_text() for i in (a, b)}
    assert sum("reorg_detected" in text for text in logs.values()) == 1
    assert sum("chain_rewound" in text for text in logs.values()) == 1
