"""The relay cluster's event stream against a real ``nats-server -js``: publishes stored once,
followers in order through a NATS restart, a replica book that shows another instance's orders,
and typed errors when the server is down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest

from market.chain.devnet import free_port
from market.matching import VerifiedOrder
from nodes.errors import StreamGap, StreamUnavailable
from nodes.relay.cluster import (
    BookReplica,
    ClusterEvent,
    ClusterStream,
    FillChanged,
    Follower,
    LeaseOpened,
    OrderAccepted,
    OrderCancelled,
)
from nodes.wire import FillStatus
from tests.integration.nats_server import NatsServer, live_servers, nats_server  # noqa: F401
from tests.unit.order_factory import DOMAIN, MODEL, Orders

pytestmark = pytest.mark.integration

T = TypeVar("T")
CLUSTER = "test"


@pytest.fixture(scope="module", autouse=True)
def _no_server_outlives_the_module() -> Iterator[None]:
    yield
    leftover = live_servers()
    for server in leftover:
        server.stop()
    assert not leftover, "a test left nats-server running"


def run(coro: Awaitable[T], timeout_s: float = 60.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout_s)

    return asyncio.run(bounded())


def accepted(order: VerifiedOrder) -> OrderAccepted:
    return OrderAccepted(order.hash, order.signed)


async def until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``predicate`` on the event loop until it holds (a deadline, never a fixed sleep)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.01)


class Recorder:
    """A follower's callback that keeps what it was handed."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, ClusterEvent]] = []

    def __call__(self, seq: int, event: ClusterEvent) -> None:
        self.seen.append((seq, event))

    def hashes(self) -> list[bytes]:
        return [e.order_hash for _, e in self.seen if isinstance(e, OrderAccepted)]


async def following(
    stream: ClusterStream, after: int, apply: Callable[[int, ClusterEvent], None]
) -> tuple[Follower, asyncio.Event, asyncio.Task[None]]:
    follower = stream.follow(after, apply)
    stop = asyncio.Event()
    return follower, stop, asyncio.create_task(follower.run(stop))


async def stopped(stop: asyncio.Event, task: asyncio.Task[None]) -> None:
    stop.set()
    await asyncio.wait_for(task, 10)


def test_the_same_order_published_twice_by_two_instances_is_stored_once(
    nats_server: NatsServer,  # noqa: F811
) -> None:
    order = Orders().offer()

    async def scenario() -> tuple[list[int], list[bool], int, list[bytes]]:
        a = await ClusterStream.connect(nats_server.url, CLUSTER)
        b = await ClusterStream.connect(nats_server.url, CLUSTER)
        try:
            first = await a.publish(accepted(order))
            again = await a.publish(accepted(order))  # a retried publish
            other = await b.publish(accepted(order))  # another instance, the same order
            seen = Recorder()
            follower, stop, task = await following(b, 0, seen)
            await until(lambda: follower.position >= 1, 10, "the follower's first event")
            await stopped(stop, task)
            acks = [first, again, other]
            return (
                [p.seq for p in acks],
                [p.duplicate for p in acks],
                await a.last_sequence(),
                (seen.hashes()),
            )
        finally:
            await a.close()
            await b.close()

    seqs, duplicates, last, hashes = run(scenario())
    assert seqs == [1, 1, 1]
    assert duplicates == [False, True, True]
    assert last == 1
    assert hashes == [order.hash]


def test_two_publishers_interleave_and_one_follower_sees_every_event_once_in_order(
    nats_server: NatsServer,  # noqa: F811
) -> None:
    orders = Orders()
    mine = [accepted(orders.offer(provider=0)) for _ in range(60)]
    theirs = [accepted(orders.bid(lab=1)) for _ in range(60)]

    async def scenario() -> Recorder:
        a = await ClusterStream.connect(nats_server.url, CLUSTER)
        b = await ClusterStream.connect(nats_server.url, CLUSTER)
        seen = Recorder()
        try:
            follower, stop, task = await following(a, 0, seen)
            await asyncio.gather(
                *(a.publish(e) for e in mine[:30]), *(b.publish(e) for e in theirs[:30])
            )
            await asyncio.gather(a.publish_all(mine[30:]), b.publish_all(theirs[30:]))
            await until(lambda: follower.position >= 120, 20, "all 120 events")
            await stopped(stop, task)
        finally:
            await a.close()
            await b.close()
        return seen

    seen = run(scenario())
    assert [seq for seq, _ in seen.seen] == list(range(1, 121))
    hashes = seen.hashes()
    # Each publisher's events keep their order; together, each is there once.
    assert [h for h in hashes if h in {e.order_hash for e in mine}] == [e.order_hash for e in mine]
    assert [h for h in hashes if h in {e.order_hash for e in theirs}] == [
        e.order_hash for e in theirs
    ]
    assert len(set(hashes)) == 120


