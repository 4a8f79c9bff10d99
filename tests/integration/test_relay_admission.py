"""Issue 14, bug B: ``/v1/gossip`` passes the same admission as ``/v1/orders``.

An outside probe got 5,000 bids of one signer in through gossip where ``/v1/orders`` stops it at
2,000, and 40,000 bids of 40 fresh keys without funds, growing the relay's memory and database
without bound. Here the probe at a small scale, against a real relay and anvil: the signer's
budget is one for both entry points, a peer has its own, a bid's lab must be able to pay, the
book and its database stay bounded, and a silent chain admits nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bench.rpc_proxy import rpc_proxy
from market.chain.client import READ_BATCH, LabFunds
from market.chain.rpc import JsonRpc
from market.matching import Submission
from market.protocol.signing import SigningKey
from market.protocol.types import Bid
from nodes.wire import (
    BookChange,
    ErrorCode,
    ErrorResponse,
    Gossip,
    Message,
    OrdersAccepted,
    OrderStatus,
    SubmitOrders,
    decode,
    encode,
)
from tests.integration.conftest import MarketEnv
from tests.integration.relay_harness import (
    LAB,
    MODEL,
    OTHER_LAB,
    PROVIDER,
    RelayHandle,
    Relays,
    fund_market,
    open_relays,
    small_limits,
)
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

UNAPPROVED = 6
"""Holds tokens, never approved the market."""
PRICE, GPUS, DURATION = 5, 1, 3600
COST = PRICE * GPUS * DURATION


@pytest.fixture
def relays(env: MarketEnv, tmp_path: Path) -> Iterator[Relays]:
    with open_relays(env, tmp_path) as started:
        yield started


def _bids(
    env: MarketEnv, key: SigningKey, count: int, *, first_nonce: int = 0, expiry: int = 0
) -> list[Submission]:
    """``count`` bids of ``key``'s lab, each able to cost ``COST`` (expiring in an hour)."""
    domain, expiry = env.client().domain, expiry or env.client().chain_time() + 3600
    return [
        Submission(
            key.sign(
                domain,
                Bid(
                    lab=key.address,
                    gpu_model=MODEL,
                    gpu_count=GPUS,
                    max_price_per_gpu_second=PRICE,
                    duration=DURATION,
                    expiry=expiry,
                    nonce=n,
                ),
            )
        )
        for n in range(first_nonce, first_nonce + count)
    ]


def _key(env: MarketEnv, index: int) -> SigningKey:
    return SigningKey(bytes(env.devnet.accounts[index].key))


def _post(relay: RelayHandle, path: str, orders: list[Submission]) -> tuple[int, Message]:
    body = (
        encode(Gossip("peer-relay", "peer-relay", 1, tuple(orders)))
        if path == "/v1/gossip"
        else encode(SubmitOrders(tuple(orders)))
    )
    status, data = relay.raw("POST", path, body)
    return status, decode(data)


def _statuses(answer: Message) -> list[OrderStatus]:
    assert isinstance(answer, OrdersAccepted), answer
    return [r.status for r in answer.results]


def _refused(answer: Message) -> ErrorResponse:
    assert isinstance(answer, ErrorResponse), answer
    return answer


def _held(relay: RelayHandle) -> tuple[int, int]:
    """Orders in the book and rows in the relay's database."""
    return relay.state(lambda r: (len(r.book.book), r.store.count_orders()))


def _nothing_more(status: int, answer: Message, signer: str) -> None:
    """A signer past its budget gets 429 for the batch; on a machine so slow that the budget
    refilled while the first batches were checked (200 orders a second), the batch passes the
    budget and meets the signer's share of the book instead: either way nothing more enters."""
    if status == 429:
        error = _refused(answer)
        assert error.code == ErrorCode.RATE_LIMITED
        assert error.details["key"] == signer
        assert int(error.details["retry_after_ms"]) > 0
    else:
        assert set(_statuses(answer)) == {OrderStatus.SIGNER_AT_CAPACITY}, answer


