"""A relay on the session's anvil: orders in, typed refusals, matching into leases, explain."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import msgpack
import pytest

from market.matching import Constraint, Explanation, Requirements, Submission, explain
from market.protocol.eip712 import order_hash
from market.protocol.signing import SigningKey
from market.protocol.types import Bid, Billing, Offer, Signed
from nodes.relay import Relay
from nodes.wire import (
    BookChange,
    BookQuery,
    BookSnapshot,
    ErrorCode,
    ErrorResponse,
    Fill,
    FillStatus,
    LeaseOpened,
    Message,
    OrderStatus,
    RelayClient,
    Side,
    SubmitOrders,
    decode,
    encode,
)
from tests.integration.conftest import MIN_STAKE, MarketEnv
from tests.integration.relay_harness import (
    LAB,
    MODEL,
    OTHER_LAB,
    OUTSIDER,
    UNDERSTAKED,
    UNREGISTERED,
    RelayHandle,
    Relays,
    admit_then_revoke,
    bid,
    fund_market,
    offer,
    open_relays,
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


def _hash(env: MarketEnv, signed: Signed[Offer] | Signed[Bid]) -> bytes:
    return order_hash(env.client().domain, signed.message)


def test_crossing_orders_open_a_lease_on_anvil_and_stream_every_step(
    market: MarketEnv, relays: Relays
) -> None:
    relay = relays.start(matcher_key=relays.matcher_key())
    events = relay.record()
    o, b = offer(market), bid(market)
    assert statuses(relay.submit(o)) == [OrderStatus.ACCEPTED]
    assert statuses(relay.submit(b)) == [OrderStatus.ACCEPTED]

    oh, bh = _hash(market, o), _hash(market, b)
    reader = market.client()
    wait_until(lambda: reader.order_state(o.message.provider, oh).filled == 4, 20, "the lease")
    assert reader.order_state(b.message.lab, bh).filled == 4
    seen = events.wait_for(
        lambda es: (
            any(isinstance(e, LeaseOpened) for e in es)
            and any(isinstance(e, Fill) and e.status is FillStatus.OPENED for e in es)
        ),
        "the lease events",
    )
    lease = next(e for e in seen if isinstance(e, LeaseOpened))
    assert (lease.offer_hash, lease.bid_hash, lease.lease.gpus) == (oh, bh, 4)
    assert lease.lease.price_per_gpu_second == 3
    opened = next(e for e in seen if isinstance(e, Fill) and e.status is FillStatus.OPENED)
    assert opened.lease_id == lease.lease_id
    assert BookChange(oh, MODEL, Side.OFFER, 8) in seen
    assert Fill(oh, bh, 4, FillStatus.PENDING) in seen
    assert BookChange(bh, MODEL, Side.BID, 0) in seen

    snapshot = relay.book()
    assert [(e.order.signed, e.remaining) for e in snapshot.offers] == [(o, 4)]
    assert snapshot.bids == ()
    metrics = relay.do(lambda c: c.text("/metrics"))
    assert 'gpumarket_relay_fills_total{status="opened"} 1.0' in metrics
    assert 'gpumarket_relay_orders_total{status="accepted"} 2.0' in metrics


def _wait_applied(relay: RelayHandle, check: Any, what: str) -> None:
    wait_until(lambda: relay.state(check), 20, what)


def test_refused_orders_get_exact_typed_reasons_and_change_nothing(
    market: MarketEnv, relays: Relays
) -> None:
    relay = relays.start()
    domain = market.client().domain
    resting = offer(market)
    assert statuses(relay.submit(resting)) == [OrderStatus.ACCEPTED]

    forged = bid(market)
    other_key = SigningKey(bytes(market.devnet.accounts[OTHER_LAB].key))
    forged = Signed(forged.message, other_key.sign(domain, forged.message).signature)
    before_floor = bid(market, lab=OTHER_LAB)
    market.lab(OTHER_LAB).cancel_all()
    cancelled = bid(market)
    market.lab(LAB).cancel(cancelled)
    filled_offer, filled_bid = offer(market, gpus=2), bid(market, gpus=2)
    market.client(market.devnet.accounts[OUTSIDER]).open_lease(filled_offer, filled_bid, 2)
    lab_b = market.lab(OTHER_LAB).address
    _wait_applied(relay, lambda r: r.book.book.min_nonce(lab_b) > 0, "the nonce floor")
    _wait_applied(relay, lambda r: r.book.filled.get(_hash(market, filled_offer)) == 2, "the fill")

    before = relay.book()
    batch: list[Signed[Offer] | Signed[Bid]] = [
        forged,
        bid(market, ttl_s=-100),
        offer(market, provider=UNREGISTERED),
        offer(market, provider=UNDERSTAKED),
        resting,
        before_floor,
        cancelled,
        filled_offer,
    ]
    results = relay.submit(*batch)
    assert statuses(results) == [
        OrderStatus.INVALID_SIGNATURE,
        OrderStatus.ORDER_EXPIRED,
        OrderStatus.PROVIDER_NOT_ELIGIBLE,
        OrderStatus.PROVIDER_NOT_ELIGIBLE,
        OrderStatus.DUPLICATE_ORDER,
        OrderStatus.NONCE_CANCELLED,
        OrderStatus.ORDER_CANCELLED,
        OrderStatus.ORDER_FILLED,
    ]
    assert [r.order_hash for r in results] == [_hash(market, o) for o in batch]
    details = [dict(r.details) for r in results]
    assert details[0] == {
        "expected": forged.message.lab,
        "recovered": other_key.address,
        # The relay asked the chain too: an account without code accepts nothing by ERC-1271.
        "reason": "signed by another account; nor does the signer accept it through ERC-1271",
    }
    assert details[1]["expiry"] == batch[1].message.expiry
    assert int(details[1]["now"]) > batch[1].message.expiry
    assert details[2] == {
        "provider": market.provider(UNREGISTERED).address,
        "free_stake": -1,
        "min_stake": MIN_STAKE,
    }
    assert details[3]["free_stake"] == MIN_STAKE - 1
    assert details[5]["nonce"] == before_floor.message.nonce
    assert int(details[5]["min_nonce"]) > before_floor.message.nonce
    assert details[6] == {"nonce": cancelled.message.nonce}
    assert details[7] == {"size": 2}
    assert relay.book() == before
    metrics = relay.do(lambda c: c.text("/metrics"))
    assert 'gpumarket_relay_orders_total{status="provider_not_eligible"} 2.0' in metrics
    assert 'gpumarket_relay_book_orders{side="offer"} 1.0' in metrics


def test_an_order_twice_in_one_batch_is_accepted_once(market: MarketEnv, relays: Relays) -> None:
    relay = relays.start()
    o = offer(market)
    assert statuses(relay.submit(o, o)) == [OrderStatus.ACCEPTED, OrderStatus.DUPLICATE_ORDER]
    assert len(relay.book().offers) == 1


def test_terms_beside_a_signed_order_are_refused_and_nothing_is_stored(
    market: MarketEnv, relays: Relays
) -> None:
    """An order's terms are its signed fields; a relay stores no term it cannot check."""
    relay = relays.start()
    tree = msgpack.unpackb(encode(SubmitOrders((Submission(offer(market)),))), raw=False)
    tree["body"]["orders"][0]["attributes"] = {"region": "eu-west"}
    status, answer = relay.raw("POST", "/v1/orders", msgpack.packb(tree, use_bin_type=True))
    refused = decode(answer)
    assert status == 400
    assert isinstance(refused, ErrorResponse)
    assert refused.code is ErrorCode.MALFORMED_FRAME
    assert "unexpected keys ['attributes']" in refused.message
    assert relay.book().offers == ()
    assert relay.state(lambda r: r.store.count_orders()) == 0


