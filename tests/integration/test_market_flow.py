"""The whole money path on anvil, checked to the unit: credits in the market, then withdrawals."""

from __future__ import annotations

import dataclasses

import pytest

from market.chain.client import MarketClient
from market.chain.contract_errors import (
    MarketClaimWindowOpen,
    MarketNothingToClaim,
    MarketNothingToWithdraw,
)
from market.chain.deploy import Contracts
from market.errors import DeploymentError
from market.protocol.types import LeaseStatus
from tests.integration.conftest import CLAIM_WINDOW, MIN_STAKE, MarketEnv

pytestmark = pytest.mark.integration


def test_full_round_pays_provider_and_refunds_lab_exactly(env: MarketEnv) -> None:
    provider, lab = env.provider(1), env.lab(2)
    p0, l0 = provider.balance(), lab.balance()
    provider.register(stake=MIN_STAKE, endpoint="http://127.0.0.1:7001")
    assert provider.balance() == p0 - MIN_STAKE

    offer = provider.offer(
        "H100-80GB",
        gpus=8,
        memory_gib=80,
        price_per_gpu_second=7,
        min_duration=60,
        max_duration=7200,
    )
    bid = lab.bid("H100-80GB", gpus=4, max_price_per_gpu_second=9, duration=3600)
    lease = lab.open(offer, bid, gpus=4)
    escrow = 7 * 4 * 3600
    assert lease.escrow == escrow
    assert lease.price_per_gpu_second == 7  # the lease takes the offer's price
    assert lab.balance() == l0 - escrow
    state = lab.client.lease_state(lease.id)
    assert state.status == LeaseStatus.ACTIVE
    assert state.end == lease.start + 3600

    assert provider.claim(lease, lab.pay(lease, 10_000)) == 10_000
    assert provider.claim(lease, lab.pay(lease, 25_000)) == 15_000
    assert provider.claim(lease, lab.pay(lease, 25_000)) == 0  # idempotent: nothing sent
    assert provider.withdrawable() == 25_000  # credited in the market...
    assert provider.balance() == p0 - MIN_STAKE  # ...not sent

    env.devnet.increase_time(3600 + CLAIM_WINDOW + 1)
    env.devnet.mine()
    assert lab.close(lease) == escrow - 25_000
    assert lab.withdrawable() == escrow - 25_000
    assert lab.balance() == l0 - escrow
    assert lab.client.lease_state(lease.id).status == LeaseStatus.CLOSED
    market = env.contracts.market.address
    assert lab.client.balance_of(market) == escrow + MIN_STAKE  # both credits, and the stake

    assert provider.withdraw() == 25_000  # both claims in one transfer
    assert lab.withdraw() == escrow - 25_000
    assert provider.balance() == p0 - MIN_STAKE + 25_000
    assert lab.balance() == l0 - 25_000
    assert (provider.withdrawable(), lab.withdrawable()) == (0, 0)
    assert lab.client.balance_of(market) == MIN_STAKE  # the stake alone
    assert provider.withdraw() == 0  # nothing left: no transaction


def test_withdraw_of_nothing_on_chain_raises_nothing_to_withdraw(env: MarketEnv) -> None:
    lab = env.lab(2)
    # Bypass the client's pre-check to see the contract's own answer.
    with pytest.raises(MarketNothingToWithdraw) as info:
        lab.client._send(env.contracts.market, "withdraw")
    assert info.value.account == lab.address


def test_claim_of_same_voucher_twice_on_chain_raises_nothing_to_claim(env: MarketEnv) -> None:
    provider, lab = env.provider(1), env.lab(2)
    provider.register(stake=MIN_STAKE, endpoint="p")
    offer = provider.offer(
        "A100", gpus=1, memory_gib=40, price_per_gpu_second=1, min_duration=1, max_duration=100
    )
    lease = lab.open(
        offer, lab.bid("A100", gpus=1, max_price_per_gpu_second=1, duration=100), gpus=1
    )
    voucher = lab.pay(lease, 50)
    assert provider.claim(lease, voucher) == 50
    # Bypass the client's pre-check to see the contract's own answer.
    m = voucher.message
    with pytest.raises(MarketNothingToClaim) as info:
        provider.client._send(
            env.contracts.market,
            "claim",
            lease.as_tuple(),
            m.cumulative_amount,
            m.receipt_hash,
            voucher.signature,
        )
    assert info.value.lease_id == lease.id
    assert info.value.cumulative_amount == 50
    assert info.value.paid == 50


def test_lab_cannot_close_inside_claim_window(env: MarketEnv) -> None:
    provider, lab = env.provider(1), env.lab(2)
    provider.register(stake=MIN_STAKE, endpoint="p")
    offer = provider.offer(
        "A100", gpus=1, memory_gib=40, price_per_gpu_second=1, min_duration=1, max_duration=100
    )
    lease = lab.open(
        offer, lab.bid("A100", gpus=1, max_price_per_gpu_second=1, duration=100), gpus=1
    )
    with pytest.raises(MarketClaimWindowOpen) as info:
        lab.close(lease)
    assert info.value.closes_at == lease.start + 100 + CLAIM_WINDOW
    assert provider.close(lease) == 100  # the provider may give the lease up at any time


def test_terminate_pays_work_to_date_and_close_refunds_rest(env: MarketEnv) -> None:
    provider, lab = env.provider(1), env.lab(2)
    provider.register(stake=MIN_STAKE, endpoint="p")
    offer = provider.offer(
        "L4", gpus=2, memory_gib=24, price_per_gpu_second=5, min_duration=1, max_duration=1000
    )
    lease = lab.open(
        offer, lab.bid("L4", gpus=2, max_price_per_gpu_second=5, duration=1000), gpus=2
    )
    p0, l0 = provider.balance(), lab.balance()
    lab.terminate(lease, 1_234)
    assert provider.withdrawable() == 1_234
    state = lab.client.lease_state(lease.id)
    assert state.status == LeaseStatus.TERMINATED
    assert state.paid == 1_234
    env.devnet.increase_time(CLAIM_WINDOW + 1)
    env.devnet.mine()
    assert lab.close(lease) == lease.escrow - 1_234
    assert lab.withdrawable() == lease.escrow - 1_234
    assert lab.withdraw() == lease.escrow - 1_234
    assert provider.withdraw() == 1_234
    assert lab.balance() == l0 + lease.escrow - 1_234
    assert provider.balance() == p0 + 1_234


def test_reads_against_a_stale_deployment_raise_deployment_error(env: MarketEnv) -> None:
    d = env.contracts.deployment
    nobody = env.devnet.accounts[9].address  # an account with no code where the market should be
    stale = dataclasses.replace(d, contracts={**d.contracts, "Market": nobody})
    w3 = env.devnet.web3()
    client = MarketClient(w3, Contracts.at(w3, stale))
    with pytest.raises(DeploymentError, match="deployment file is stale"):
        client.lease_state(bytes(32))