def test_one_signer_over_its_budget_through_gossip_is_refused_429_at_the_default_limits(
    env: MarketEnv, relays: Relays
) -> None:
    """The probe: one signer's bids gossiped in batches of 1,000. /v1/orders stopped it at its
    burst of 2,000; gossip now does too, and the budget is the same one."""
    fund_market(env)
    relay = relays.start()
    lab = _key(env, LAB)
    batches = [_bids(env, lab, 1000, first_nonce=i * 1000) for i in range(3)]
    for batch in batches[:2]:
        status, answer = _post(relay, "/v1/gossip", batch)
        assert (status, set(_statuses(answer))) == (200, {OrderStatus.ACCEPTED})
    status, answer = _post(relay, "/v1/gossip", batches[2])
    _nothing_more(status, answer, lab.address)
    # One budget for both entry points: the signer cannot go round by /v1/orders either.
    status, answer = _post(relay, "/v1/orders", batches[2])
    _nothing_more(status, answer, lab.address)
    assert _held(relay) == (2000, 2000)
    # What the book holds already costs nothing: an honest mesh re-gossiping is not throttled.
    status, answer = _post(relay, "/v1/gossip", batches[0])
    assert (status, set(_statuses(answer))) == (200, {OrderStatus.DUPLICATE_ORDER})


def test_a_budget_spent_directly_is_spent_for_gossip_too(env: MarketEnv, relays: Relays) -> None:
    fund_market(env)
    relay = relays.start(limits=small_limits(signer_rate_per_s=0.01, signer_burst=3))
    lab, other = _key(env, LAB), _key(env, OTHER_LAB)
    status, answer = _post(relay, "/v1/orders", _bids(env, lab, 3))
    assert _statuses(answer) == [OrderStatus.ACCEPTED] * 3
    status, answer = _post(relay, "/v1/gossip", _bids(env, lab, 1, first_nonce=3))
    assert (status, _refused(answer).details["key"]) == (429, lab.address)
    # Another signer's budget is its own.
    status, answer = _post(relay, "/v1/gossip", _bids(env, other, 3))
    assert _statuses(answer) == [OrderStatus.ACCEPTED] * 3
    assert _held(relay) == (6, 6)


@pytest.mark.parametrize("path", ["/v1/orders", "/v1/gossip"])
def test_bids_of_labs_that_cannot_pay_are_refused_lab_unfunded(
    env: MarketEnv, relays: Relays, path: str
) -> None:
    """Fresh keys without tokens (the probe's 40 keys, here 8 of 25 bids each), and a lab that
    holds tokens but never approved the market."""
    fund_market(env)
    relay = relays.start()
    fresh = [SigningKey(secrets.token_bytes(32)) for _ in range(8)]
    orders = [b for key in fresh for b in _bids(env, key, 25)]
    status, answer = _post(relay, path, orders)
    assert (status, set(_statuses(answer))) == (200, {OrderStatus.LAB_UNFUNDED})
    assert isinstance(answer, OrdersAccepted)
    assert dict(answer.results[0].details) == {
        "lab": fresh[0].address,
        "needed": COST,
        "balance": 0,
        "allowance": 0,
    }
    assert _held(relay) == (0, 0)

    status, answer = _post(relay, path, _bids(env, _key(env, UNAPPROVED), 1))
    assert _statuses(answer) == [OrderStatus.LAB_UNFUNDED]
    assert isinstance(answer, OrdersAccepted)
    assert answer.results[0].details["allowance"] == 0
    assert int(answer.results[0].details["balance"]) > COST
    assert _held(relay) == (0, 0)


def test_a_lab_that_allows_less_than_a_bid_may_cost_is_refused_until_it_allows_more(
    env: MarketEnv, relays: Relays
) -> None:
    env.lab(UNAPPROVED).fund(COST - 1)
    relay = relays.start(limits=small_limits(funds_ttl_s=0.2))
    orders = _bids(env, _key(env, UNAPPROVED), 1)
    status, answer = _post(relay, "/v1/orders", orders)
    assert isinstance(answer, OrdersAccepted)
    [result] = answer.results
    assert (status, result.status) == (200, OrderStatus.LAB_UNFUNDED)
    assert (result.details["needed"], result.details["allowance"]) == (COST, COST - 1)
    assert _held(relay) == (0, 0)
    env.lab(UNAPPROVED).fund(COST)
    wait_until(
        lambda: _statuses(_post(relay, "/v1/orders", orders)[1]) == [OrderStatus.ACCEPTED],
        10,
        "the relay to read the new allowance",
    )
    assert _held(relay) == (1, 1)