def test_a_replica_book_shows_what_another_instance_accepted_filled_and_the_chain_cancelled(
    nats_server: NatsServer,  # noqa: F811
) -> None:
    orders = Orders()
    offer = orders.offer(price=10, gpus=8)
    bid = orders.bid(price=12, gpus=3)
    cancelled = orders.offer(price=20, gpus=2, provider=1)
    lease_id = bytes([7]) * 32

    async def scenario() -> list[tuple[str, dict[str, int]]]:
        first = await ClusterStream.connect(nats_server.url, CLUSTER)
        second = await ClusterStream.connect(nats_server.url, CLUSTER)
        replica = BookReplica(DOMAIN)
        views: list[tuple[str, dict[str, int]]] = []

        def view(label: str) -> None:
            snap = replica.snapshot(MODEL, 10)
            rows = {f"offer:{e.remaining}": 1 for e in snap.offers}
            rows |= {f"bid:{e.remaining}": 1 for e in snap.bids}
            views.append((label, rows))

        async def step(label: str, *events: ClusterEvent) -> None:
            published = [await first.publish(e) for e in events]
            await until(
                lambda: replica.position >= published[-1].seq, 10, f"the replica to apply {label}"
            )
            view(label)

        try:
            follower, stop, task = await following(second, 0, replica.apply)
            await step("accepted", accepted(offer), accepted(bid), accepted(cancelled))
            await step("pending", FillChanged(1, offer.hash, bid.hash, 3, FillStatus.PENDING))
            await step(
                "opened",
                LeaseOpened(lease_id, offer.hash, bid.hash, 3, 41),
                FillChanged(1, offer.hash, bid.hash, 3, FillStatus.OPENED, lease_id),
            )
            await step("cancelled", OrderCancelled(cancelled.hash, 42))
            await stopped(stop, task)
            assert follower.position == 7
        finally:
            await first.close()
            await second.close()
        return views

    views = dict(run(scenario()))
    assert views["accepted"] == {"offer:8": 1, "offer:2": 1, "bid:3": 1}
    assert views["pending"] == {"offer:5": 1, "offer:2": 1}  # the bid's 3 GPUs are in the fill
    assert views["opened"] == {"offer:5": 1, "offer:2": 1}  # settled once, not twice
    assert views["cancelled"] == {"offer:5": 1}


def test_a_follower_catches_up_after_nats_restarts_mid_publish_nothing_lost_or_doubled(
    nats_server: NatsServer,  # noqa: F811
) -> None:
    orders = Orders()
    published: list[OrderAccepted] = []
    seqs: list[int] = []
    refusals = 0

    async def publish_next(stream: ClusterStream) -> None:
        """What an instance does with an order it admitted: publish until acknowledged."""
        nonlocal refusals
        event = accepted(orders.offer(provider=len(published) % 4))
        published.append(event)
        deadline = time.monotonic() + 30
        while True:
            try:
                seqs.append((await stream.publish(event)).seq)
                return
            except StreamUnavailable:
                refusals += 1
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)  # a retry's backoff, not a wait for state

    async def scenario() -> tuple[Recorder, int]:
        publisher = await ClusterStream.connect(nats_server.url, CLUSTER, publish_timeout_s=1)
        reader = await ClusterStream.connect(nats_server.url, CLUSTER)
        seen = Recorder()
        try:
            follower, stop, task = await following(reader, 0, seen)
            for _ in range(100):
                await publish_next(publisher)
            await until(lambda: follower.position >= 50, 10, "the follower under way")
            restart = asyncio.create_task(asyncio.to_thread(nats_server.restart))
            while not restart.done():  # publishing all the while the server is down and back
                await publish_next(publisher)
            await restart
            for _ in range(50):
                await publish_next(publisher)
            total = len(published)
            await until(lambda: follower.position >= total, 30, "the follower to catch up")
            await stopped(stop, task)
            return seen, follower.resubscribed
        finally:
            await publisher.close()
            await reader.close()

    seen, resubscribed = run(scenario(), timeout_s=120)
    total = len(published)
    assert nats_server.starts == 2
    assert refusals >= 1  # some publishes met the server down, and were published again
    assert resubscribed >= 1  # the follower lost the server too, and came back
    assert sorted(seqs) == list(range(1, total + 1))
    assert [seq for seq, _ in seen.seen] == list(range(1, total + 1))
    assert seen.hashes() == [e.order_hash for e in published]


