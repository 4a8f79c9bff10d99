"""Vouchers and claims on anvil: caps, batches, replay, tampering, fees and token variants."""

from __future__ import annotations

import dataclasses

import pytest
from eth_account import Account

from market.chain.contract_errors import (
    MarketInvalidSignature,
    MarketLeaseEnded,
    MarketLeaseNotOpen,
    MarketNotLab,
    MarketUnknownLease,
)
from market.chain.deploy import Contracts
from market.errors import InvalidField
from market.protocol.eip712 import Domain
from market.protocol.signing import SigningKey
from market.protocol.types import Lease, LeaseStatus, Signed, Voucher
from market.roles import Lab, Provider
from tests.integration.conftest import CLAIM_WINDOW, MIN_STAKE, MarketEnv, deploy_variant

pytestmark = pytest.mark.integration


def _lease(
    provider: Provider, lab: Lab, *, gpus: int = 2, price: int = 3, duration: int = 1000
) -> Lease:
    offer = provider.offer(
        "H100",
        gpus=gpus,
        memory_gib=80,
        price_per_gpu_second=price,
        min_duration=1,
        max_duration=duration,
    )
    bid = lab.bid("H100", gpus=gpus, max_price_per_gpu_second=price, duration=duration)
    return lab.open(offer, bid, gpus)


@pytest.fixture
def pair(env: MarketEnv) -> tuple[Provider, Lab]:
    provider, lab = env.provider(1), env.lab(2)
    provider.register(stake=MIN_STAKE, endpoint="p")
    return provider, lab


def test_voucher_above_escrow_pays_only_the_escrow(
    env: MarketEnv, pair: tuple[Provider, Lab]
) -> None:
    provider, lab = pair
    lease = _lease(provider, lab)
    p0 = provider.balance()
    assert provider.claim(lease, lab.pay(lease, lease.escrow * 5)) == lease.escrow
    assert provider.withdrawable() == lease.escrow
    assert provider.client.lease_state(lease.id).paid == lease.escrow
    assert provider.withdraw() == lease.escrow
    assert provider.balance() == p0 + lease.escrow


def test_third_party_claim_credits_the_provider(env: MarketEnv, pair: tuple[Provider, Lab]) -> None:
    provider, lab = pair
    lease = _lease(provider, lab)
    stranger = env.client(env.devnet.accounts[9])
    assert stranger.claim(lease, lab.pay(lease, 77)) == 77
    assert provider.withdrawable() == 77
    assert stranger.withdrawable(stranger.address) == 0
    assert stranger.withdraw() == 0  # nothing credited to the stranger: no transaction


def test_claim_returns_what_its_own_transaction_paid_when_another_claim_came_first(
    env: MarketEnv, pair: tuple[Provider, Lab], monkeypatch: pytest.MonkeyPatch
) -> None:
    provider, lab = pair
    lease = _lease(provider, lab)
    before_any = provider.client.lease_state(lease.id)
    # A stranger claims 100 after the provider's client read the lease (the stale read below).
    env.client(env.devnet.accounts[9]).claim(lease, lab.pay(lease, 100))
    monkeypatch.setattr(provider.client, "lease_state", lambda _id: before_any)
    assert provider.claim(lease, lab.pay(lease, 300)) == 200
    assert provider.withdrawable() == 100 + 200


@pytest.mark.parametrize("field", ["cumulative_amount", "receipt_hash"])
def test_tampered_voucher_is_refused(
    env: MarketEnv, pair: tuple[Provider, Lab], field: str
) -> None:
    provider, lab = pair
    lease = _lease(provider, lab)
    voucher = lab.pay(lease, 100)
    new = {"cumulative_amount": 101, "receipt_hash": b"\x01" * 32}[field]
    tampered = Signed(dataclasses.replace(voucher.message, **{field: new}), voucher.signature)
    with pytest.raises(MarketInvalidSignature) as info:
        provider.claim(lease, tampered)
    assert info.value.signer == lab.address


def test_voucher_signed_by_someone_else_is_refused(
    env: MarketEnv, pair: tuple[Provider, Lab]
) -> None:
    provider, lab = pair
    lease = _lease(provider, lab)
    forger = SigningKey(Account.create().key)
    with pytest.raises(MarketInvalidSignature):
        provider.claim(lease, forger.sign(lab.client.domain, Voucher(lease.id, 100)))


def test_voucher_for_one_lease_cannot_pay_another(
    env: MarketEnv, pair: tuple[Provider, Lab]
) -> None:
    provider, lab = pair
    a, b = _lease(provider, lab), _lease(provider, lab)
    voucher = lab.pay(a, 100)
    with pytest.raises(InvalidField, match="lease_id"):
        provider.claim(b, voucher)
    # On-chain, the signature is checked over b's id, so a's voucher cannot pay b either.
    m = voucher.message
    args = (b.as_tuple(), m.cumulative_amount, m.receipt_hash, voucher.signature)
    with pytest.raises(MarketInvalidSignature):
        provider.client._send(env.contracts.market, "claim", *args)


def test_claim_on_unknown_lease_names_its_id(env: MarketEnv, pair: tuple[Provider, Lab]) -> None:
    provider, lab = pair
    lease = dataclasses.replace(_lease(provider, lab), gpus=99)
    with pytest.raises(MarketUnknownLease) as info:
        provider.claim(lease, lab.pay(lease, 1))
    assert info.value.lease_id == lease.id