def test_a_peer_over_its_gossip_budget_is_refused_429_and_duplicates_cost_it_nothing(
    env: MarketEnv, relays: Relays
) -> None:
    fund_market(env)
    relay = relays.start(limits=small_limits(peer_rate_per_s=0.01, peer_burst=4))
    lab, other = _key(env, LAB), _key(env, OTHER_LAB)
    # Dead orders replayed cost neither the peer nor their signer anything.
    dead = _bids(env, lab, 10, first_nonce=100, expiry=env.client().chain_time() - 1)
    status, answer = _post(relay, "/v1/gossip", dead)
    assert (status, set(_statuses(answer))) == (200, {OrderStatus.ORDER_EXPIRED})
    first = _bids(env, lab, 2) + _bids(env, other, 2)
    status, answer = _post(relay, "/v1/gossip", first)
    assert _statuses(answer) == [OrderStatus.ACCEPTED] * 4
    status, answer = _post(relay, "/v1/gossip", first)  # known orders: free
    assert (status, set(_statuses(answer))) == (200, {OrderStatus.DUPLICATE_ORDER})
    status, answer = _post(relay, "/v1/gossip", _bids(env, other, 1, first_nonce=2))
    error = _refused(answer)
    assert (status, error.code, error.details["key"]) == (429, ErrorCode.RATE_LIMITED, "127.0.0.1")
    # The peer budget is gossip's: the same orders sent directly by their signer go in.
    status, answer = _post(relay, "/v1/orders", _bids(env, other, 1, first_nonce=2))
    assert _statuses(answer) == [OrderStatus.ACCEPTED]
    assert _held(relay) == (5, 5)


def test_the_book_is_bounded_and_the_largest_holder_gives_way(
    env: MarketEnv, relays: Relays
) -> None:
    """max 6 orders, 4 per signer: A fills its share, B fills the book; B's next order evicts A's
    newest (A holds more than B would); then A and B are even and the book is full."""
    fund_market(env)
    env.lab(UNAPPROVED).fund(2**200)
    relay = relays.start(limits=small_limits(max_book_orders=6, max_signer_orders=4))
    events = relay.record()
    a, b, c = _key(env, LAB), _key(env, OTHER_LAB), _key(env, UNAPPROVED)
    a_bids = _bids(env, a, 5)
    status, answer = _post(relay, "/v1/orders", a_bids)
    assert _statuses(answer) == [OrderStatus.ACCEPTED] * 4 + [OrderStatus.SIGNER_AT_CAPACITY]
    assert isinstance(answer, OrdersAccepted)
    assert dict(answer.results[4].details) == {"signer": a.address, "held": 4, "share": 4}

    b_bids = _bids(env, b, 4)
    status, answer = _post(relay, "/v1/gossip", b_bids[:3])
    assert _statuses(answer) == [OrderStatus.ACCEPTED] * 3  # the third evicted A's newest
    assert relay.state(lambda r: r.book.capacity.held(a.address)) == 3
    assert relay.state(lambda r: r.book.capacity.held(b.address)) == 3
    evicted = events.wait_for(
        lambda es: any(isinstance(e, BookChange) and e.remaining == 0 for e in es),
        "the eviction on the stream",
    )
    gone = [e.order_hash for e in evicted if isinstance(e, BookChange) and e.remaining == 0]
    book_hashes = relay.state(lambda r: set(r.book.book._orders))
    assert len(gone) == 1
    assert gone[0] not in book_hashes
    assert relay.state(lambda r: r.metrics.evicted.value()) == 1

    status, answer = _post(relay, "/v1/orders", b_bids[3:])
    assert _statuses(answer) == [OrderStatus.BOOK_FULL]
    status, answer = _post(relay, "/v1/gossip", _bids(env, c, 1))
    assert status == 200
    # C holds none: A and B hold 3 each, more than C would, so one of them gives way.
    assert _statuses(answer) == [OrderStatus.ACCEPTED]
    assert _held(relay) == (6, 6)


