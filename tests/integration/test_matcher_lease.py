"""The matcher lease in PostgreSQL (:mod:`nodes.relay.leader`), on a real server: one holder at a
time, expiry by the database's clock, deposition learned on renewal, terms that only grow, and fill
intents fenced by the term."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import psycopg
import pytest

from market.matching import Submission
from nodes.errors import LeaseLost
from nodes.relay.leader import Held, LeaseState, MatcherLease
from nodes.relay.store import FillIntent
from nodes.relay.store_postgres import PostgresStore
from tests.unit.order_factory import Orders
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

LONG_TTL_S = 30.0
SHORT_TTL_S = 0.3

Leases = Callable[..., MatcherLease]


@pytest.fixture
def leases(pg_url: str) -> Iterator[Leases]:
    """Opens lease handles (one connection each) on the test's database; closes them after."""
    opened: list[MatcherLease] = []

    def open_one(holder: str, ttl_s: float = LONG_TTL_S, **kwargs: str) -> MatcherLease:
        opened.append(MatcherLease.open(pg_url, holder, ttl_s, **kwargs))
        return opened[-1]

    yield open_one
    for lease in opened:
        lease.close()


@pytest.fixture
def store(pg_url: str) -> Iterator[PostgresStore]:
    opened = PostgresStore.open(pg_url)
    try:
        yield opened
    finally:
        opened.close()


def _race(start: threading.Barrier, lease: MatcherLease, won: list[Held | None], i: int) -> None:
    start.wait(timeout=10)
    won[i] = lease.acquire()


def _acquired(lease: MatcherLease) -> Callable[[], bool]:
    return lambda: lease.acquire() is not None


def test_the_first_holder_gets_term_one_and_a_second_is_refused_while_it_is_live(
    leases: Leases,
) -> None:
    a, b = leases("a"), leases("b")
    held = a.acquire()
    assert held is not None
    assert held.term == 1
    assert held.valid()
    assert b.acquire() is None
    assert b.current() == LeaseState("a", 1, live=True)
    assert a.renew().term == 1  # renewing keeps the term
    again = a.acquire()  # and so does acquiring what it holds
    assert again is not None
    assert again.term == 1


