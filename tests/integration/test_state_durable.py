"""Chain actions through the intent log on anvil: crashes between steps, then reconcile; every
balance checked to the unit, every payment made exactly once."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from market.chain.client import MarketClient
from market.chain.contract_errors import MarketChallengeWindowOpen, MarketClaimWindowOpen
from market.protocol.types import LeaseStatus
from market.receipts import ReceiptChain
from nodes.errors import ActionUnsupported
from nodes.state import (
    Checkpoint,
    ClaimBatch,
    CloseLease,
    DurableChain,
    FinalizeClaim,
    Intent,
    PostReceipt,
    StateDB,
    Step,
    Withdraw,
)
from tests.integration.conftest import CHALLENGE_WINDOW, MarketEnv
from tests.integration.state_setup import (
    GPUS,
    PAID,
    PRICE,
    THIRD,
    Leased,
    claims_of,
    open_lease,
)

pytestmark = pytest.mark.integration


ChainAt = Callable[..., DurableChain]


class Crash(Exception):
    """Stands for the process dying at a checkpoint."""


def crash_at(step: Step) -> Checkpoint:
    def checkpoint(at: Step, intent: Intent) -> None:
        if at == step:
            raise Crash(at)

    return checkpoint


@pytest.fixture
def leased(env: MarketEnv) -> Leased:
    return open_lease(env)


@pytest.fixture
def chain_at(leased: Leased, tmp_path: Path) -> Iterator[ChainAt]:
    """Opens the provider's state (one database file for the test) as a fresh process would."""
    opened: list[StateDB] = []

    def make(step: Step | None = None, client: MarketClient | None = None) -> DurableChain:
        opened.append(StateDB.open(tmp_path / "provider.sqlite"))
        checkpoint = crash_at(step) if step is not None else None
        return DurableChain(opened[-1], client or leased.provider.client, checkpoint=checkpoint)

    yield make
    for db in opened:
        db.close()


def _nonce(leased: Leased) -> int:
    client = leased.provider.client
    return int(client.w3.eth.get_transaction_count(client.address, "latest"))


def test_claim_runs_once_and_a_repeat_is_obsolete_without_a_transaction(
    env: MarketEnv, leased: Leased, chain_at: ChainAt
) -> None:
    chain = chain_at()
    action = ClaimBatch(((leased.lease, leased.voucher),))
    outcome = chain.run(action)
    assert (outcome.status, outcome.result["total"], outcome.result["skipped"]) == ("done", PAID, 0)
    assert outcome.result["0x" + leased.lease.id.hex()] == PAID
    nonce = _nonce(leased)
    again = chain.run(action)
    assert (again.status, again.tx_hash) == ("obsolete", None)
    assert _nonce(leased) == nonce
    assert claims_of(env, leased.lease) == [PAID]
    assert leased.provider.withdrawable() == PAID


@pytest.mark.parametrize("step", ["intent_written", "tx_recorded", "broadcast"])
def test_claim_interrupted_at_any_step_is_paid_exactly_once_after_reconcile(
    env: MarketEnv, leased: Leased, chain_at: ChainAt, step: Step
) -> None:
    nonce = _nonce(leased)
    with pytest.raises(Crash):
        chain_at(step).run(ClaimBatch(((leased.lease, leased.voucher),)))
    (left,) = chain_at().log.open_intents()
    assert left.status == ("pending" if step == "intent_written" else "sent")
    on_chain = leased.provider.client.lease_state(leased.lease.id).paid
    assert on_chain == (PAID if step == "broadcast" else 0)

    (outcome,) = chain_at().reconcile()
    assert outcome.status == "done"
    assert outcome.result["total"] == PAID
    if step != "intent_written":
        assert outcome.tx_hash == left.tx_hash  # the recorded bytes, never a second signature
    assert claims_of(env, leased.lease) == [PAID]
    assert _nonce(leased) == nonce + 1
    assert chain_at().log.open_intents() == []

    before = leased.provider.balance()
    assert chain_at().run(Withdraw()).result == {"amount": PAID}
    assert leased.provider.balance() == before + PAID


def test_signed_claim_whose_nonce_another_transaction_took_is_sent_again(
    env: MarketEnv, leased: Leased, chain_at: ChainAt
) -> None:
    with pytest.raises(Crash):
        chain_at("tx_recorded").run(ClaimBatch(((leased.lease, leased.voucher),)))
    (left,) = chain_at().log.open_intents()
    leased.provider.client.transactor.resync_nonce()
    leased.provider.cancel_all()  # another transaction takes the recorded nonce
    assert _nonce(leased) == (left.tx_nonce or 0) + 1

    (outcome,) = chain_at().reconcile()
    assert outcome.status == "done"
    assert outcome.tx_hash != left.tx_hash
    assert chain_at().log.get(left.id).attempts == 2
    assert claims_of(env, leased.lease) == [PAID]
    assert leased.provider.withdrawable() == PAID