def test_batch_skips_bad_items_and_credits_the_rest(
    env: MarketEnv, pair: tuple[Provider, Lab]
) -> None:
    provider, lab = pair
    leases = [_lease(provider, lab) for _ in range(4)]
    forged = SigningKey(Account.create().key).sign(lab.client.domain, Voucher(leases[1].id, 5))
    unknown = dataclasses.replace(leases[3], gpus=77)
    items = [
        (leases[0], lab.pay(leases[0], 10)),
        (leases[1], forged),
        (leases[2], lab.pay(leases[2], 30)),
        (unknown, lab.pay(unknown, 40)),
    ]
    p0 = provider.balance()
    result = provider.claim_all(items)
    assert result.paid == {leases[0].id: 10, leases[2].id: 30}
    assert result.skipped == {
        leases[1].id: "MarketInvalidSignature",
        unknown.id: "MarketUnknownLease",
    }
    assert provider.withdrawable() == 40
    assert provider.withdraw() == 40
    assert provider.balance() == p0 + 40
    again = provider.claim_all(items[:1])
    assert again.skipped == {leases[0].id: "MarketNothingToClaim"}


def test_only_the_lab_may_terminate_and_not_after_the_end(
    env: MarketEnv, pair: tuple[Provider, Lab]
) -> None:
    provider, lab = pair
    lease = _lease(provider, lab, duration=100)
    with pytest.raises(MarketNotLab) as info:
        provider.client.terminate(lease, 0)
    assert info.value.caller == provider.address
    env.devnet.increase_time(200)
    env.devnet.mine()
    with pytest.raises(MarketLeaseEnded) as ended:
        lab.terminate(lease, 0)
    assert ended.value.end == lease.start + 100


def test_claims_stay_possible_after_termination_until_close(
    env: MarketEnv, pair: tuple[Provider, Lab]
) -> None:
    provider, lab = pair
    lease = _lease(provider, lab)
    voucher = lab.pay(lease, 500)
    lab.terminate(lease, 100)
    assert provider.claim(lease, voucher) == 400
    assert provider.withdrawable() == 500
    env.devnet.increase_time(CLAIM_WINDOW + 1)
    env.devnet.mine()
    assert lab.close(lease) == lease.escrow - 500
    assert lab.withdrawable() == lease.escrow - 500
    with pytest.raises(MarketLeaseNotOpen) as info:
        provider.claim(lease, lab.pay(lease, 600))
    assert info.value.status == LeaseStatus.CLOSED


def test_orders_signed_for_another_chain_id_are_refused(
    env: MarketEnv, pair: tuple[Provider, Lab]
) -> None:
    provider, lab = pair
    other = Domain(1, env.contracts.market.address)
    offer = provider.offer(
        "H100", gpus=1, memory_gib=80, price_per_gpu_second=1, min_duration=1, max_duration=10
    )
    bid = lab.bid("H100", gpus=1, max_price_per_gpu_second=1, duration=10)
    replayed = provider.key.sign(other, offer.message)
    with pytest.raises(MarketInvalidSignature):
        lab.open(replayed, bid, 1)


@pytest.fixture(scope="module")
def second_market(devnet: object) -> Contracts:
    from market.chain.devnet import Devnet

    assert isinstance(devnet, Devnet)
    return deploy_variant(devnet)


def test_orders_and_vouchers_do_not_replay_on_a_second_deployment(
    env: MarketEnv, pair: tuple[Provider, Lab], second_market: Contracts
) -> None:
    provider, lab = pair
    lease = _lease(provider, lab)
    voucher = lab.pay(lease, 100)
    offer = provider.offer(
        "H100", gpus=1, memory_gib=80, price_per_gpu_second=1, min_duration=1, max_duration=10
    )
    bid = lab.bid("H100", gpus=1, max_price_per_gpu_second=1, duration=10)
    other = MarketEnv(env.devnet, second_market)
    p2, l2 = other.provider(1), other.lab(2)
    p2.register(stake=MIN_STAKE, endpoint="p")
    with pytest.raises(MarketInvalidSignature):
        l2.open(offer, bid, 1)
    with pytest.raises(MarketUnknownLease):
        p2.claim(lease, voucher)


def test_lease_states_read_in_one_batch_equal_each_read_alone(
    env: MarketEnv, pair: tuple[Provider, Lab]
) -> None:
    provider, lab = pair
    paid, closed, untouched = (_lease(provider, lab) for _ in range(3))
    provider.claim(paid, lab.pay(paid, 7))
    provider.client.close_lease(closed)
    unknown = b"\x77" * 32
    ids = [paid.id, closed.id, untouched.id, unknown, paid.id]
    states = provider.client.lease_states(ids)
    assert list(states) == [paid.id, closed.id, untouched.id, unknown]
    assert states == {i: provider.client.lease_state(i) for i in ids}
    assert [states[i].status for i in ids[:4]] == [
        LeaseStatus.ACTIVE,
        LeaseStatus.CLOSED,
        LeaseStatus.ACTIVE,
        LeaseStatus.NONE,
    ]
    assert states[paid.id].paid == 7
