"""A relay admits a contract wallet's bid (ERC-1271, asked through the chain), matches it into a
lease on anvil, gossips it to a peer that checks it again, and refuses a bid the wallet refuses
with the typed INVALID_SIGNATURE result."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from market.chain.devnet import free_port
from market.protocol.eip712 import digest, order_hash
from market.protocol.signing import SigningKey
from market.protocol.types import Bid, Signed
from market.roles import Lab
from nodes.wire import OrderStatus
from tests.integration.conftest import START_BALANCE, MarketEnv
from tests.integration.relay_harness import (
    MODEL,
    RelayHandle,
    Relays,
    fund_market,
    offer,
    open_relays,
    small_limits,
    statuses,
)
from tests.integration.wallets import deploy_wallet
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

OWNER, STRANGER = 6, 9


@pytest.fixture
def relays(env: MarketEnv, tmp_path: Path) -> Iterator[Relays]:
    with open_relays(env, tmp_path) as started:
        yield started


@pytest.fixture
def market(env: MarketEnv) -> MarketEnv:
    return fund_market(env)


@pytest.fixture
def wallet_lab(market: MarketEnv) -> Lab:
    """A Lab acting for an ERC1271Lab wallet (funded, market approved) through OWNER's key."""
    owner = market.devnet.accounts[OWNER]
    wallet = deploy_wallet(market, owner.address)
    return Lab(market.client(owner, wallet=wallet.address), SigningKey(owner.key))


def _bid(lab: Lab) -> Signed[Bid]:
    return lab.bid(MODEL, gpus=4, max_price_per_gpu_second=5, duration=3600)


def _holds(relay: RelayHandle, order: Signed[Bid]) -> bool:
    return order in [e.order.signed for e in relay.book().bids]


def test_wallet_bid_is_admitted_and_matched_into_a_lease_for_the_wallet(
    market: MarketEnv, relays: Relays, wallet_lab: Lab
) -> None:
    relay = relays.start(matcher_key=relays.matcher_key())
    o, b = offer(market), _bid(wallet_lab)
    assert b.message.lab == wallet_lab.wallet != wallet_lab.key.address
    assert statuses(relay.submit(b)) == [OrderStatus.ACCEPTED]
    assert _holds(relay, b)
    assert statuses(relay.submit(o)) == [OrderStatus.ACCEPTED]

    reader = market.client()
    bh = order_hash(reader.domain, b.message)
    wait_until(lambda: reader.order_state(b.message.lab, bh).filled == 4, 20, "the lease")
    escrow = o.message.price_per_gpu_second * 4 * b.message.duration
    assert wallet_lab.balance() == START_BALANCE - escrow


def test_bid_the_wallet_refuses_is_an_invalid_signature_naming_erc1271(
    market: MarketEnv, relays: Relays, wallet_lab: Lab
) -> None:
    relay = relays.start()
    good = _bid(wallet_lab)
    h = digest(market.client().domain, good.message)
    stranger = SigningKey(market.devnet.accounts[STRANGER].key)
    forged = Signed(good.message, stranger.unsafe_sign_hash(h))

    [result] = relay.submit(forged)

    assert (result.order_hash, result.status) == (h, OrderStatus.INVALID_SIGNATURE)
    assert result.details == {
        "expected": wallet_lab.wallet,
        "recovered": stranger.address,
        "reason": "signed by another account; nor does the signer accept it through ERC-1271",
    }
    assert relay.book().bids == ()
    assert statuses(relay.submit(good)) == [
        OrderStatus.ACCEPTED
    ]  # the forgery's refusal shadows nothing


def test_relay_without_contract_signature_checks_refuses_wallet_bids(
    market: MarketEnv, relays: Relays, wallet_lab: Lab
) -> None:
    relay = relays.start(limits=small_limits(contract_signature_gas=0))
    [result] = relay.submit(_bid(wallet_lab))
    assert result.status is OrderStatus.INVALID_SIGNATURE
    assert result.details["recovered"] == wallet_lab.key.address


def test_wallet_bid_is_gossiped_and_checked_again_by_the_peer(
    market: MarketEnv, relays: Relays, wallet_lab: Lab
) -> None:
    port_a, port_b = free_port(), free_port()
    a = relays.start(relays.config("a", port=port_a, peers=(f"http://127.0.0.1:{port_b}",)))
    b = relays.start(relays.config("b", port=port_b, peers=(f"http://127.0.0.1:{port_a}",)))
    bid = _bid(wallet_lab)
    assert statuses(a.submit(bid)) == [OrderStatus.ACCEPTED]
    wait_until(lambda: _holds(b, bid), 20, "relay b to admit the wallet's bid from a")
    accepted = b.state(lambda r: r.metrics.gossip_orders.value(status="accepted"))
    assert accepted == 1
