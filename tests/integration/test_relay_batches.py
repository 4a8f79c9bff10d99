"""The relay opens leases in batches: an all-or-none cluster across providers in one transaction
or not at all, a batch with a bad match opens the rest, and an auction round at one price."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from market.chain.events import ChainEvent
from market.matching import OrderBook, Requirements, Submission, run_auction, verify_orders
from market.protocol.eip712 import order_hash
from market.protocol.types import Bid, Offer, Signed
from nodes.wire import Fill, FillStatus, Message, OrderResult, OrderStatus, RelayClient
from tests.integration.conftest import MIN_STAKE, MarketEnv
from tests.integration.relay_harness import (
    LAB,
    OTHER_LAB,
    RelayHandle,
    Relays,
    admit_then_revoke,
    bid,
    fund_market,
    offer,
    open_relays,
    ready_line,
    statuses,
)
from tests.waiting import wait_until

pytestmark = pytest.mark.integration
SECOND_PROVIDER = 2
UNAPPROVED = 6
"""A lab that holds tokens and never approved the market."""
QUIET = 3600.0
"""A chain poll interval no test outlasts: the relay reads the chain at start and then learns of
an on-chain cancellation only from the revert it causes."""


@pytest.fixture
def relays(env: MarketEnv, tmp_path: Path) -> Iterator[Relays]:
    with open_relays(env, tmp_path) as started:
        yield started


@pytest.fixture
def market(env: MarketEnv) -> MarketEnv:
    fund_market(env)
    env.provider(SECOND_PROVIDER).register(stake=MIN_STAKE * 2, endpoint="http://p2")
    return env


def _hash(env: MarketEnv, signed: Signed[Offer] | Signed[Bid]) -> bytes:
    return order_hash(env.client().domain, signed.message)


def _events(env: MarketEnv, name: str) -> list[ChainEvent]:
    return [e for e in env.client().events() if e.name == name]


def _filled(env: MarketEnv, signed: Signed[Offer] | Signed[Bid]) -> int:
    m = signed.message
    signer = m.provider if isinstance(m, Offer) else m.lab
    return env.client().order_state(signer, _hash(env, signed)).filled


def _cluster(env: MarketEnv, gpus: int = 6) -> Signed[Bid]:
    return bid(env, gpus=gpus, requirements=Requirements(all_or_none=True))


def _fill_states(relay: RelayHandle) -> list[tuple[bytes, bytes, int, str]]:
    return [(o, b, g, s) for _, o, b, g, s in relay.state(lambda r: r.store.fills())]


def _failed(events: list[Message]) -> list[Fill]:
    return [e for e in events if isinstance(e, Fill) and e.status is FillStatus.FAILED]


def _book(relay: RelayHandle) -> dict[bytes, int]:
    snapshot = relay.book()
    return {e.order.signed.signature: e.remaining for e in (*snapshot.offers, *snapshot.bids)}


def test_an_all_or_none_bid_across_two_providers_opens_every_lease_in_one_transaction(
    market: MarketEnv, relays: Relays
) -> None:
    # At most one match per transaction, and still the cluster's two fills go together.
    relay = relays.start(matcher_key=relays.matcher_key(), max_batch=1)
    o1 = offer(market, gpus=4, price_per_gpu_second=3)
    o2 = offer(market, SECOND_PROVIDER, gpus=4, price_per_gpu_second=4)
    cluster = _cluster(market)
    assert statuses(relay.submit(o1, o2)) == [OrderStatus.ACCEPTED] * 2
    assert statuses(relay.submit(cluster)) == [OrderStatus.ACCEPTED]

    wait_until(lambda: _filled(market, cluster) == 6, 20, "the cluster's leases")
    opened = _events(market, "LeaseOpened")
    assert sorted((e.args["offer_hash"], e.args["lease"].gpus) for e in opened) == sorted(
        [(_hash(market, o1), 4), (_hash(market, o2), 2)]
    )
    assert {e.args["bid_hash"] for e in opened} == {_hash(market, cluster)}
    assert len({(e.tx_hash, e.block_number) for e in opened}) == 1  # one transaction
    assert {e.args["lease"].price_per_gpu_second for e in opened} == {3, 4}  # each its ask
    wait_until(
        lambda: [s for *_, s in _fill_states(relay)] == ["opened", "opened"], 10, "the outcomes"
    )
    assert _book(relay) == {o2.signature: 2}


def test_fills_matched_within_the_window_share_one_transaction(
    market: MarketEnv, relays: Relays
) -> None:
    """Two bids in two requests, each matched at once: the first fill waits ``fill_window_s``
    for the second, and both leases open in one transaction."""
    relay = relays.start(matcher_key=relays.matcher_key(), fill_window_s=2.0)
    o1 = offer(market, gpus=2, price_per_gpu_second=3)
    o2 = offer(market, SECOND_PROVIDER, gpus=2, price_per_gpu_second=3)
    assert statuses(relay.submit(o1, o2)) == [OrderStatus.ACCEPTED] * 2
    b1, b2 = bid(market, gpus=2), bid(market, gpus=2)
    assert statuses(relay.submit(b1)) == [OrderStatus.ACCEPTED]
    assert statuses(relay.submit(b2)) == [OrderStatus.ACCEPTED]

    wait_until(lambda: len(_events(market, "LeaseOpened")) == 2, 20, "both leases")
    opened = _events(market, "LeaseOpened")
    assert {e.args["bid_hash"] for e in opened} == {_hash(market, b1), _hash(market, b2)}
    assert len({e.tx_hash for e in opened}) == 1  # one transaction


def test_an_all_or_none_bid_larger_than_the_book_rests_and_opens_nothing(
    market: MarketEnv, relays: Relays
) -> None:
    relay = relays.start(matcher_key=relays.matcher_key())
    o1 = offer(market, gpus=4, price_per_gpu_second=3)
    o2 = offer(market, SECOND_PROVIDER, gpus=4, price_per_gpu_second=4)
    cluster = _cluster(market, gpus=10)
    relay.submit(o1, o2, cluster)
    plain = bid(market, lab=OTHER_LAB, gpus=1)  # matched after the cluster was tried
    relay.submit(plain)
    wait_until(lambda: _filled(market, plain) == 1, 20, "the plain bid's lease")
    assert [e.args["bid_hash"] for e in _events(market, "LeaseOpened")] == [_hash(market, plain)]
    assert _book(relay) == {o1.signature: 3, o2.signature: 4, cluster.signature: 10}


def test_a_cluster_whose_offer_was_cancelled_on_chain_opens_none_of_its_leases(
    market: MarketEnv, relays: Relays
) -> None:
    relay = relays.start(matcher_key=relays.matcher_key(), chain_poll_s=QUIET)
    events = relay.record()
    o1 = offer(market, gpus=4, price_per_gpu_second=3)
    o2 = offer(market, SECOND_PROVIDER, gpus=4, price_per_gpu_second=4)
    relay.submit(o1, o2)
    market.provider(SECOND_PROVIDER).cancel(o2)  # the relay does not read the chain again
    cluster = _cluster(market)
    relay.submit(cluster)  # 4 from o1 and 2 from o2, in one lot

    seen = events.wait_for(lambda es: len(_failed(es)) == 2, "both fills to fail")
    assert sorted((f.offer_hash, f.gpus) for f in _failed(seen)) == sorted(
        [(_hash(market, o1), 4), (_hash(market, o2), 2)]
    )
    assert all("MarketOrderCancelled" in f.error for f in _failed(seen))
    assert [s for *_, s in _fill_states(relay)] == ["failed", "failed"]
    assert _events(market, "LeaseOpened") == []
    assert _filled(market, o1) == 0  # o1's part was fine, and still did not open alone
    # The book dropped o2; 4 GPUs cannot fill a cluster of 6, so it rests whole.
    assert _book(relay) == {o1.signature: 4, cluster.signature: 6}


def test_a_batch_with_a_cancelled_offer_opens_the_other_matches_after_dropping_it(
    market: MarketEnv, relays: Relays
) -> None:
    relay = relays.start(matcher_key=relays.matcher_key(), chain_poll_s=QUIET)
    good = offer(market, gpus=8, price_per_gpu_second=3)
    gone = offer(market, SECOND_PROVIDER, gpus=8, price_per_gpu_second=2)  # the cheapest
    relay.submit(good, gone)
    market.provider(SECOND_PROVIDER).cancel(gone)  # the relay does not read the chain again
    b1, b2, b3 = (bid(market, gpus=4, nonce=n) for n in (1, 2, 3))
    # One request: all three fills are queued before the matcher runs, so they form one batch:
    # b1 and b2 from the cancelled offer, b3 from the good one.
    assert statuses(relay.submit(b1, b2, b3)) == [OrderStatus.ACCEPTED] * 3

    wait_until(lambda: _filled(market, good) == 8, 20, "the good offer's leases")
    h = {x.signature: _hash(market, x) for x in (good, gone, b1, b2, b3)}
    opened = _events(market, "LeaseOpened")
    assert [(e.args["offer_hash"], e.args["bid_hash"]) for e in opened] == [
        (h[good.signature], h[b3.signature]),  # the batch without the culprits
        (h[good.signature], h[b1.signature]),  # b1 matched again, to what was left
    ]
    wait_until(lambda: len(_fill_states(relay)) == 4, 10, "every outcome")
    assert sorted((o, b, s) for o, b, _, s in _fill_states(relay)) == sorted(
        [
            (h[gone.signature], h[b1.signature], "failed"),
            (h[gone.signature], h[b2.signature], "failed"),
            (h[good.signature], h[b3.signature], "opened"),
            (h[good.signature], h[b1.signature], "opened"),
        ]
    )
    # The culprit was found by estimates: only the two good transactions were ever sent.
    matcher = market.devnet.accounts[7].address
    assert market.client().w3.eth.get_transaction_count(matcher) == 2
    assert _book(relay) == {b2.signature: 4}


def test_a_batch_with_a_bid_that_cannot_pay_opens_the_others_in_one_transaction(
    market: MarketEnv, relays: Relays
) -> None:
    relay = relays.start(matcher_key=relays.matcher_key())
    events = relay.record()
    good = offer(market, gpus=8, price_per_gpu_second=3)
    # The allowance error names no order: each lot is estimated alone to find the culprit.
    b1, broke, b3 = (
        bid(market, gpus=2),
        bid(market, lab=UNAPPROVED, gpus=2),
        bid(market, lab=OTHER_LAB, gpus=2),
    )
    assert statuses(relay.submit(b1)) == [OrderStatus.ACCEPTED]
    assert statuses(admit_then_revoke(relay, market, UNAPPROVED, broke)) == [OrderStatus.ACCEPTED]
    assert statuses(relay.submit(b3)) == [OrderStatus.ACCEPTED]
    relay.submit(good)

    wait_until(lambda: _filled(market, good) == 4, 20, "the two good leases")
    opened = _events(market, "LeaseOpened")
    assert sorted(e.args["bid_hash"] for e in opened) == sorted(_hash(market, x) for x in (b1, b3))
    assert len({e.tx_hash for e in opened}) == 1
    seen = events.wait_for(lambda es: len(_failed(es)) == 1, "the failed fill")
    assert _failed(seen)[0].bid_hash == _hash(market, broke)
    assert "ERC20InsufficientAllowance" in _failed(seen)[0].error
    assert market.client().w3.eth.get_transaction_count(market.devnet.accounts[7].address) == 1
    wait_until(lambda: _book(relay) == {good.signature: 4}, 10, "the bid that cannot pay to go")


def test_a_batch_that_fails_only_as_a_whole_is_halved_until_the_culprit_is_alone(
    market: MarketEnv, relays: Relays
) -> None:
    relay = relays.start(matcher_key=relays.matcher_key())
    good = offer(market, gpus=8, price_per_gpu_second=3)
    first = bid(market, gpus=2)
    c1, c2 = (bid(market, lab=UNAPPROVED, gpus=2, nonce=n) for n in (1, 2))
    assert statuses(relay.submit(first)) == [OrderStatus.ACCEPTED]
    # Then the lab allows one lease of 2 GPUs for an hour at the offer's price, not two.
    tight = admit_then_revoke(relay, market, UNAPPROVED, c1, c2, allowance=3 * 2 * 3600)
    assert statuses(tight) == [OrderStatus.ACCEPTED] * 2
    relay.submit(good)

    wait_until(lambda: len(_fill_states(relay)) == 3, 20, "every outcome")
    wait_until(
        lambda: sorted(s for *_, s in _fill_states(relay)) == ["failed", "opened", "opened"],
        20,
        "the outcomes",
    )
    opened = _events(market, "LeaseOpened")
    assert [e.args["bid_hash"] for e in opened] == [_hash(market, first), _hash(market, c1)]
    assert len({e.tx_hash for e in opened}) == 2  # the halves went apart
    failed = [b for _, b, _, s in _fill_states(relay) if s == "failed"]
    assert failed == [_hash(market, c2)]
    assert market.client().w3.eth.get_transaction_count(market.devnet.accounts[7].address) == 2


async def _submit(url: str, orders: list[Submission]) -> tuple[OrderResult, ...]:
    async with RelayClient(url) as client:
        return await client.submit(orders)


def test_an_auction_round_opens_every_lease_at_the_clearing_price(
    market: MarketEnv, tmp_path: Path
) -> None:
    offers = [
        offer(market, gpus=4, price_per_gpu_second=2),
        offer(market, SECOND_PROVIDER, gpus=4, price_per_gpu_second=3),
        offer(market, gpus=4, price_per_gpu_second=6),
    ]
    bids = [
        bid(market, gpus=4, max_price_per_gpu_second=7, nonce=1),
        bid(market, lab=OTHER_LAB, gpus=4, max_price_per_gpu_second=5, nonce=2),
        bid(market, gpus=4, max_price_per_gpu_second=3, nonce=3),
        bid(market, lab=OTHER_LAB, gpus=2, max_price_per_gpu_second=1, nonce=4),
    ]
    reader = market.client()
    verified, rejected = verify_orders(reader.domain, [*offers, *bids])
    assert rejected == []
    book = OrderBook()
    for order in verified:
        book.add(order, reader.chain_time())
    (clearing,) = run_auction(book, reader.chain_time())
    assert clearing.price == 5  # volume 8 at 3 and 5; at 5 demand equals supply
    price = clearing.price
    labs = {i: market.devnet.accounts[i].address for i in (LAB, OTHER_LAB)}
    before = {i: reader.balance_of(a) for i, a in labs.items()}

    deployment = tmp_path / "deployment.json"
    market.contracts.deployment.save(deployment)
    key = "0x" + bytes(market.devnet.accounts[7].key).hex()
    command = ["relay", "--deployment", str(deployment), "--db", str(tmp_path / "r.sqlite"),
               "--matcher-key-env", "RELAY_TEST_KEY", "--matching", "auction",
               "--auction-interval", "0.5"]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "nodes.cli", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "RELAY_TEST_KEY": key},
    )
    try:
        url = dict(part.split("=", 1) for part in ready_line(proc, 30).split()[2:])["url"]
        results = asyncio.run(_submit(url, [*map(Submission, offers), *map(Submission, bids)]))
        assert statuses(results) == [OrderStatus.ACCEPTED] * 7
        wait_until(lambda: bool(_events(market, "AuctionCleared")), 20, "the auction's transaction")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "auction_cleared" in err

    (cleared,) = _events(market, "AuctionCleared")
    assert dict(cleared.args) == {"clearing_price": price, "leases": 2, "gpus": 8}
    opened = _events(market, "LeaseOpened")
    assert {e.tx_hash for e in opened} == {cleared.tx_hash}
    assert [e.args["lease"].price_per_gpu_second for e in opened] == [price, price]
    assert sorted((e.args["offer_hash"], e.args["bid_hash"]) for e in opened) == sorted(
        (f.offer_hash, f.bid_hash) for f in clearing.fills
    )
    # Each lab paid the clearing price, never more than its bid's maximum (7 and 5).
    duration = bids[0].message.duration
    for i, address in labs.items():
        leases = [e.args["lease"] for e in opened if e.args["lease"].lab == address]
        assert len(leases) == 1
        assert before[i] - reader.balance_of(address) == price * leases[0].gpus * duration
    assert all(b.message.max_price_per_gpu_second >= price for b in bids[:2])