def test_the_relay_matches_only_offers_whose_signed_terms_fit_and_explains_the_rest(
    market: MarketEnv, relays: Relays
) -> None:
    relay = relays.start(matcher_key=relays.matcher_key())
    us = offer(market, price_per_gpu_second=2, attributes={"region": "us-east"})
    eu = offer(
        market,
        price_per_gpu_second=3,
        attributes={"region": "eu-west", "capabilities": ("ecc",)},
        bandwidth_gbps=400,
        billing=(Billing.RENTAL, Billing.METERED),
    )
    relay.submit(us, eu)
    wants = Requirements(
        constraints=(
            Constraint("region", "in", ("eu-west", "uk")),
            Constraint("capabilities", "has", "ecc"),
            Constraint("bandwidth_gbps", "ge", 400),
        ),
        billing=Billing.METERED,
    )
    b = bid(market, gpus=2, requirements=wants)
    assert statuses(relay.submit(b)) == [OrderStatus.ACCEPTED]
    reader = market.client()
    bh = _hash(market, b)
    wait_until(lambda: reader.order_state(b.message.lab, bh).filled == 2, 20, "the lease")
    assert reader.order_state(us.message.provider, _hash(market, us)).filled == 0
    assert reader.order_state(eu.message.provider, _hash(market, eu)).filled == 2
    # A bid asking what no offer has rests, and explain names the lane and its values.
    japan = Requirements(constraints=(Constraint("region", "eq", "japan"),))
    waiting = bid(market, lab=OTHER_LAB, gpus=1, requirements=japan)
    assert statuses(relay.submit(waiting)) == [OrderStatus.ACCEPTED]
    why = relay.do(lambda c: c.explain(waiting.message))
    assert not why.matchable
    [reason] = [r for r in why.reasons if str(r.code) == "feature_not_accepted"]
    assert (reason.values["attribute"], reason.values["accepted_values"]) == ("region", "japan")
    assert reason.values["offers"] == 2
    assert why == _in_process(relay, waiting.message)


