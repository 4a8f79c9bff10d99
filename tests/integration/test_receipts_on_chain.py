"""Receipts on anvil: adversarial providers, each caught, and an honest one that never is.

Equivocation and impossible usage are slashed to the lab (exact balances after withdrawal), a
receipt or voucher replayed on another lease is refused, an optimistic claim from a posted receipt
is paid only after its challenge window and not at all once disputed. The contract's receipt
digest is the Python one for any generated receipt.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings

from market.chain.client import receipt_body, receipt_tuple
from market.chain.contract_errors import (
    MarketChallengeWindowOpen,
    MarketClaimDisputed,
    MarketInvalidSignature,
    MarketLeaseAlreadySlashed,
    MarketReceiptPeriodInvalid,
    MarketReceiptWrongLease,
    MarketUsageImpossible,
    MarketUsagePossible,
)
from market.errors import InvalidField, ReceiptUsageImpossible, ReceiptWrongLease
from market.protocol.eip712 import receipt_hash
from market.protocol.types import Lease, LeaseStatus, Receipt, Signed
from market.receipts import ReceiptChain, ReceiptVerifier, detect_equivocation, voucher_amount
from market.roles import Lab, Provider
from tests.integration.conftest import (
    CHALLENGE_WINDOW,
    CLAIM_WINDOW,
    MIN_STAKE,
    UNBONDING_DELAY,
    MarketEnv,
)
from tests.unit.test_receipts_message import receipts

pytestmark = pytest.mark.integration

PRICE = 3
GPUS = 2
DURATION = 2000
PENALTY = PRICE * GPUS * DURATION  # the lease's stake lock: one escrow, the default ratio


@pytest.fixture
def pair(env: MarketEnv) -> tuple[Provider, Lab]:
    provider, lab = env.provider(1), env.lab(2)
    provider.register(stake=MIN_STAKE, endpoint="p")
    return provider, lab


def _lease(provider: Provider, lab: Lab) -> Lease:
    offer = provider.offer(
        "H100",
        gpus=GPUS,
        memory_gib=80,
        price_per_gpu_second=PRICE,
        min_duration=1,
        max_duration=DURATION,
    )
    bid = lab.bid("H100", gpus=GPUS, max_price_per_gpu_second=PRICE, duration=DURATION)
    return lab.open(offer, bid, GPUS)


def _advance(env: MarketEnv, seconds: int) -> int:
    """Move chain time on by ``seconds`` and mine; returns the new chain time."""
    env.devnet.increase_time(seconds)
    env.devnet.mine()
    return env.devnet.timestamp()


def _chain(provider: Provider, lease: Lease, head: Signed[Receipt] | None = None) -> ReceiptChain:
    return ReceiptChain(provider.key, provider.client.domain, lease, head=head)


def _full_use(env: MarketEnv, chain: ReceiptChain, seconds: int) -> Signed[Receipt]:
    """The next receipt after ``seconds`` more of chain time, every GPU busy since the start."""
    now = _advance(env, seconds)
    return chain.append(now, chain.lease.gpus * (now - chain.lease.start))


def _stake(provider: Provider) -> int:
    return provider.client.provider_info(provider.address).stake


def test_contract_receipt_digest_equals_python_for_generated_receipts(env: MarketEnv) -> None:
    reader = env.client()
    hash_receipt = reader.market.functions.hashReceipt

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(receipts())
    def check(receipt: Receipt) -> None:
        on_chain = bytes(hash_receipt(receipt_tuple(receipt)).call())
        assert on_chain == receipt_hash(reader.domain, receipt)

    check()


def test_equivocation_from_a_forked_chain_is_slashed_to_the_lab(
    env: MarketEnv, pair: tuple[Provider, Lab]
) -> None:
    provider, lab = pair
    lease = _lease(provider, lab)
    domain = lab.client.domain
    chain = _chain(provider, lease)
    verifier = ReceiptVerifier(domain, lease)
    first = _full_use(env, chain, 100)
    verifier.accept(first)
    paid = voucher_amount(lease, first.message)
    assert provider.claim(lease, lab.pay(lease, paid, receipt_hash(domain, first.message))) == paid
    # The provider tells the lab one story for seq 1 and someone else another: a fork of its chain.
    fork = _chain(provider, lease, head=first)
    told_lab = _full_use(env, chain, 100)
    told_others = fork.append(
        told_lab.message.period_end, told_lab.message.gpu_seconds_cumulative - 7
    )
    assert told_lab.message.seq == told_others.message.seq == 1
    assert detect_equivocation(domain, told_lab, told_others, provider=provider.address)

    lab_before, market = lab.balance(), env.contracts.market.address
    market_before = lab.client.balance_of(market)
    stranger = env.client(env.devnet.accounts[9])  # anyone may prove it; the lab benefits
    assert stranger.slash_equivocation(lease, told_lab, told_others) == PENALTY

    refund = lease.escrow - paid
    assert lab.client.is_slashed(lease.id)
    assert lab.client.lease_state(lease.id).slashed
    assert lab.client.lease_state(lease.id).status == LeaseStatus.CLOSED
    info = provider.client.provider_info(provider.address)
    assert (info.stake, info.locked) == (MIN_STAKE - PENALTY, 0)  # the lease's lock, no more
    # The refund is the lab's at once; the penalty vests for the unbonding delay, so that a
    # provider slashing itself through a second address gets its stake no sooner than unbonding.
    amount, vests_at = lab.client.slashed_credit(lab.address)
    assert amount == PENALTY
    assert vests_at >= env.devnet.timestamp() + UNBONDING_DELAY - 1
    assert lab.withdrawable() == refund
    assert stranger.withdrawable(stranger.address) == 0
    assert lab.withdraw() == refund
    _advance(env, UNBONDING_DELAY)
    assert lab.withdrawable() == PENALTY
    assert lab.withdraw() == PENALTY
    assert lab.client.slashed_credit(lab.address) == (0, 0)
    assert lab.balance() == lab_before + refund + PENALTY
    assert lab.client.balance_of(market) == market_before - refund - PENALTY
    assert provider.withdraw() == paid  # what the lab accepted stays paid
    # Once is enough: the client sends nothing, the contract refuses a second proof.
    assert lab.prove_equivocation(lease, told_lab, told_others) == 0
    a = (receipt_body(told_lab.message), told_lab.signature)
    b = (receipt_body(told_others.message), told_others.signature)
    seq = told_lab.message.seq
    with pytest.raises(MarketLeaseAlreadySlashed) as info:
        stranger._send(env.contracts.market, "slashEquivocation", lease.as_tuple(), seq, *a, *b)
    assert info.value.lease_id == lease.id


def test_inflated_usage_is_caught_offline_refused_for_payment_and_slashed(
    env: MarketEnv, pair: tuple[Provider, Lab]
) -> None:
    provider, lab = pair
    lease = _lease(provider, lab)
    domain = lab.client.domain
    chain = _chain(provider, lease)
    verifier = ReceiptVerifier(domain, lease)
    first = _full_use(env, chain, 60)
    verifier.accept(first)
    # The provider claims 50% more GPU-seconds than two GPUs can have run: ReceiptChain would
    # refuse to sign it, so it signs by hand.
    now = _advance(env, 60)
    elapsed = now - lease.start
    inflated = dataclasses.replace(
        first.message,
        seq=1,
        prev_hash=receipt_hash(domain, first.message),
        period_start=first.message.period_end,
        period_end=now,
        gpu_seconds_cumulative=GPUS * elapsed * 3 // 2,
    )
    signed = provider.key.sign(domain, inflated)
    with pytest.raises(ReceiptUsageImpossible):
        verifier.accept(signed)
    with pytest.raises(MarketUsageImpossible) as refused:
        provider.post_receipt(lease, signed)
    assert refused.value.gpu_seconds_cumulative == GPUS * elapsed * 3 // 2
    assert refused.value.max_gpu_seconds >= GPUS * elapsed  # the next block is a little later

    lab_before = lab.balance()
    assert lab.prove_impossible_usage(lease, signed) == PENALTY
    assert lab.withdraw() == lease.escrow
    _advance(env, UNBONDING_DELAY)
    assert lab.withdraw() == PENALTY
    assert lab.balance() == lab_before + lease.escrow + PENALTY
    assert _stake(provider) == MIN_STAKE - PENALTY


def test_a_period_that_has_not_ended_is_refused_for_payment_and_slashed(
    env: MarketEnv, pair: tuple[Provider, Lab]
) -> None:
    provider, lab = pair
    lease = _lease(provider, lab)
    now = _advance(env, 30)
    early = provider.key.sign(
        lab.client.domain,
        Receipt(lease.id, 0, bytes(32), lease.start, now + 600, 1, bytes(32), bytes(32)),
    )
    with pytest.raises(MarketReceiptPeriodInvalid) as refused:
        provider.post_receipt(lease, early)
    assert refused.value.period_end == now + 600
    assert lab.prove_impossible_usage(lease, early) == PENALTY


def test_honest_receipts_are_never_proof(env: MarketEnv, pair: tuple[Provider, Lab]) -> None:
    provider, lab = pair
    lease = _lease(provider, lab)
    domain = lab.client.domain
    chain = _chain(provider, lease)
    verifier = ReceiptVerifier(domain, lease)
    issued: list[Signed[Receipt]] = []
    for _ in range(12):
        receipt = _full_use(env, chain, 90)
        verifier.accept(receipt)  # the lab's checks pass every time
        owed = voucher_amount(lease, receipt.message)
        voucher = lab.pay(lease, owed, receipt_hash(domain, receipt.message))
        provider.claim(lease, voucher)
        issued.append(receipt)
    for receipt in issued:
        with pytest.raises(MarketUsagePossible):
            lab.prove_impossible_usage(lease, receipt)
    for a in issued:
        for b in issued:
            assert not detect_equivocation(domain, a, b)
    paid = voucher_amount(lease, issued[-1].message)
    assert paid == PRICE * GPUS * (issued[-1].message.period_end - lease.start)
    assert not lab.client.is_slashed(lease.id)
    assert _stake(provider) == MIN_STAKE
    assert provider.close(lease) == lease.escrow - paid
    assert provider.withdraw() == paid
    assert lab.withdraw() == lease.escrow - paid


def test_a_receipt_replayed_from_another_lease_is_refused(
    env: MarketEnv, pair: tuple[Provider, Lab]
) -> None:
    provider, lab = pair
    a, b = _lease(provider, lab), _lease(provider, lab)
    receipt = _full_use(env, _chain(provider, a), 60)
    with pytest.raises(ReceiptWrongLease):
        ReceiptVerifier(lab.client.domain, b).accept(receipt)
    with pytest.raises(InvalidField, match="lease_id"):
        provider.post_receipt(b, receipt)
    with pytest.raises(MarketReceiptWrongLease) as info:
        provider.client._send(
            env.contracts.market,
            "postReceipt",
            b.as_tuple(),
            receipt_tuple(receipt.message),
            receipt.signature,
        )
    assert (info.value.lease_id, info.value.receipt_lease_id) == (b.id, a.id)
    assert provider.client.pending_claim(b.id) is None


def test_a_voucher_for_a_receipt_of_one_lease_cannot_pay_another(
    env: MarketEnv, pair: tuple[Provider, Lab]
) -> None:
    provider, lab = pair
    a, b = _lease(provider, lab), _lease(provider, lab)
    receipt = _full_use(env, _chain(provider, a), 60)
    voucher = lab.pay(
        a, voucher_amount(a, receipt.message), receipt_hash(lab.client.domain, receipt.message)
    )
    m = voucher.message
    with pytest.raises(MarketInvalidSignature) as info:
        provider.client._send(
            env.contracts.market,
            "claim",
            b.as_tuple(),
            m.cumulative_amount,
            m.receipt_hash,
            voucher.signature,
        )
    assert info.value.signer == lab.address
    assert provider.client.lease_state(b.id).paid == 0
    assert provider.claim(a, voucher) == m.cumulative_amount  # where it belongs, it pays


def test_optimistic_claim_is_paid_only_after_the_challenge_window(
    env: MarketEnv, pair: tuple[Provider, Lab]
) -> None:
    provider, lab = pair
    lease = _lease(provider, lab)
    chain = _chain(provider, lease)
    _full_use(env, chain, 100)
    latest = _full_use(env, chain, 100)  # the lab has gone silent: no voucher for either
    pending = provider.post_receipt(lease, latest)
    assert pending.amount == PRICE * latest.message.gpu_seconds_cumulative
    assert pending.seq == 1
    assert pending.receipt_hash == receipt_hash(lab.client.domain, latest.message)
    assert provider.post_receipt(lease, latest) == pending  # posted already: nothing sent
    with pytest.raises(MarketChallengeWindowOpen) as early:
        provider.finalize_claim(lease)
    assert early.value.ready_at == pending.ready_at

    _advance(env, CHALLENGE_WINDOW)
    assert provider.finalize_claim(lease) == pending.amount
    assert provider.client.pending_claim(lease.id) is None
    assert provider.client.lease_state(lease.id).paid == pending.amount
    p0 = provider.balance()
    assert provider.withdraw() == pending.amount
    assert provider.balance() == p0 + pending.amount
    assert provider.finalize_claim(lease) == 0  # nothing pending: nothing sent


def test_a_claim_vouchers_already_paid_is_finalized_for_nothing(
    env: MarketEnv, pair: tuple[Provider, Lab]
) -> None:
    provider, lab = pair
    lease = _lease(provider, lab)
    latest = _full_use(env, _chain(provider, lease), 100)
    pending = provider.post_receipt(lease, latest)
    # The lab was only late: it pays the posted receipt's amount by voucher, which is claimed.
    voucher = lab.pay(lease, pending.amount, receipt_hash(lab.client.domain, latest.message))
    assert provider.claim(lease, voucher) == pending.amount
    _advance(env, CHALLENGE_WINDOW)
    events = provider.client._events_in(
        provider.client._send(env.contracts.market, "finalizeClaim", lease.as_tuple())
    )
    finalized = [e.args for e in events if e.name == "ClaimFinalized"]
    assert [(a["seq"], a["amount"]) for a in finalized] == [(pending.seq, 0)]  # nothing more
    assert provider.client.pending_claim(lease.id) is None
    assert provider.client.lease_state(lease.id).paid == pending.amount  # paid once


def test_a_dispute_left_unresolved_pays_the_provider_the_claim_and_the_bond(
    env: MarketEnv, pair: tuple[Provider, Lab]
) -> None:
    provider, lab = pair
    lease = _lease(provider, lab)
    receipt = _full_use(env, _chain(provider, lease), 100)
    claim = provider.post_receipt(lease, receipt).amount
    assert lab.pending_claim(lease) is not None
    l0 = lab.balance()
    lab.dispute(lease)
    bond = claim * lab.client.dispute_bond_bps() // 10_000
    assert bond > 0
    assert lab.balance() == l0 - bond
    pending = lab.pending_claim(lease)
    assert pending is not None
    assert pending.disputed
    assert pending.bond == bond
    disputes = [e for e in lab.client.events() if e.name == "ClaimDisputed"]
    assert [(e.args["lease_id"], e.args["seq"], e.args["bond"]) for e in disputes] == [
        (lease.id, 0, bond)
    ]
    # The lab used the lease and closes: the disputed amount stays in escrow.
    _advance(env, DURATION + CLAIM_WINDOW)
    assert lab.close(lease) == lease.escrow - claim
    with pytest.raises(MarketClaimDisputed):
        provider.client._send(env.contracts.market, "finalizeClaim", lease.as_tuple())
    # No arbiter rules (this lease names none): from the deadline the provider is paid.
    _advance(env, pending.ruling_deadline - env.devnet.timestamp())
    assert provider.finalize_claim(lease) == claim
    assert provider.withdraw() == claim + bond
    assert lab.withdraw() == lease.escrow - claim


def test_a_lab_with_an_unlimited_allowance_disputes_without_a_new_approval(
    env: MarketEnv, pair: tuple[Provider, Lab]
) -> None:
    provider, lab = pair
    lab.fund(2**256 - 1)  # unlimited: adding the bond on top would overflow uint256
    lease = _lease(provider, lab)
    claim = provider.post_receipt(lease, _full_use(env, _chain(provider, lease), 100)).amount
    l0, block = lab.balance(), env.devnet.web3().eth.block_number
    lab.dispute(lease)
    bond = claim * lab.client.dispute_bond_bps() // 10_000
    assert lab.balance() == l0 - bond
    assert lab.pending_claim(lease).disputed  # type: ignore[union-attr]
    assert env.devnet.web3().eth.block_number == block + 1  # the dispute alone, no approval
    assert lab.client.allowance(lab.address) == 2**256 - 1


def test_a_posted_receipt_that_contradicts_the_labs_copy_is_disputed_and_slashed(
    env: MarketEnv, pair: tuple[Provider, Lab]
) -> None:
    provider, lab = pair
    lease = _lease(provider, lab)
    domain = lab.client.domain
    now = _advance(env, 100)
    given_to_lab = _chain(provider, lease).append(now, GPUS * (now - lease.start) // 2)
    # Later the provider posts another seq 0 reporting full use: more than it told the lab.
    full = GPUS * (now - lease.start)
    padded = provider.key.sign(
        domain, dataclasses.replace(given_to_lab.message, gpu_seconds_cumulative=full)
    )
    provider.post_receipt(lease, padded)
    # The lab reads the posted receipt and its signature from the chain and compares.
    posted = [e for e in lab.client.events() if e.name == "ReceiptPosted"][-1]
    on_chain = Signed(posted.args["receipt"], posted.args["signature"])
    assert on_chain == padded
    assert detect_equivocation(domain, given_to_lab, on_chain, provider=provider.address)
    lab.dispute(lease)
    bond = provider.client.pending_claim(lease.id).bond  # type: ignore[union-attr]
    assert lab.prove_equivocation(lease, given_to_lab, on_chain) == PENALTY
    assert lab.withdraw() == lease.escrow + bond  # a proof settles the dispute for the lab
    _advance(env, UNBONDING_DELAY)
    assert lab.withdraw() == PENALTY
