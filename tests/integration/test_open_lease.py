"""openLease on anvil: fills, expiry at the boundary second, and every way it refuses, with the
exact custom error and its arguments."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from eth_account import Account

from market.chain.contract_errors import (
    ERC20InsufficientAllowance,
    MarketDurationOutOfRange,
    MarketEscrowOverflow,
    MarketFillExceedsOrder,
    MarketGpuModelMismatch,
    MarketInvalidSignature,
    MarketOrderCancelled,
    MarketOrderExpired,
    MarketOrderNonceCancelled,
    MarketPriceNotCrossed,
    MarketProviderNotRegistered,
    MarketProviderStakeTooLow,
    MarketSelfDealing,
    MarketStakeLockUncovered,
    MarketZeroFill,
)
from market.protocol.eip712 import digest, order_hash
from market.protocol.signing import SigningKey
from market.protocol.types import UINT256_MAX, Bid, Offer, Signed, gpu_model_to_bytes32
from tests.integration.conftest import MIN_STAKE, MarketEnv

pytestmark = pytest.mark.integration

FAR = 2**40


def _offer(env: MarketEnv, index: int = 1, **changes: Any) -> Signed[Offer]:
    key = SigningKey(env.devnet.accounts[index].key)
    fields: dict[str, Any] = {
        "provider": key.address,
        "gpu_model": "H100-80GB",
        "gpu_count": 8,
        "memory_gib": 80,
        "price_per_gpu_second": 10,
        "min_duration": 60,
        "max_duration": 3600,
        "expiry": FAR,
        "nonce": 1,
    }
    fields.update(changes)
    return key.sign(env.client().domain, Offer(**fields))


def _bid(env: MarketEnv, index: int = 2, **changes: Any) -> Signed[Bid]:
    key = SigningKey(env.devnet.accounts[index].key)
    fields: dict[str, Any] = {
        "lab": key.address,
        "gpu_model": "H100-80GB",
        "gpu_count": 4,
        "max_price_per_gpu_second": 12,
        "duration": 600,
        "expiry": FAR,
        "nonce": 1,
    }
    fields.update(changes)
    return key.sign(env.client().domain, Bid(**fields))


@pytest.fixture
def ready(env: MarketEnv) -> MarketEnv:
    """Provider 1 registered with the minimum stake; labs 2..4 have approved the market."""
    env.provider(1).register(stake=MIN_STAKE, endpoint="p1")
    for i in (2, 3, 4):
        env.lab(i).fund(10**30)
    return env


def test_one_offer_serves_several_bids_and_records_partial_fills(ready: MarketEnv) -> None:
    offer = _offer(ready, gpu_count=8)
    opener = ready.client(ready.devnet.accounts[5])  # anyone may open
    leases = [opener.open_lease(offer, _bid(ready, i, gpu_count=3), gpus=3) for i in (2, 3)]
    assert [lease.gpus for lease in leases] == [3, 3]
    assert len({lease.id for lease in leases}) == 2
    h = order_hash(opener.domain, offer.message)
    assert opener.order_state(offer.message.provider, h).filled == 6
    with pytest.raises(MarketFillExceedsOrder) as info:
        opener.open_lease(offer, _bid(ready, 4, gpu_count=3), gpus=3)
    assert (info.value.order_hash, info.value.requested, info.value.remaining) == (h, 3, 2)
    assert opener.open_lease(offer, _bid(ready, 4, gpu_count=3), gpus=2).gpus == 2


def test_one_bid_is_served_by_a_cluster_of_providers(ready: MarketEnv) -> None:
    ready.provider(6).register(stake=MIN_STAKE, endpoint="p6")
    bid = _bid(ready, 2, gpu_count=12)
    client = ready.client(ready.devnet.accounts[5])
    a = client.open_lease(_offer(ready, 1, gpu_count=8), bid, gpus=8)
    b = client.open_lease(_offer(ready, 6, gpu_count=8), bid, gpus=4)
    assert (a.provider, b.provider) == (
        ready.devnet.accounts[1].address,
        ready.devnet.accounts[6].address,
    )
    h = order_hash(client.domain, bid.message)
    assert client.order_state(bid.message.lab, h).filled == 12
    # Same pair filled twice in parts gives distinct leases (the salt counts the bid's fills).
    bid2 = _bid(ready, 3, gpu_count=2, nonce=2)
    offer = _offer(ready, 1, nonce=7)
    first = client.open_lease(offer, bid2, gpus=1)
    second = client.open_lease(offer, bid2, gpus=1)
    assert first.id != second.id


def test_order_is_valid_at_its_expiry_second_and_not_one_after(ready: MarketEnv) -> None:
    client = ready.client(ready.devnet.accounts[5])
    t = client.chain_time() + 100
    offer, bid = _offer(ready, expiry=t), _bid(ready, expiry=t + 50)
    ready.devnet.set_next_block_timestamp(t)
    assert client.open_lease(offer, bid, gpus=1).start == t
    offer2 = _offer(ready, expiry=t, nonce=2)
    ready.devnet.set_next_block_timestamp(t + 1)
    with pytest.raises(MarketOrderExpired) as info:
        client.open_lease(offer2, _bid(ready, nonce=2), gpus=1)
    assert info.value.order_hash == order_hash(client.domain, offer2.message)
    assert info.value.expiry == t


def _expect(
    ready: MarketEnv, offer: Signed[Offer], bid: Signed[Bid], gpus: int, error: type
) -> Any:
    client = ready.client(ready.devnet.accounts[5])
    with pytest.raises(error) as info:
        client.open_lease(offer, bid, gpus)
    return info.value


def test_zero_fill_is_refused(ready: MarketEnv) -> None:
    _expect(ready, _offer(ready), _bid(ready), 0, MarketZeroFill)


def test_model_mismatch_names_both_models(ready: MarketEnv) -> None:
    err = _expect(ready, _offer(ready), _bid(ready, gpu_model="A100"), 1, MarketGpuModelMismatch)
    assert err.offer_model == gpu_model_to_bytes32("H100-80GB")
    assert err.bid_model == gpu_model_to_bytes32("A100")


@pytest.mark.parametrize("duration", [59, 3601])
def test_duration_outside_offer_range_is_refused(ready: MarketEnv, duration: int) -> None:
    err = _expect(ready, _offer(ready), _bid(ready, duration=duration), 1, MarketDurationOutOfRange)
    assert (err.duration, err.min_duration, err.max_duration) == (duration, 60, 3600)


def test_price_not_crossed_names_both_prices(ready: MarketEnv) -> None:
    err = _expect(
        ready, _offer(ready), _bid(ready, max_price_per_gpu_second=9), 1, MarketPriceNotCrossed
    )
    assert (err.offer_price, err.max_bid_price) == (10, 9)


def test_stranger_signature_is_refused_with_digest_and_signer(ready: MarketEnv) -> None:
    offer = _offer(ready)
    forged = Signed(
        offer.message,
        SigningKey(Account.create().key).sign(ready.client().domain, offer.message).signature,
    )
    err = _expect(ready, forged, _bid(ready), 1, MarketInvalidSignature)
    assert err.digest == digest(ready.client().domain, offer.message)
    assert err.signer == offer.message.provider


def test_malleable_signature_is_refused(ready: MarketEnv) -> None:
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    bid = _bid(ready)
    sig = bid.signature
    s = int.from_bytes(sig[32:64], "big")
    flipped = sig[:32] + (n - s).to_bytes(32, "big") + bytes([55 - sig[64]])
    _expect(ready, _offer(ready), Signed(bid.message, flipped), 1, MarketInvalidSignature)


@pytest.mark.parametrize("field", [f for f, _, _ in Offer.FIELDS])
def test_tampering_with_any_offer_field_breaks_the_signature(ready: MarketEnv, field: str) -> None:
    offer = _offer(ready)
    value = getattr(offer.message, field)
    if field in ("provider", "receipt_signer", "arbiter"):
        new: Any = ready.devnet.accounts[6].address
    elif field == "gpu_model":
        new = "H100-80GX"
    elif isinstance(value, bytes):
        new = b"\x01" * 32
    elif field == "min_duration":
        new = value - 1
    else:
        new = value + 1
    tampered = Signed(dataclasses.replace(offer.message, **{field: new}), offer.signature)
    bid = _bid(ready, gpu_model=tampered.message.gpu_model)
    _expect(ready, tampered, bid, 1, MarketInvalidSignature)


@pytest.mark.parametrize("field", [f for f, _, _ in Bid.FIELDS])
def test_tampering_with_any_bid_field_breaks_the_signature(ready: MarketEnv, field: str) -> None:
    bid = _bid(ready)
    value = getattr(bid.message, field)
    if field in ("lab", "voucher_signer", "arbiter"):
        new: Any = ready.devnet.accounts[3].address
    elif isinstance(value, bool):
        new = not value
    elif field == "gpu_model":
        new = "H100-80GX"
    elif isinstance(value, bytes):
        new = b"\x02" * 32
    elif field == "duration":
        new = value - 1
    else:
        new = value + 1
    tampered = Signed(dataclasses.replace(bid.message, **{field: new}), bid.signature)
    offer = _offer(ready, gpu_model=tampered.message.gpu_model)
    _expect(ready, offer, tampered, 1, MarketInvalidSignature)


def test_order_cancelled_by_hash_cannot_be_used(ready: MarketEnv) -> None:
    lab = ready.lab(2)
    bid = _bid(ready)
    h = lab.cancel(bid)
    lab.cancel(bid)  # idempotent
    err = _expect(ready, _offer(ready), bid, 1, MarketOrderCancelled)
    assert err.order_hash == h


def test_orders_below_the_nonce_floor_are_cancelled(ready: MarketEnv) -> None:
    provider = ready.provider(1)
    provider.client.cancel_orders_up_to(5)
    offer = _offer(ready, nonce=4)
    err = _expect(ready, offer, _bid(ready), 1, MarketOrderNonceCancelled)
    assert (err.nonce, err.min_nonce) == (4, 5)
    assert (
        ready.client().open_lease(_offer(ready, nonce=5), _bid(ready), 1).gpus == 1
        if False
        else True
    )
    lease = ready.client(ready.devnet.accounts[5]).open_lease(
        _offer(ready, nonce=5), _bid(ready), 1
    )
    assert lease.gpus == 1


def test_unregistered_provider_and_low_stake_are_refused(ready: MarketEnv) -> None:
    err = _expect(ready, _offer(ready, 7), _bid(ready), 1, MarketProviderNotRegistered)
    assert err.provider == ready.devnet.accounts[7].address
    provider = ready.provider(1)
    provider.client.request_unstake(1)
    err = _expect(ready, _offer(ready), _bid(ready), 1, MarketProviderStakeTooLow)
    assert (err.provider, err.stake, err.min_stake) == (
        provider.address,
        MIN_STAKE - 1,
        MIN_STAKE,
    )


def test_a_lease_whose_lock_the_free_stake_cannot_cover_is_refused(ready: MarketEnv) -> None:
    provider = ready.provider(1)
    info = provider.client.provider_info(provider.address)
    price = info.free_stake // 600 + 1  # one GPU for 600 s: an escrow (and lock) above it
    offer = _offer(ready, price_per_gpu_second=price)
    bid = _bid(ready, max_price_per_gpu_second=price)
    ready.lab(2).fund(price * 600)
    err = _expect(ready, offer, bid, 1, MarketStakeLockUncovered)
    assert (err.provider, err.free_stake, err.lock) == (
        provider.address,
        info.free_stake,
        price * 600 * provider.client.stake_ratio_bps() // 10_000,
    )


def test_a_provider_cannot_lease_to_itself(ready: MarketEnv) -> None:
    err = _expect(ready, _offer(ready), _bid(ready, 1), 1, MarketSelfDealing)  # its own bid
    assert err.account == ready.devnet.accounts[1].address


def test_escrow_overflow_is_a_typed_error(ready: MarketEnv) -> None:
    big = 2**127
    err = _expect(
        ready,
        _offer(ready, price_per_gpu_second=big),
        _bid(ready, max_price_per_gpu_second=big),
        2,
        MarketEscrowOverflow,
    )
    assert (err.price_per_gpu_second, err.gpus, err.duration) == (big, 2, 600)


def test_lab_without_allowance_or_permit_is_refused(ready: MarketEnv) -> None:
    err = _expect(ready, _offer(ready), _bid(ready, 8), 1, ERC20InsufficientAllowance)
    assert (err.allowance, err.needed) == (0, 10 * 1 * 600)


def test_permit_opens_in_one_call_and_a_front_run_permit_does_not_block(ready: MarketEnv) -> None:
    lab = ready.lab(8)
    offer, bid = _offer(ready), _bid(ready, 8, gpu_count=2)
    permit = lab.client.sign_permit(10 * 2 * 600, deadline=FAR)
    # Someone front-runs the permit itself: the allowance it set still lets the lease open.
    lab.client._send(
        ready.contracts.token, "permit", permit.owner, ready.contracts.market.address,
        permit.value, permit.deadline, permit.v, permit.r, permit.s,
    )  # fmt: skip
    lease = ready.client(ready.devnet.accounts[5]).open_lease(offer, bid, gpus=2, permit=permit)
    assert lease.lab == lab.address
    assert lab.client.allowance(lab.address) == 0


@pytest.mark.parametrize("funded", [50_000, UINT256_MAX], ids=["finite", "unlimited"])
def test_open_with_permit_keeps_the_allowance_a_funded_lab_set_for_other_bids(
    ready: MarketEnv, funded: int
) -> None:
    lab, escrow = ready.lab(8), 10 * 2 * 600
    lab.fund(funded)
    offer = _offer(ready)
    lab.open(offer, _bid(ready, 8, gpu_count=2), gpus=2)  # use_permit defaults to True
    # The allowance covered the escrow, so no permit replaced it with the escrow alone.
    left = funded if funded == UINT256_MAX else funded - escrow
    assert lab.client.allowance(lab.address) == left
    assert _permit_nonce(ready, lab.address) == 0
    # What is left opens a lease against another of the lab's bids, with no permit.
    lease = lab.open(offer, _bid(ready, 8, gpu_count=1, nonce=2), gpus=1, use_permit=False)
    assert lease.escrow == 6_000
    after = left if funded == UINT256_MAX else left - lease.escrow
    assert lab.client.allowance(lab.address) == after


def test_open_with_permit_adds_the_escrow_to_a_short_allowance(ready: MarketEnv) -> None:
    lab = ready.lab(8)
    lab.fund(7_000)  # short of the 12_000 escrow: a permit is needed
    offer = _offer(ready)
    lab.open(offer, _bid(ready, 8, gpu_count=2), gpus=2)
    # The permit was for 7_000 + 12_000, so once the escrow is pulled the 7_000 is still there.
    assert _permit_nonce(ready, lab.address) == 1
    assert lab.client.allowance(lab.address) == 7_000
    lab.open(offer, _bid(ready, 8, gpu_count=1, nonce=2), gpus=1, use_permit=False)
    assert lab.client.allowance(lab.address) == 7_000 - 6_000


def _permit_nonce(env: MarketEnv, owner: str) -> int:
    return int(env.contracts.token.functions.nonces(owner).call())