def test_a_follower_whose_consumer_is_deleted_makes_another_and_goes_on_from_its_position(
    nats_server: NatsServer,  # noqa: F811
) -> None:
    orders = Orders()
    events = [accepted(orders.offer()) for _ in range(20)]

    async def scenario() -> tuple[Recorder, int]:
        stream = await ClusterStream.connect(nats_server.url, CLUSTER)
        seen = Recorder()
        try:
            follower = stream.follow(0, seen, check_s=0.2)
            stop = asyncio.Event()
            task = asyncio.create_task(follower.run(stop))
            await stream.publish_all(events[:10])
            await until(lambda: follower.position >= 10, 10, "the first ten")
            for info in await stream.js.consumers_info(stream.name):
                await stream.js.delete_consumer(stream.name, info.name)  # as an operator might
            await until(lambda: follower.resubscribed >= 1, 10, "a new consumer")
            await stream.publish_all(events[10:])
            await until(lambda: follower.position >= 20, 10, "the last ten")
            await stopped(stop, task)
            return seen, follower.resubscribed
        finally:
            await stream.close()

    seen, resubscribed = run(scenario())
    assert resubscribed >= 1
    assert [seq for seq, _ in seen.seen] == list(range(1, 21))
    assert seen.hashes() == [e.order_hash for e in events]


def test_publishing_while_nats_is_down_raises_stream_unavailable_and_stores_nothing(
    nats_server: NatsServer,  # noqa: F811
) -> None:
    orders = Orders()
    before, during, after = (accepted(orders.offer()) for _ in range(3))

    async def scenario() -> tuple[StreamUnavailable, list[int], Recorder]:
        stream = await ClusterStream.connect(nats_server.url, CLUSTER)
        seen = Recorder()
        try:
            await stream.publish(before)
            await asyncio.to_thread(nats_server.stop)
            await until(lambda: not stream.nc.is_connected, 10, "the client to notice")
            with pytest.raises(StreamUnavailable) as refused:
                await stream.publish(during)
            await asyncio.to_thread(nats_server.start)
            await until(lambda: stream.nc.is_connected, 20, "the client to reconnect")
            seqs = [await stream.last_sequence(), (await stream.publish(after)).seq]
            follower, stop, task = await following(stream, 0, seen)
            await until(lambda: follower.position >= seqs[-1], 10, "the follower")
            await stopped(stop, task)
            return refused.value, seqs, seen
        finally:
            await stream.close()

    error, seqs, seen = run(scenario())
    assert error.url == nats_server.url
    assert error.reason == "not connected"
    assert seqs == [1, 2]  # the refused publish was not buffered and sent on reconnection
    assert seen.hashes() == [before.order_hash, after.order_hash]


def test_a_follower_raises_stream_gap_when_events_after_its_position_were_trimmed(
    nats_server: NatsServer,  # noqa: F811
) -> None:
    orders = Orders()

    async def scenario() -> tuple[StreamGap, int, int]:
        stream = await ClusterStream.connect(nats_server.url, CLUSTER)
        seen = Recorder()
        try:
            for _ in range(3):
                await stream.publish(accepted(orders.offer()))
            await stream.js.purge_stream(stream.name)  # as retention would trim them
            await stream.publish(accepted(orders.offer()))
            follower, stop, task = await following(stream, 1, seen)
            with pytest.raises(StreamGap) as gap:
                await asyncio.wait_for(task, 10)
            stop.set()
            return gap.value, follower.position, len(seen.seen)
        finally:
            await stream.close()

    gap, position, applied = run(scenario())
    assert (gap.stream, gap.after, gap.first) == ("RELAY_test", 1, 4)
    assert (position, applied) == (1, 0)


def test_a_callback_that_raises_stops_the_follower_with_the_event_unapplied(
    nats_server: NatsServer,  # noqa: F811
) -> None:
    orders = Orders()
    events = [accepted(orders.offer()) for _ in range(3)]

    def apply(seq: int, event: ClusterEvent) -> None:
        if seq == 2:
            raise RuntimeError("the book refused it")

    async def scenario() -> int:
        stream = await ClusterStream.connect(nats_server.url, CLUSTER)
        try:
            await stream.publish_all(events)
            follower, stop, task = await following(stream, 0, apply)
            with pytest.raises(RuntimeError, match="the book refused it"):
                await asyncio.wait_for(task, 10)
            stop.set()
            return follower.position
        finally:
            await stream.close()

    assert run(scenario()) == 1


def test_connecting_to_no_server_raises_stream_unavailable_promptly() -> None:
    url = f"nats://127.0.0.1:{free_port()}"

    async def scenario() -> StreamUnavailable:
        with pytest.raises(StreamUnavailable) as refused:
            await ClusterStream.connect(url, CLUSTER, connect_timeout_s=1)
        return refused.value

    t0 = time.monotonic()
    error = run(scenario(), timeout_s=30)
    assert error.url == url
    assert "cannot connect" in error.reason
    assert time.monotonic() - t0 < 10
