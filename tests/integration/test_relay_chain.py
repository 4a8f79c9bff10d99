"""The relay follows the chain: fills and cancellations by anyone change its book, and a restart
on the same database brings back the same book (plus what the chain did meanwhile)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from market.chain.deploy import deploy
from market.errors import MarketError
from market.protocol.types import Bid, Offer, Signed
from nodes.errors import StoreError
from nodes.relay import Relay
from nodes.wire import BookChange, LeaseOpened, OrderStatus, Side
from tests.integration.conftest import MarketEnv
from tests.integration.relay_harness import (
    LAB,
    MODEL,
    OTHER_LAB,
    OUTSIDER,
    RelayHandle,
    Relays,
    bid,
    fund_market,
    offer,
    open_relays,
    reorg,
    statuses,
)
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def relays(env: MarketEnv, tmp_path: Path) -> Iterator[Relays]:
    with open_relays(env, tmp_path) as started:
        yield started


@pytest.fixture
def market(env: MarketEnv) -> MarketEnv:
    return fund_market(env)


def _remaining(relay: RelayHandle) -> dict[bytes, int]:
    snapshot = relay.book()
    return {e.order.signed.signature: e.remaining for e in (*snapshot.offers, *snapshot.bids)}


def test_a_lease_opened_by_another_matcher_reduces_and_removes_orders(
    market: MarketEnv, relays: Relays
) -> None:
    relay = relays.start()  # no matcher: crossing orders rest
    events = relay.record()
    o, b = offer(market, gpus=8), bid(market, gpus=3)
    assert statuses(relay.submit(o, b)) == [OrderStatus.ACCEPTED] * 2
    lease = market.client(market.devnet.accounts[OUTSIDER]).open_lease(o, b, 3)

    wait_until(lambda: _remaining(relay) == {o.signature: 5}, 20, "the outside lease")
    seen = events.wait_for(
        lambda es: any(isinstance(e, LeaseOpened) for e in es), "the LeaseOpened event"
    )
    opened = next(e for e in seen if isinstance(e, LeaseOpened))
    assert opened.lease_id == lease.id
    assert opened.lease == lease
    bid_hash = opened.bid_hash
    assert BookChange(bid_hash, MODEL, Side.BID, 0) in seen


def test_events_count_only_once_their_block_is_confirmations_deep(
    market: MarketEnv, relays: Relays
) -> None:
    relay = relays.start(confirmations=3)  # as on a chain that may reorganise 3 blocks
    o, b = offer(market, gpus=8), bid(market, gpus=3)
    assert statuses(relay.submit(o, b)) == [OrderStatus.ACCEPTED] * 2
    market.client(market.devnet.accounts[OUTSIDER]).open_lease(o, b, 3)
    opened_in = market.client().head().number  # automine: the lease's own block
    wait_until(
        lambda: relay.state(lambda r: r.watch.next_block) == opened_in - 2,
        20,
        "the relay to apply every event 3 blocks deep",
    )
    assert _remaining(relay) == {o.signature: 8, b.signature: 3}  # not deep enough yet
    market.devnet.mine(3)
    wait_until(lambda: _remaining(relay) == {o.signature: 5}, 20, "the lease, once 3 deep")
    assert relay.state(lambda r: r.watch.next_block) == opened_in + 1


def test_a_lease_a_reorg_removes_never_reaches_a_book_that_waits_for_confirmations(
    market: MarketEnv, relays: Relays
) -> None:
    relay = relays.start(confirmations=3)
    o, b = offer(market, gpus=8), bid(market, gpus=3)
    assert statuses(relay.submit(o, b)) == [OrderStatus.ACCEPTED] * 2
    reader = market.client()
    lease = market.client(market.devnet.accounts[OUTSIDER]).open_lease(o, b, 3)
    opened_in = reader.head().number
    wait_until(
        lambda: relay.state(lambda r: r.watch.next_block) == opened_in - 2,
        20,
        "the relay to apply every event 3 blocks deep",
    )
    market.devnet.rpc("anvil_reorg", [2, []])  # the lease's block and the one before, replaced
    assert reader.lease_state(lease.id).status.name == "NONE"  # the lease never happened
    market.devnet.mine(5)
    wait_until(
        lambda: relay.state(lambda r: r.watch.next_block) > opened_in,
        20,
        "the relay to follow the new chain past the old lease's block",
    )
    assert _remaining(relay) == {o.signature: 8, b.signature: 3}  # nothing counted, nothing lost


def _next_block(relay: Relay) -> int:
    return relay.watch.next_block


def _reorgs(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [r.fields for r in caplog.records if getattr(r, "event", None) == "reorg_detected"]  # type: ignore[attr-defined]


def test_a_reorg_deeper_than_the_confirmations_gives_the_orders_their_gpus_back(
    market: MarketEnv, relays: Relays, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 14: a lease applied at once (confirmations 0) that a reorganisation removes no
    longer counts: the relay notices the replaced block, its offer has every GPU again, and the
    new branch's events apply as they come."""
    relay = relays.start(confirmations=0)
    o, b = offer(market, gpus=8), bid(market, gpus=3)
    assert statuses(relay.submit(o, b)) == [OrderStatus.ACCEPTED] * 2
    reader = market.client()
    for _ in range(3):  # blocks the relay applies one by one: their hashes in its window
        market.devnet.mine(1)
        wanted = reader.head().number + 1
        wait_until(lambda w=wanted: relay.state(_next_block) == w, 20, "a block applied")
    outsider = market.client(market.devnet.accounts[OUTSIDER])
    lease = outsider.open_lease(o, b, 3)
    opened_in = reader.head().number
    wait_until(lambda: _remaining(relay) == {o.signature: 5}, 20, "the outside lease")

    with caplog.at_level(logging.INFO, logger="gpumarket.relay"):
        fork = reorg(market, 3)  # the lease's block and two before, replaced
        assert reader.lease_state(lease.id).status.name == "NONE"
        wait_until(lambda: _remaining(relay) == {o.signature: 8}, 20, "the offer's GPUs back")
    # The bid left the book (and the store) when the lease filled it: it stays gone.
    assert [(f["depth"], f["fork"]) for f in _reorgs(caplog)] == [(opened_in - fork + 1, fork)]
    assert relay.state(lambda r: r.watch.reorgs) == 1
    assert relay.state(lambda r: r.store.filled_by_order()) == {}

    again = bid(market, gpus=2)
    assert statuses(relay.submit(again)) == [OrderStatus.ACCEPTED]
    # A fresh client: the orphaned transaction's nonce is free again.
    market.client(market.devnet.accounts[OUTSIDER]).open_lease(o, again, 2)
    wait_until(lambda: _remaining(relay) == {o.signature: 6}, 20, "the new branch's lease")
    assert relay.state(lambda r: r.watch.reorgs) == 1  # the new branch is followed, not doubted