async def _explain(c: RelayClient, order: Offer | Bid) -> Explanation:
    return await c.explain(order)


def _in_process(relay: RelayHandle, order: Offer | Bid) -> Any:
    def run(r: Relay) -> Any:
        h = order_hash(r.book.domain, order)
        return explain(r.book.book, order, r.book.chain_time, order_hash=h)

    return relay.state(run)


def test_explain_over_http_gives_the_same_reasons_as_in_process(
    market: MarketEnv, relays: Relays
) -> None:
    relay = relays.start()
    relay.submit(offer(market, price_per_gpu_second=10, gpus=3, max_duration=7200))
    relay.submit(offer(market, price_per_gpu_second=12, gpus=8, memory_gib=40))
    reqs = Requirements(min_memory_gib=80, constraints=(Constraint("capabilities", "has", "ecc"),))
    dry_run = bid(market, gpus=6, max_price_per_gpu_second=5, requirements=reqs).message
    resting = bid(market, lab=OTHER_LAB, max_price_per_gpu_second=2, duration=10_000)
    relay.submit(resting)
    lonely = offer(market, price_per_gpu_second=50).message

    for order in (dry_run, resting.message, lonely):
        over_http = relay.do(partial(_explain, order=order))
        assert over_http == _in_process(relay, order)
        assert not over_http.matchable
        assert over_http.reasons
    first = relay.do(lambda c: c.explain(dry_run))
    assert {str(r.code) for r in first.reasons} >= {
        "price_not_crossed",
        "memory_too_small",
        "features_missing",
    }


def test_stream_answers_a_book_query_with_the_same_snapshot_as_http(
    market: MarketEnv, relays: Relays
) -> None:
    relay = relays.start()
    relay.submit(offer(market), bid(market, max_price_per_gpu_second=1))

    async def query(c: Any) -> Message:
        async with c.stream() as stream:
            await stream.send(BookQuery(MODEL, 10))
            return await stream.receive()  # type: ignore[no-any-return]

    answer = relay.do(query)
    assert isinstance(answer, BookSnapshot)
    assert answer == relay.book()
    assert len(answer.offers) == len(answer.bids) == 1


def test_a_fill_that_reverts_gives_the_gpus_back_and_drops_the_bid_that_cannot_pay(
    market: MarketEnv, relays: Relays
) -> None:
    relay = relays.start(matcher_key=relays.matcher_key())
    events = relay.record()
    unfunded = 6  # holds tokens; its approval is taken back once its bid is in the book
    o, broke = offer(market), bid(market, lab=unfunded, gpus=2)
    assert statuses(admit_then_revoke(relay, market, unfunded, broke)) == [OrderStatus.ACCEPTED]
    relay.submit(o)
    seen = events.wait_for(
        lambda es: any(isinstance(e, Fill) and e.status is FillStatus.FAILED for e in es),
        "the failed fill",
    )
    failed = next(e for e in seen if isinstance(e, Fill) and e.status is FillStatus.FAILED)
    assert "ERC20InsufficientAllowance" in failed.error
    wait_until(lambda: relay.book().bids == (), 10, "the bid that cannot pay to go")
    assert [(e.order.signed, e.remaining) for e in relay.book().offers] == [(o, 8)]
    assert relay.state(lambda r: r.store.fills("failed"))[0][3] == 2

    good = bid(market, gpus=2)
    relay.submit(good)
    reader = market.client()
    oh = _hash(market, o)
    wait_until(lambda: reader.order_state(o.message.provider, oh).filled == 2, 20, "the lease")


def test_shutdown_sends_the_fills_already_matched_before_it_stops(
    market: MarketEnv, relays: Relays
) -> None:
    relay = relays.start(matcher_key=relays.matcher_key())
    o, b = offer(market), bid(market)
    relay.submit(o, b)  # matched at once; the fill waits in the matcher's queue
    relay.stop()
    oh = _hash(market, o)
    assert market.client().order_state(o.message.provider, oh).filled == 4
