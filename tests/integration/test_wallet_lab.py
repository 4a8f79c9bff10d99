"""The Lab facade acting for a contract wallet through its owner key: bids and vouchers name the
wallet and pass the Market's ERC-1271 check, escrow comes from the wallet, and what only the wallet
may send is refused before anything is sent."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from market.errors import WalletMustSend
from market.roles import Lab, Provider
from tests.integration.conftest import MIN_STAKE, START_BALANCE, MarketEnv
from tests.integration.wallets import deploy_wallet

pytestmark = pytest.mark.integration

PROVIDER, OWNER = 1, 6
MODEL = "H100-80GB"


def _hex_key(env: MarketEnv, index: int) -> str:
    return "0x" + bytes(env.devnet.accounts[index].key).hex()


@pytest.fixture
def wallet(env: MarketEnv) -> str:
    return deploy_wallet(env, env.devnet.accounts[OWNER].address).address


@pytest.fixture
def lab(env: MarketEnv, wallet: str) -> Lab:
    return Lab.connect(env.contracts.deployment, _hex_key(env, OWNER), wallet=wallet.lower())


def test_wallet_lab_opens_a_lease_paid_from_the_wallet_and_pays_by_voucher(
    env: MarketEnv, wallet: str, lab: Lab
) -> None:
    provider = env.provider(PROVIDER)
    provider.register(stake=MIN_STAKE, endpoint="p1")
    owner = env.devnet.accounts[OWNER].address
    assert (lab.address, lab.wallet, lab.key.address) == (wallet, wallet, owner)

    offer = provider.offer(
        MODEL, gpus=4, memory_gib=80, price_per_gpu_second=3, min_duration=60, max_duration=3600
    )
    bid = lab.bid(MODEL, gpus=2, max_price_per_gpu_second=5, duration=600)
    assert bid.message.lab == wallet
    lease = lab.open(offer, bid, gpus=2)  # sent by the owner's account; no permit

    escrow = 3 * 2 * 600
    assert (lease.lab, lease.gpus) == (wallet, 2)
    assert lab.balance() == START_BALANCE - escrow
    assert env.client().balance_of(owner) == START_BALANCE
    voucher = lab.pay(lease, cumulative_amount=1_000)
    assert provider.claim(lease, voucher) == 1_000  # the Market asked the wallet (ERC-1271)


@pytest.mark.parametrize(
    ("action", "call"),
    [
        ("approve", lambda lab, _: lab.fund(100)),
        ("cancelOrder", lambda lab, bid: lab.cancel(bid)),
        ("cancelOrdersUpTo", lambda lab, _: lab.cancel_all()),
        ("withdraw", lambda lab, _: lab.withdraw()),
    ],
)
def test_what_only_the_wallet_may_send_is_refused_before_sending(
    env: MarketEnv, wallet: str, lab: Lab, action: str, call: Callable[[Lab, object], object]
) -> None:
    owner = env.devnet.accounts[OWNER].address
    w3 = env.devnet.web3()
    nonce = w3.eth.get_transaction_count(owner)
    bid = lab.bid(MODEL, gpus=2, max_price_per_gpu_second=5, duration=600)
    with pytest.raises(WalletMustSend) as info:
        call(lab, bid)
    assert (info.value.wallet, info.value.action) == (wallet, action)
    assert w3.eth.get_transaction_count(owner) == nonce


def test_wallet_provider_must_register_itself(env: MarketEnv, wallet: str) -> None:
    provider = Provider.connect(env.contracts.deployment, _hex_key(env, OWNER), wallet=wallet)
    with pytest.raises(WalletMustSend) as info:
        provider.register(stake=MIN_STAKE, endpoint="p")
    assert info.value.action == "register"
    offer = provider.offer(
        MODEL, gpus=1, memory_gib=80, price_per_gpu_second=1, min_duration=1, max_duration=2
    )
    assert offer.message.provider == wallet
