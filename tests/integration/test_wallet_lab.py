"""The Lab and Provider facades acting for a contract wallet through its owner key: orders name
the wallet and pass the Market's ERC-1271 check, vouchers are signed by the owner key the bid
names, escrow comes from the wallet, and what the market decides by sender goes through the
wallet's execute."""

from __future__ import annotations

import pytest

from market.chain.contract_errors import MarketNothingToWithdraw
from market.protocol.eip712 import order_hash
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


def test_wallet_lab_terminates_closes_and_withdraws_through_the_wallet(
    env: MarketEnv, wallet: str, lab: Lab
) -> None:
    """What the market decides by sender goes through the wallet's execute: the owner key signs
    the transactions, the market sees the wallet, and the wallet is refunded and paid out."""
    provider = env.provider(PROVIDER)
    provider.register(stake=MIN_STAKE, endpoint="p1")
    owner = env.devnet.accounts[OWNER].address
    spender = env.devnet.accounts[9].address
    lab.client.approve(10**12, spender)  # approve, sent as the wallet
    assert env.client().allowance(wallet, spender) == 10**12
    offer = provider.offer(
        MODEL, gpus=4, memory_gib=80, price_per_gpu_second=3, min_duration=60, max_duration=3600
    )
    lease = lab.open(offer, lab.bid(MODEL, gpus=2, max_price_per_gpu_second=5, duration=600), 2)
    escrow = 3 * 2 * 600
    lab.terminate(lease, cumulative_amount=1_000)  # msg.sender == lease.lab: the wallet
    assert provider.close(lease) == escrow - 1_000
    assert lab.withdrawable() == escrow - 1_000
    w3 = env.devnet.web3()
    nonce = w3.eth.get_transaction_count(owner)
    assert lab.withdraw() == escrow - 1_000
    assert w3.eth.get_transaction_count(owner) == nonce + 1  # the owner's one transaction
    assert lab.balance() == START_BALANCE - 1_000
    assert env.client().balance_of(owner) == START_BALANCE  # the owner's tokens untouched


def test_a_refused_call_through_the_wallet_raises_its_typed_error(
    env: MarketEnv, wallet: str, lab: Lab
) -> None:
    """The wallet passes a revert on, so the market's custom error reaches the caller typed."""
    bid = lab.bid(MODEL, gpus=2, max_price_per_gpu_second=5, duration=600)
    with pytest.raises(MarketNothingToWithdraw) as info:
        lab.client.transactor.send(
            env.contracts.market.address, lab.client.calldata("withdraw"), what="withdraw"
        )
    assert info.value.account == wallet
    lab.cancel(bid)  # cancelOrder as the wallet: the bid can no longer open
    assert env.client().order_state(wallet, order_hash(lab.client.domain, bid.message)).cancelled


def test_wallet_provider_registers_and_offers_as_the_wallet(env: MarketEnv, wallet: str) -> None:
    provider = Provider.connect(env.contracts.deployment, _hex_key(env, OWNER), wallet=wallet)
    info = provider.register(stake=MIN_STAKE, endpoint="p")
    assert (info.address, info.registered, info.stake) == (wallet, True, MIN_STAKE)
    offer = provider.offer(
        MODEL, gpus=1, memory_gib=80, price_per_gpu_second=1, min_duration=1, max_duration=2
    )
    assert offer.message.provider == wallet
    assert offer.message.receipt_signer == env.devnet.accounts[OWNER].address