def test_a_node_without_the_forks_state_leaves_the_book_to_the_leases_the_store_kept(
    market: MarketEnv, relays: Relays, caplog: pytest.LogCaptureFixture
) -> None:
    """A pruned node may no longer answer reads at the block before the fork: the orders then
    take the fills the store's leases still count, which is the same state."""
    relay = relays.start(confirmations=0)

    def pruned(orders: object, block: object) -> NoReturn:
        raise MarketError(f"orderState read failed: missing trie node at {block}")

    relay.state(lambda r: setattr(r.watch.client, "order_states", pruned))
    o, b = offer(market, gpus=8), bid(market, gpus=5)
    assert statuses(relay.submit(o, b)) == [OrderStatus.ACCEPTED] * 2
    outsider = market.client(market.devnet.accounts[OUTSIDER])
    outsider.open_lease(o, b, 1)  # stays
    market.devnet.mine(1)
    wanted = market.client().head().number + 1
    wait_until(lambda: relay.state(_next_block) == wanted, 20, "the blocks applied")
    outsider.open_lease(o, b, 2)  # replaced
    wait_until(lambda: _remaining(relay) == {o.signature: 5, b.signature: 2}, 20, "both leases")

    with caplog.at_level(logging.INFO, logger="gpumarket.relay"):
        market.devnet.rpc("anvil_reorg", [1, []])
        wait_until(lambda: _remaining(relay) == {o.signature: 7, b.signature: 4}, 20, "undone")
    events = [r.event for r in caplog.records if hasattr(r, "event")]  # type: ignore[attr-defined]
    assert events.count("reorg_state_unavailable") == 1
    assert events.count("reorg_detected") == 1


def test_a_relay_restarted_after_a_reorg_notices_it_and_follows_the_new_branch(
    market: MarketEnv, relays: Relays, caplog: pytest.LogCaptureFixture
) -> None:
    config = relays.config("reorg-restart", confirmations=1)
    first = relays.start(config)
    o, b = offer(market, gpus=8), bid(market, gpus=5)
    assert statuses(first.submit(o, b)) == [OrderStatus.ACCEPTED] * 2
    market.client(market.devnet.accounts[OUTSIDER]).open_lease(o, b, 2)
    market.devnet.mine(1)  # the lease one block deep: applied
    wait_until(lambda: _remaining(first) == {o.signature: 6, b.signature: 3}, 20, "the lease")
    first.stop()

    market.devnet.rpc("anvil_reorg", [3, []])  # while the relay is away
    with caplog.at_level(logging.INFO, logger="gpumarket.relay"):
        second = relays.start(config)  # its first poll, before it serves, checks the hashes
    assert len(_reorgs(caplog)) == 1
    assert _remaining(second) == {o.signature: 8, b.signature: 5}
    assert second.state(lambda r: r.watch.reorgs) == 1