def test_a_silent_chain_refuses_with_503_and_admits_nothing(env: MarketEnv, relays: Relays) -> None:
    fund_market(env)
    deployment = env.contracts.deployment
    with rpc_proxy(deployment.rpc_url) as proxy:
        relay = relays.start(
            deployment=replace(deployment, rpc_url=proxy.url), chain_read_deadline_s=0.3
        )
        orders = _bids(env, _key(env, LAB), 2)
        proxy.cut()
        for path in ("/v1/orders", "/v1/gossip"):
            status, answer = _post(relay, path, orders)
            error = _refused(answer)
            assert (status, error.code) == (503, ErrorCode.CHAIN_UNAVAILABLE), path
            assert error.details["url"] == proxy.url
        assert _held(relay) == (0, 0)
        proxy.restore()
        status, answer = _post(relay, "/v1/gossip", orders)
        assert _statuses(answer) == [OrderStatus.ACCEPTED] * 2
        assert _held(relay) == (2, 2)


def test_healthz_answers_503_while_the_chain_is_down_and_200_once_it_is_back(
    env: MarketEnv, relays: Relays
) -> None:
    """Issue 16: /healthz answered 200 while the RPC endpoint was down. Now it says the relay
    cannot reach the chain (503) until a poll reaches it again, and /metrics says so too."""
    deployment = env.contracts.deployment
    with rpc_proxy(deployment.rpc_url) as proxy:
        relay = relays.start(
            deployment=replace(deployment, rpc_url=proxy.url), chain_read_deadline_s=0.3
        )
        status, body = relay.raw("GET", "/healthz")
        assert (status, body.decode().split()[0]) == (200, "ok")
        proxy.cut()
        wait_until(lambda: relay.raw("GET", "/healthz")[0] == 503, 30, "/healthz says 503")
        status, body = relay.raw("GET", "/healthz")
        assert body.decode().startswith("chain_unavailable ")
        assert proxy.url in body.decode()
        assert "gpumarket_chain_up 0.0" in relay.raw("GET", "/metrics")[1].decode()
        proxy.restore()
        wait_until(lambda: relay.raw("GET", "/healthz")[0] == 200, 30, "/healthz back to 200")
        assert "gpumarket_chain_up 1.0" in relay.raw("GET", "/metrics")[1].decode()


def test_lab_funds_reads_many_labs_in_json_rpc_batches(
    env: MarketEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    fund_market(env)
    client = env.client()
    fresh = [SigningKey(secrets.token_bytes(32)).address for _ in range(READ_BATCH + 100)]
    labs = [env.lab(LAB).address, env.lab(UNAPPROVED).address, *fresh]
    batches: list[int] = []
    send = JsonRpc.batch

    def counted(rpc: JsonRpc, requests: Sequence[tuple[str, list[Any]]]) -> object:
        batches.append(len(requests))
        return send(rpc, requests)

    monkeypatch.setattr(JsonRpc, "batch", counted)
    funds = client.lab_funds(labs)
    assert batches == [READ_BATCH, READ_BATCH, len(labs) - READ_BATCH, len(labs) - READ_BATCH]
    lab = env.lab(LAB).address
    assert funds[lab] == LabFunds(client.balance_of(lab), 2**200)
    unapproved = env.lab(UNAPPROVED).address
    assert funds[unapproved] == LabFunds(client.balance_of(unapproved), 0)
    assert {funds[a] for a in fresh} == {LabFunds(0, 0)}


def test_providers_records_are_read_in_one_json_rpc_batch_as_each_alone_reads(
    env: MarketEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The relay's stake cache reads every provider a request names in one batch."""
    fund_market(env)
    client = env.client()
    stranger = SigningKey(secrets.token_bytes(32)).address
    providers = [env.provider(PROVIDER).address, stranger, env.provider(PROVIDER).address]
    batches: list[int] = []
    send = JsonRpc.batch

    def counted(rpc: JsonRpc, requests: Sequence[tuple[str, list[Any]]]) -> object:
        batches.append(len(requests))
        return send(rpc, requests)

    monkeypatch.setattr(JsonRpc, "batch", counted)
    infos = client.provider_infos(providers)
    assert batches == [2]  # each address once
    monkeypatch.undo()
    assert infos == {p: client.provider_info(p) for p in providers}
    assert infos[env.provider(PROVIDER).address].registered
    assert not infos[stranger].registered