def test_two_holders_racing_for_a_free_lease_never_both_win(leases: Leases) -> None:
    for round_ in range(20):
        name = f"race{round_}"
        racers = [leases(f"r{i}", name=name) for i in range(3)]
        start = threading.Barrier(len(racers))
        won: list[Held | None] = [None] * len(racers)

        threads = [
            threading.Thread(target=_race, args=(start, lease, won, i))
            for i, lease in enumerate(racers)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        winners = [(racers[i].holder, h.term) for i, h in enumerate(won) if h is not None]
        assert len(winners) == 1, winners
        assert winners[0][1] == 1
        assert racers[0].current() == LeaseState(winners[0][0], 1, live=True)


def test_a_holder_that_stops_renewing_loses_the_lease_to_another_with_a_higher_term(
    leases: Leases,
) -> None:
    a, b = leases("a", SHORT_TTL_S), leases("b", SHORT_TTL_S)
    first = a.acquire()
    assert first is not None
    assert b.acquire() is None
    wait_until(_acquired(b), 10, "b to take the lease after a's TTL")
    assert b.held is not None
    assert b.held.term == first.term + 1
    assert not first.valid()  # a's own view ran out no later than the database's
    with pytest.raises(LeaseLost) as info:  # a learns it on its next renewal
        a.renew()
    assert (info.value.holder, info.value.term, info.value.current_term) == ("a", 1, 2)
    assert a.held is None
    assert b.current() == LeaseState("b", 2, live=True)


def test_an_expired_lease_is_not_renewed_even_if_nobody_took_it(leases: Leases) -> None:
    a = leases("a", SHORT_TTL_S)
    assert a.acquire() is not None
    wait_until(lambda: a.current() == LeaseState("a", 1, live=False), 10, "a's lease to expire")
    with pytest.raises(LeaseLost):
        a.renew()
    again = a.acquire()  # back, under a new term: what it does now is told apart from before
    assert again is not None
    assert again.term == 2


def test_a_renewal_without_the_lease_is_refused(leases: Leases) -> None:
    a, b = leases("a"), leases("b")
    assert a.acquire() is not None
    with pytest.raises(LeaseLost) as info:
        b.renew()
    assert info.value.current_term == 1


def test_a_released_lease_is_taken_at_once_with_the_next_term(leases: Leases) -> None:
    a, b = leases("a"), leases("b")
    assert a.acquire() is not None
    a.release()
    assert a.held is None
    taken = b.acquire()  # no wait for the TTL
    assert taken is not None
    assert taken.term == 2


def test_terms_only_grow_across_releases_expiries_and_holders(leases: Leases) -> None:
    holders = [leases(name, SHORT_TTL_S) for name in ("a", "b", "c")]
    terms: list[int] = []
    for i in range(9):
        lease = holders[i % 3]
        wait_until(_acquired(lease), 10, f"{lease.holder} to take the lease")
        assert lease.held is not None
        terms.append(lease.held.term)
        if i % 2:  # every other handover by release, the rest by expiry
            lease.release()
    assert terms == list(range(1, 10))


def test_fill_intents_are_fenced_by_the_term_and_found_by_the_next_holder(
    leases: Leases, store: PostgresStore
) -> None:
    orders = Orders()
    o, b = orders.offer(), orders.bid()
    store.add_orders([(o.hash, Submission(o.signed))])
    a, c = leases("a", SHORT_TTL_S), leases("c", SHORT_TTL_S)
    held = a.acquire()
    assert held is not None
    (mine,) = store.record_intents([(o.hash, b.hash, 1)], term=held.term)
    wait_until(_acquired(c), 10, "c to take the lease")
    with pytest.raises(LeaseLost) as info:  # a deposed matcher cannot write another intent
        store.record_intents([(o.hash, b.hash, 2)], term=held.term)
    assert info.value.current_term == 2
    assert store.fills() == [(mine, o.hash, b.hash, 1, "intent")]  # nothing of the refused one
    assert c.held is not None
    assert store.open_intents(before_term=c.held.term) == [
        FillIntent(mine, o.hash, b.hash, 1, held.term)
    ]
    (theirs,) = store.record_intents([(o.hash, b.hash, 3)], term=c.held.term)
    assert [i.fill_id for i in store.open_intents(before_term=c.held.term)] == [mine]
    assert theirs > mine


def _lock_waiters(admin: psycopg.Connection[tuple[object, ...]], dbname: str) -> int:
    row = admin.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
        (dbname,),
    ).fetchone()
    return int(row[0]) if row else 0


def test_a_takeover_waits_for_the_intents_its_predecessor_is_writing(
    leases: Leases, store: PostgresStore, pg_url: str
) -> None:
    """Intents that passed the term check commit before the next term starts: the new holder
    then finds them, and nothing the old holder wrote lands after its own takeover."""
    orders = Orders()
    o, b = orders.offer(), orders.bid()
    a, c, watcher = leases("a", SHORT_TTL_S), leases("c", SHORT_TTL_S), leases("w")
    held = a.acquire()
    assert held is not None
    dbname = pg_url.rsplit("/", 1)[1]
    with psycopg.connect(pg_url, autocommit=True) as admin, psycopg.connect(pg_url) as blocker:
        blocker.execute("LOCK TABLE fills IN EXCLUSIVE MODE")  # a's insert waits here
        written: list[list[int]] = []
        writer = threading.Thread(
            target=lambda: written.append(store.record_intents([(o.hash, b.hash, 1)], held.term))
        )
        writer.start()
        wait_until(lambda: _lock_waiters(admin, dbname) == 1, 10, "a's intents past the check")
        wait_until(lambda: not _live(watcher), 10, "a's lease to expire")
        took: list[Held | None] = []
        taker = threading.Thread(target=lambda: took.append(c.acquire()))
        taker.start()
        wait_until(lambda: _lock_waiters(admin, dbname) == 2, 10, "c's takeover to wait")
        assert took == []
        blocker.rollback()  # a's intents go on and commit; then c's takeover
        writer.join(timeout=10)
        taker.join(timeout=10)
    assert len(written) == 1
    assert took[0] is not None
    assert took[0].term == held.term + 1
    assert store.open_intents(before_term=took[0].term) == [
        FillIntent(written[0][0], o.hash, b.hash, 1, held.term)
    ]


def _live(lease: MatcherLease) -> bool:
    state = lease.current()
    return state is not None and state.live
