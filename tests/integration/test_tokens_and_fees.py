"""The market with a protocol fee, an 18-decimals token and a token that returns no bool."""

from __future__ import annotations

import pytest

from market.chain.contract_errors import MarketFeeTooHigh, MarketZeroTreasury
from market.chain.deploy import Contracts, MarketParams, deploy
from market.chain.devnet import Devnet
from tests.integration.conftest import CLAIM_WINDOW, MIN_STAKE, MarketEnv, deploy_variant

pytestmark = pytest.mark.integration
FEE_BPS = 250


@pytest.fixture(scope="module")
def fee_market(devnet: Devnet) -> Contracts:
    return deploy_variant(devnet, fee_bps=FEE_BPS, treasury=devnet.accounts[9].address)


@pytest.fixture(scope="module")
def wad_market(devnet: Devnet) -> Contracts:
    return deploy_variant(devnet, token_decimals=18)


@pytest.fixture(scope="module")
def no_bool_market(devnet: Devnet) -> Contracts:
    return deploy_variant(devnet, no_bool_token=True)


def _round(env: MarketEnv, price: int, claims: list[int]) -> tuple[int, int, int]:
    """Register, open with an approval, claim cumulative amounts, close after the window, then
    let each party withdraw its credit.

    Returns the provider's, the lab's and the treasury's balance changes, having checked that each
    is what the party withdrew and that the credits add up to the escrow."""
    provider, lab = env.provider(1), env.lab(2)
    treasury = env.client(env.devnet.accounts[9])
    stake = MIN_STAKE + price * 4 * 10_000  # the lease locks one escrow of stake
    provider.register(stake=stake, endpoint="p")
    p0, l0, t0 = provider.balance(), lab.balance(), treasury.balance_of(treasury.address)
    offer = provider.offer(
        "B200",
        gpus=4,
        memory_gib=192,
        price_per_gpu_second=price,
        min_duration=1,
        max_duration=10_000,
    )
    bid = lab.bid("B200", gpus=4, max_price_per_gpu_second=price, duration=10_000)
    lab.fund(price * 4 * 10_000)
    lease = lab.open(offer, bid, 4, use_permit=False)
    for amount in claims:
        provider.claim(lease, lab.pay(lease, amount))
    env.devnet.increase_time(10_000 + CLAIM_WINDOW)
    env.devnet.mine()
    assert lab.close(lease) == lease.escrow - claims[-1]
    credits = (provider.withdrawable(), lab.withdrawable(), treasury.withdrawable(treasury.address))
    assert sum(credits) == lease.escrow
    assert credits[1] == lease.escrow - claims[-1]
    assert (provider.withdraw(), lab.withdraw(), treasury.withdraw()) == credits
    assert treasury.balance_of(env.contracts.market.address) == stake  # the stake alone
    changes = (
        provider.balance() - p0,
        lab.balance() - l0,
        treasury.balance_of(treasury.address) - t0,
    )
    assert changes == (credits[0], credits[1] - lease.escrow, credits[2])
    return changes


def test_fee_goes_to_treasury_and_rounds_in_the_providers_disfavour(
    env: MarketEnv, fee_market: Contracts
) -> None:
    fee_env = MarketEnv(env.devnet, fee_market)
    provider_gain, lab_change, treasury_gain = _round(fee_env, 3, [10_000, 10_999])
    # 10_000 -> fee 250; the next 999 -> fee floor(24.975) = 24.
    assert treasury_gain == 250 + 24
    assert provider_gain == 10_999 - 274
    assert lab_change == -10_999


def test_eighteen_decimals_token_settles_to_the_wei(env: MarketEnv, wad_market: Contracts) -> None:
    price = 3 * 10**14  # 0.0003 tokens per GPU-second
    provider_gain, lab_change, _ = _round(MarketEnv(env.devnet, wad_market), price, [10**18 + 1])
    assert provider_gain == 10**18 + 1
    assert lab_change == -(10**18 + 1)


def test_token_returning_no_bool_works_through_safe_erc20(
    env: MarketEnv, no_bool_market: Contracts
) -> None:
    provider_gain, lab_change, _ = _round(MarketEnv(env.devnet, no_bool_market), 2, [5, 80_000])
    assert provider_gain == 80_000
    assert lab_change == -80_000


def test_deployment_refuses_fee_above_cap_and_fee_without_treasury(env: MarketEnv) -> None:
    w3 = env.devnet.web3()
    token = env.contracts.token.address
    with pytest.raises(MarketFeeTooHigh) as info:
        deploy(
            w3,
            env.devnet.accounts[0],
            token=token,
            params=MarketParams(fee_bps=1_001, treasury=token),
        )
    assert (info.value.fee_bps, info.value.max_fee_bps) == (1_001, 1_000)
    with pytest.raises(MarketZeroTreasury):
        deploy(w3, env.devnet.accounts[0], token=token, params=MarketParams(fee_bps=1))
