"""Chain actions decide from contract state alone what is still needed, and round-trip as bytes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from eth_utils.address import to_checksum_address

import nodes.state
from market.chain.events import ChainEvent
from market.protocol.types import ZERO_HASH, Lease, LeaseState, LeaseStatus, Voucher
from market.receipts import ReceiptChain
from nodes.errors import StoreError
from nodes.state import (
    KINDS,
    Action,
    ClaimBatch,
    CloseLease,
    CloseLeaseBatch,
    FinalizeClaim,
    Obsolete,
    PostedClaim,
    PostReceipt,
    Withdraw,
    decode_action,
)
from tests.unit.order_factory import DOMAIN, LAB_KEYS, PROVIDER_KEYS

pytestmark = pytest.mark.unit

PROVIDER, LAB = PROVIDER_KEYS[0], LAB_KEYS[0]
ACTIVE = LeaseState(0, 4_600, LeaseStatus.ACTIVE)


def _lease(salt: int = 1) -> Lease:
    return Lease(PROVIDER.address, LAB.address, 2, 7, 1_000, 3_600, bytes([salt]) * 32)


@dataclass
class FakeChain:
    leases: dict[bytes, LeaseState] = field(default_factory=dict)
    credit: int = 0
    pending: dict[bytes, PostedClaim] = field(default_factory=dict)
    account: str = PROVIDER.address

    def lease_state(self, lease_id: bytes) -> LeaseState:
        return self.leases.get(lease_id, LeaseState(0, 0, LeaseStatus.NONE))

    def lease_states(self, lease_ids: Sequence[bytes]) -> dict[bytes, LeaseState]:
        return {i: self.lease_state(i) for i in lease_ids}

    def withdrawable(self, address: str) -> int:
        assert address == self.account
        return self.credit

    def posted_claim(self, lease_id: bytes) -> PostedClaim:
        return self.pending.get(lease_id, PostedClaim(0, 0, 0, ZERO_HASH))


def _event(name: str, **args: object) -> ChainEvent:
    return ChainEvent(name, args, to_checksum_address("0x" + "5f" * 20), 1, b"\0" * 32, 0)


def _every_kind() -> list[Action]:
    lease = _lease()
    receipt = ReceiptChain(PROVIDER, DOMAIN, lease).append(1_600, 1_200)
    return [
        ClaimBatch(((lease, LAB.sign(DOMAIN, Voucher(lease.id, 2**80))),)),
        CloseLease(lease),
        CloseLeaseBatch((lease, _lease(2))),
        Withdraw(),
        PostReceipt(lease, receipt),
        FinalizeClaim(lease),
    ]


@pytest.mark.parametrize("action", _every_kind(), ids=lambda a: a.kind)
def test_every_action_round_trips_through_its_intent_bytes(action: Action) -> None:
    assert decode_action(action.kind, action.encode()) == action


def test_kinds_are_the_six_actions() -> None:
    assert set(KINDS) == {a.kind for a in _every_kind()}


def test_unknown_kind_or_garbage_arguments_are_store_errors() -> None:
    with pytest.raises(StoreError, match="unknown action kind 'refund'"):
        decode_action("refund", b"\x80")
    with pytest.raises(StoreError, match="not a map"):
        decode_action("withdraw", b"\x01")


def test_claim_batch_keeps_only_vouchers_worth_more_than_paid_on_live_leases() -> None:
    paid, unpaid, closed, capped = _lease(1), _lease(2), _lease(3), _lease(4)
    chain = FakeChain(
        {
            paid.id: LeaseState(500, 4_600, LeaseStatus.ACTIVE),
            unpaid.id: LeaseState(100, 4_600, LeaseStatus.TERMINATED),
            closed.id: LeaseState(0, 4_600, LeaseStatus.CLOSED),
            capped.id: LeaseState(capped.escrow, 4_600, LeaseStatus.ACTIVE),
        }
    )
    items = tuple(
        (lease, LAB.sign(DOMAIN, Voucher(lease.id, amount)))
        for lease, amount in ((paid, 500), (unpaid, 300), (closed, 900), (capped, 10**30))
    )
    assert ClaimBatch(items).still_needed(chain) == ClaimBatch((items[1],))
    assert isinstance(ClaimBatch((items[0], items[2], items[3])).still_needed(chain), Obsolete)


def test_claim_batch_call_and_result_follow_the_contract() -> None:
    lease = _lease()
    voucher = LAB.sign(DOMAIN, Voucher(lease.id, 300, b"\x01" * 32))
    call = ClaimBatch(((lease, voucher),)).call()
    assert call.function == "claimBatch"
    assert call.args == ([(lease.as_tuple(), 300, b"\x01" * 32, voucher.signature)],)
    events = [
        _event("Claimed", lease_id=lease.id, amount=300),
        _event("ClaimSkipped", lease_id=b"\x02" * 32, reason=b"\0\0\0\0"),
        _event("FeePaid", treasury=PROVIDER.address, amount=3),
    ]
    assert ClaimBatch(((lease, voucher),)).result(events) == {
        "total": 300,
        "skipped": 1,
        "0x" + lease.id.hex(): 300,
    }


@pytest.mark.parametrize("status", [LeaseStatus.CLOSED, LeaseStatus.NONE])
def test_close_of_a_lease_not_live_is_obsolete(status: LeaseStatus) -> None:
    lease = _lease()
    chain = FakeChain({lease.id: LeaseState(0, 0, status)})
    needed = CloseLease(lease).still_needed(chain)
    assert needed == Obsolete(f"lease is {status.name.lower()}")
    assert CloseLease(lease).still_needed(FakeChain({lease.id: ACTIVE})) == CloseLease(lease)


def test_a_close_batch_keeps_the_live_leases_and_reads_each_refund() -> None:
    live, closed = _lease(1), _lease(2)
    chain = FakeChain({live.id: ACTIVE, closed.id: LeaseState(0, 0, LeaseStatus.CLOSED)})
    assert CloseLeaseBatch((live, closed)).still_needed(chain) == CloseLeaseBatch((live,))
    assert CloseLeaseBatch((closed,)).still_needed(chain) == Obsolete(
        "every lease in the batch is closed"
    )
    events = [
        _event("LeaseClosed", lease_id=live.id, paid=3, refund=40),
        _event("CloseSkipped", lease_id=closed.id, reason=b"\x01\x02\x03\x04"),
    ]
    assert CloseLeaseBatch((live, closed)).result(events) == {
        "refund": 40,
        "skipped": 1,
        "0x" + live.id.hex(): 40,
    }


def test_withdraw_is_needed_only_while_there_is_credit() -> None:
    assert Withdraw().still_needed(FakeChain(credit=0)) == Obsolete("nothing to withdraw")
    assert Withdraw().still_needed(FakeChain(credit=1)) == Withdraw()
    assert Withdraw().result([_event("Withdrawn", account=PROVIDER.address, amount=9)]) == {
        "amount": 9
    }


def test_post_receipt_is_needed_until_it_or_a_newer_one_is_posted_or_paid() -> None:
    lease = _lease()
    chain = ReceiptChain(PROVIDER, DOMAIN, lease)
    first, second = chain.append(1_600, 1_200), chain.append(2_200, 2_400)
    action = PostReceipt(lease, second)
    assert action.still_needed(FakeChain({lease.id: ACTIVE})) == action
    older = {lease.id: PostedClaim(7 * 1_200, 0, 0, b"\x01" * 32)}  # receipt 0, disputed
    assert action.still_needed(FakeChain({lease.id: ACTIVE}, pending=older)) == action
    assert isinstance(
        PostReceipt(lease, first).still_needed(FakeChain({lease.id: ACTIVE}, pending=older)),
        Obsolete,
    )
    same = {lease.id: PostedClaim(7 * 2_400, 1, 99, b"\x02" * 32)}
    assert action.still_needed(FakeChain({lease.id: ACTIVE}, pending=same)) == Obsolete(
        "receipt 1 is posted already, and receipt 1 is not newer"
    )
    worth = 7 * 2_400
    paid = FakeChain({lease.id: LeaseState(worth, 4_600, LeaseStatus.ACTIVE)})
    assert action.still_needed(paid) == Obsolete(
        f"vouchers already paid {worth}, the receipt is worth {worth}"
    )
    closed = FakeChain({lease.id: LeaseState(0, 4_600, LeaseStatus.CLOSED)})
    assert action.still_needed(closed) == Obsolete("lease is closed")
    # Only a claim that raises the amount may be posted, and none while a dispute is open.
    higher = {lease.id: PostedClaim(7 * 2_400, 0, 99, b"\x01" * 32)}
    assert action.still_needed(FakeChain({lease.id: ACTIVE}, pending=higher)) == Obsolete(
        f"a claim of {7 * 2_400} was posted, the receipt is worth {7 * 2_400}"
    )
    disputed = {lease.id: PostedClaim(7 * 1_200, 0, 99, b"\x01" * 32, ruling_deadline=500)}
    assert isinstance(
        action.still_needed(FakeChain({lease.id: ACTIVE}, pending=disputed)), Obsolete
    )
    assert action.call().function == "postReceipt"
    assert action.call().args[2] == second.signature


def test_finalize_is_needed_only_while_a_claim_is_pending_on_a_live_lease() -> None:
    lease = _lease()
    claim = {lease.id: PostedClaim(10, 1, 5_000, b"\x01" * 32)}
    assert FinalizeClaim(lease).still_needed(FakeChain({lease.id: ACTIVE}, pending=claim)) == (
        FinalizeClaim(lease)
    )
    done = {lease.id: PostedClaim(0, 1, 0, b"\x01" * 32)}
    assert isinstance(
        FinalizeClaim(lease).still_needed(FakeChain({lease.id: ACTIVE}, pending=done)), Obsolete
    )
    closed = FakeChain({lease.id: LeaseState(0, 0, LeaseStatus.CLOSED)}, pending=claim)
    assert FinalizeClaim(lease).still_needed(closed) == Obsolete("lease is closed")
    # A closed lease whose claim is disputed keeps the amount in escrow: it is collected still.
    held = FakeChain(
        {lease.id: LeaseState(0, 0, LeaseStatus.CLOSED, disputed=True)},
        pending={lease.id: PostedClaim(10, 1, 5_000, b"\x01" * 32, ruling_deadline=9_000)},
    )
    assert FinalizeClaim(lease).still_needed(held) == FinalizeClaim(lease)
    finalized = _event("ClaimFinalized", amount=10, bond=1)
    assert FinalizeClaim(lease).result([finalized]) == {"amount": 10, "bond": 1}


def test_state_package_exports_are_the_documented_ones() -> None:
    for name in nodes.state.__all__:
        assert hasattr(nodes.state, name), name
    assert {"DurableChain", "StateDB", "Records", "IntentLog", "ClaimBatch"} <= set(
        nodes.state.__all__
    )