def test_claim_someone_else_submitted_meanwhile_is_obsolete_not_repeated(
    env: MarketEnv, leased: Leased, chain_at: ChainAt
) -> None:
    with pytest.raises(Crash):
        chain_at("intent_written").run(ClaimBatch(((leased.lease, leased.voucher),)))
    env.lab(THIRD).client.claim(leased.lease, leased.voucher)  # anyone may submit a voucher
    nonce = _nonce(leased)

    (outcome,) = chain_at().reconcile()
    assert outcome.status == "obsolete"
    assert "paid" in outcome.reason
    assert _nonce(leased) == nonce
    assert claims_of(env, leased.lease) == [PAID]
    assert leased.provider.withdrawable() == PAID


def test_batch_sends_only_the_vouchers_still_unpaid(
    env: MarketEnv, leased: Leased, chain_at: ChainAt
) -> None:
    second = open_lease(env)
    more = leased.lab.pay(second.lease, 3_000)
    leased.provider.claim(leased.lease, leased.voucher)
    outcome = chain_at().run(ClaimBatch(((leased.lease, leased.voucher), (second.lease, more))))
    assert outcome.result["total"] == 3_000
    assert outcome.result["skipped"] == 0
    (intent,) = chain_at().log.all()
    assert ClaimBatch.decode(intent.args).items == ((second.lease, more),)
    assert leased.provider.withdrawable() == PAID + 3_000


def test_close_interrupted_after_broadcast_refunds_the_lab_once(
    env: MarketEnv, leased: Leased, chain_at: ChainAt
) -> None:
    chain = chain_at()
    chain.run(ClaimBatch(((leased.lease, leased.voucher),)))
    with pytest.raises(Crash):
        chain_at("broadcast").run(CloseLease(leased.lease))
    (outcome,) = chain_at().reconcile()
    refund = leased.lease.escrow - PAID
    assert (outcome.status, outcome.result) == ("done", {"refund": refund})
    assert leased.lab.client.lease_state(leased.lease.id).status == LeaseStatus.CLOSED
    assert leased.lab.withdrawable() == refund
    assert chain_at().run(CloseLease(leased.lease)).status == "obsolete"


def test_withdraw_interrupted_after_broadcast_is_counted_once(
    leased: Leased, chain_at: ChainAt
) -> None:
    leased.provider.claim(leased.lease, leased.voucher)
    before = leased.provider.balance()
    with pytest.raises(Crash):
        chain_at("broadcast").run(Withdraw())
    (outcome,) = chain_at().reconcile()
    assert outcome.result == {"amount": PAID}
    assert leased.provider.balance() == before + PAID
    assert chain_at().run(Withdraw()).status == "obsolete"
    assert leased.provider.balance() == before + PAID


def test_action_the_chain_refuses_fails_with_the_typed_error_and_sends_nothing(
    leased: Leased, chain_at: ChainAt
) -> None:
    lab = leased.lab.client
    nonce = lab.w3.eth.get_transaction_count(lab.address, "latest")
    chain = chain_at(client=lab)
    with pytest.raises(MarketClaimWindowOpen) as info:
        chain.run(CloseLease(leased.lease))  # a lab may close only after the claim window
    assert info.value.lease_id == leased.lease.id
    (intent,) = chain.log.all()
    assert (intent.status, intent.tx_hash) == ("failed", None)
    assert "MarketClaimWindowOpen" in intent.reason
    assert lab.w3.eth.get_transaction_count(lab.address, "latest") == nonce


def test_optimistic_claim_posted_and_finalized_across_crashes_is_paid_once(
    env: MarketEnv, leased: Leased, chain_at: ChainAt
) -> None:
    lease = leased.lease
    env.devnet.increase_time(600)
    env.devnet.mine()
    receipts = ReceiptChain(leased.provider.key, leased.provider.client.domain, lease)
    receipt = receipts.append(lease.start + 600, GPUS * 600)
    worth = PRICE * GPUS * 600

    with pytest.raises(Crash):
        chain_at("broadcast").run(PostReceipt(lease, receipt))
    (posted,) = chain_at().reconcile()
    assert (posted.status, posted.result["amount"]) == ("done", worth)
    assert chain_at().run(PostReceipt(lease, receipt)).status == "obsolete"
    with pytest.raises(MarketChallengeWindowOpen):
        chain_at().run(FinalizeClaim(lease))  # the lab may still dispute

    env.devnet.increase_time(CHALLENGE_WINDOW)
    env.devnet.mine()
    with pytest.raises(Crash):
        chain_at("intent_written").run(FinalizeClaim(lease))
    (finalized,) = chain_at().reconcile()
    assert finalized.result == {"amount": worth, "bond": 0}  # undisputed: no bond
    assert chain_at().run(FinalizeClaim(lease)).status == "obsolete"
    assert claims_of(env, lease) == [worth]
    assert leased.provider.withdrawable() == worth


def test_optimistic_claim_on_a_market_without_it_fails_once_and_stays_closed(
    leased: Leased, chain_at: ChainAt
) -> None:
    chain = chain_at()
    chain.view.functions -= {"pendingClaim", "postReceipt", "finalizeClaim"}  # an older market
    with pytest.raises(ActionUnsupported) as info:
        chain.run(FinalizeClaim(leased.lease))
    assert info.value.function == "pendingClaim"
    assert chain.log.open_intents() == []
    assert chain.reconcile() == []