def test_a_reorg_deeper_than_the_hash_window_replays_from_the_deployment(
    market: MarketEnv, relays: Relays, caplog: pytest.LogCaptureFixture
) -> None:
    relay = relays.start(confirmations=0)
    relay.state(lambda r: setattr(r.watch, "window", 1))  # only the newest block's hash kept
    o, b = offer(market, gpus=8), bid(market, gpus=5)
    assert statuses(relay.submit(o, b)) == [OrderStatus.ACCEPTED] * 2
    outsider = market.client(market.devnet.accounts[OUTSIDER])
    outsider.open_lease(o, b, 1)  # stays: before the reorganisation
    market.devnet.mine(2)
    wanted = market.client().head().number + 1
    wait_until(lambda: relay.state(_next_block) == wanted, 20, "the blocks applied")
    outsider.open_lease(o, b, 2)  # replaced, with the block before
    wait_until(lambda: _remaining(relay) == {o.signature: 5, b.signature: 2}, 20, "both leases")
    assert len(relay.state(lambda r: r.store.applied_blocks())) == 1

    with caplog.at_level(logging.INFO, logger="gpumarket.relay"):
        market.devnet.rpc("anvil_reorg", [2, []])
        wait_until(lambda: relay.state(lambda r: r.watch.reorgs) == 1, 20, "the reorg noticed")
        deployed = market.contracts.deployment.deploy_block
        assert [(f["fork"], f["beyond_window"]) for f in _reorgs(caplog)] == [(deployed, True)]
    # Replayed from the deployment: the first lease counts once, the second not at all.
    wait_until(lambda: _remaining(relay) == {o.signature: 7, b.signature: 4}, 20, "the replay")
    filled = relay.state(lambda r: r.store.filled_by_order())
    assert sorted(filled.values()) == [1, 1]  # the offer's and the bid's


def test_cancellations_on_chain_remove_orders(market: MarketEnv, relays: Relays) -> None:
    relay = relays.start()
    o1, o2 = offer(market), offer(market, price_per_gpu_second=4)
    b1, b2 = (
        bid(market, max_price_per_gpu_second=1),
        bid(market, lab=OTHER_LAB, max_price_per_gpu_second=1),
    )
    relay.submit(o1, o2, b1, b2)
    assert len(_remaining(relay)) == 4

    market.provider(1).cancel(o1)
    wait_until(lambda: o1.signature not in _remaining(relay), 20, "the cancelled offer to go")
    market.lab(LAB).cancel_all()
    wait_until(lambda: b1.signature not in _remaining(relay), 20, "the nonce floor to apply")
    assert set(_remaining(relay)) == {o2.signature, b2.signature}
    # The chain's word stays: the same orders are refused if sent again.
    results = relay.submit(o1, b1)
    assert statuses(results) == [OrderStatus.ORDER_CANCELLED, OrderStatus.NONCE_CANCELLED]


def test_restart_on_the_same_database_brings_back_the_same_book(
    market: MarketEnv, relays: Relays
) -> None:
    config = relays.config("restart")
    first = relays.start(config)
    offers = [offer(market, price_per_gpu_second=p, gpus=g) for p, g in ((3, 8), (3, 2), (4, 6))]
    bids = [bid(market, max_price_per_gpu_second=p) for p in (1, 2, 2)]
    orders: list[Signed[Offer] | Signed[Bid]] = [*offers, *bids]
    assert statuses(first.submit(*orders)) == [OrderStatus.ACCEPTED] * 6
    partly = bid(market, gpus=2, max_price_per_gpu_second=3)
    market.client(market.devnet.accounts[OUTSIDER]).open_lease(offers[0], partly, 2)
    wait_until(lambda: _remaining(first)[orders[0].signature] == 6, 20, "the outside fill")
    before = first.book()
    relay_id = first.relay.relay_id
    first.stop()

    market.lab(LAB).cancel(orders[4])  # while the relay is away
    second = relays.start(config)
    after = second.book()
    assert second.relay.relay_id == relay_id
    assert after.offers == before.offers  # same orders, same GPUs left, same priority
    assert after.bids == tuple(e for e in before.bids if e.order.signed != orders[4])
    assert statuses(second.submit(orders[1])) == [OrderStatus.DUPLICATE_ORDER]


def test_a_database_from_another_chain_or_deployment_is_refused(
    market: MarketEnv, relays: Relays
) -> None:
    """Issue 14: a relay restarted against a fresh devnet reused its old database (orders and a
    cursor from the other chain). The database is bound to the chain id, the market's address and
    the deployment block's hash, and another is refused with a clear error."""
    config = relays.config("bound")
    first = relays.start(config)
    assert statuses(first.submit(offer(market))) == [OrderStatus.ACCEPTED]
    first.stop()
    other = deploy(market.devnet.web3(), market.devnet.accounts[0])  # a second deployment
    relay = Relay(config, other.deployment)
    with pytest.raises(StoreError, match="follows another chain or deployment"):
        relays.lt.run(relay.start())
    again = relays.start(config)  # the chain it was bound to: accepted, its book intact
    assert len(again.book().offers) == 1
