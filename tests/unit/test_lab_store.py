"""The lab's state: its sealing key, jobs, leases, receipts accepted, vouchers and actions, kept
across a reopen and guarded against overwriting evidence."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from market.protocol import codec
from market.protocol.eip712 import order_hash, receipt_hash
from market.protocol.types import Bid, Lease, Voucher
from market.receipts import ReceiptChain
from market.sealing import public_key_of
from nodes.errors import StoreError
from nodes.jobs.spec import JobSpec, MatmulParams
from nodes.lab.store import LAB_MIGRATIONS, ChallengeOutcome, LabStore
from nodes.state import IntentLog, StateDB
from tests.unit.order_factory import DOMAIN, LAB_KEYS, PROVIDER_KEYS

pytestmark = pytest.mark.unit

PROVIDER, LAB = PROVIDER_KEYS[0], LAB_KEYS[0]
SPEC = JobSpec(bytes(range(32)), MatmulParams(4, 7, 2))


def _lease(salt: int = 1) -> Lease:
    return Lease(PROVIDER.address, LAB.address, 2, 7, 1_000, 3_600, bytes([salt]) * 32)


def _bid(spec: JobSpec = SPEC) -> Bid:
    return Bid(LAB.address, "H100-80GB", 2, 9, 3_600, 10_000, 1, spec.hash)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "lab.sqlite"


@pytest.fixture
def store(path: Path) -> Iterator[LabStore]:
    db = StateDB.open(path, migrations=LAB_MIGRATIONS)
    yield LabStore(db, DOMAIN)
    db.close()


def _with_lease(store: LabStore, lease: Lease) -> None:
    signed = LAB.sign(DOMAIN, _bid())
    if not store.jobs():
        store.save_job(0, SPEC, signed, order_hash(DOMAIN, signed.message))
    store.save_lease(lease, 0, b"\x01" * 32)


def test_lab_schema_keeps_the_intent_log_of_durable_chain_actions(store: LabStore) -> None:
    assert store.db.version == len(LAB_MIGRATIONS) == 4
    log = IntentLog(store.db)
    assert log.create("withdraw", b"\x80").status == "pending"


def test_challenge_outcomes_are_kept_per_provider_across_a_reopen(
    store: LabStore, path: Path
) -> None:
    lease = _lease()
    _with_lease(store, lease)
    store.add_challenge(lease.id, lease.provider, ChallengeOutcome(128, "cpu-test", True, 0.1, 1.5))
    store.add_challenge(
        lease.id, lease.provider, ChallengeOutcome(128, "cpu-test", False, 3.1, 1.5, "late")
    )
    assert store.challenge_record(lease.provider) == (1, 1)
    assert store.challenge_record(LAB.address) == (0, 0)
    store.db.close()
    db = StateDB.open(path, migrations=LAB_MIGRATIONS)
    assert LabStore(db, DOMAIN).challenge_record(lease.provider) == (1, 1)
    db.close()


def test_store_refuses_a_database_opened_without_the_lab_migrations(tmp_path: Path) -> None:
    db = StateDB.open(tmp_path / "other.sqlite")
    with pytest.raises(StoreError, match="LAB_MIGRATIONS"):
        LabStore(db, DOMAIN)
    db.close()


def test_sealing_key_is_generated_once_and_survives_a_reopen(store: LabStore, path: Path) -> None:
    first = store.sealing_key()
    assert public_key_of(first.private) == first.public
    assert store.sealing_key() == first
    db = StateDB.open(path, migrations=LAB_MIGRATIONS)
    assert LabStore(db, DOMAIN).sealing_key() == first
    db.close()


def test_cursor_is_none_until_set_then_the_latest_value(store: LabStore) -> None:
    assert store.cursor() is None
    store.set_cursor(12)
    store.set_cursor(40)
    assert store.cursor() == 40


def test_job_round_trips_and_is_found_by_its_bid_hash(store: LabStore) -> None:
    signed = LAB.sign(DOMAIN, _bid())
    h = order_hash(DOMAIN, signed.message)
    store.save_job(0, SPEC, signed, h)
    [job] = store.jobs()
    assert (job.idx, job.spec, job.bid, job.bid_hash) == (0, SPEC, signed, h)
    assert store.job_for_bid(h) == 0
    assert store.job_for_bid(bytes(32)) is None
    with pytest.raises(StoreError, match="already stored"):
        store.save_job(0, SPEC, signed, h)


def test_job_whose_bid_does_not_commit_to_the_spec_is_refused(store: LabStore) -> None:
    other = JobSpec(bytes(32), MatmulParams(4, 8, 2))
    signed = LAB.sign(DOMAIN, _bid(other))
    with pytest.raises(StoreError, match="does not commit to the spec"):
        store.save_job(0, SPEC, signed, order_hash(DOMAIN, signed.message))


def test_lease_is_saved_once_with_its_own_audit_secret(store: LabStore) -> None:
    a, b = _lease(1), _lease(2)
    _with_lease(store, a)
    assert not store.save_lease(a, 0, b"\x02" * 32)
    store.save_lease(b, 0, b"\x02" * 32)
    ra, rb = store.lease(a.id), store.lease(b.id)
    assert ra is not None
    assert rb is not None
    assert (ra.lease, ra.phase, ra.end_at, ra.offer_hash) == (a, "opened", a.end, b"\x01" * 32)
    assert len(ra.audit_secret) == 32
    assert ra.audit_secret != rb.audit_secret
    assert [r.lease for r in store.leases("opened")] == [a, b]


def test_closed_stays_closed_an_end_only_moves_earlier_and_the_first_failure_stays(
    store: LabStore,
) -> None:
    lease = _lease()
    _with_lease(store, lease)
    store.update_lease(lease.id, phase="running", job_state="running", end_at=lease.end - 10)
    store.update_lease(lease.id, end_at=lease.end + 100, failure="first")
    store.update_lease(lease.id, phase="closed", failure="second")
    store.update_lease(lease.id, phase="running")
    record = store.lease(lease.id)
    assert record is not None
    assert (record.phase, record.job_state, record.end_at, record.failure) == (
        "closed", "running", lease.end - 10, "first",
    )  # fmt: skip
    assert store.leases("running") == []


def test_accepted_receipt_and_output_are_kept_and_another_for_its_seq_is_refused(
    store: LabStore,
) -> None:
    lease = _lease()
    _with_lease(store, lease)
    honest = ReceiptChain(PROVIDER, DOMAIN, lease)
    r0 = honest.append(1_100, 100)
    r1 = honest.append(1_200, 300)
    assert store.accept_receipt(r0, b"abc") == receipt_hash(DOMAIN, r0.message)
    store.accept_receipt(r0, b"abc")  # the same again: a no-op
    store.accept_receipt(r1, b"def")
    fork = ReceiptChain(PROVIDER, DOMAIN, lease, head=r0).append(1_200, 350)
    with pytest.raises(StoreError, match="already has another receipt 1"):
        store.accept_receipt(fork, b"xyz")
    assert store.head(lease.id) == r1
    assert store.receipt(lease.id, 1) == r1
    assert store.output(lease.id) == b"abcdef"
    assert store.has_receipt_hash(lease.id, receipt_hash(DOMAIN, r1.message))
    assert not store.has_receipt_hash(lease.id, receipt_hash(DOMAIN, fork.message))


def test_best_voucher_is_the_largest_and_remembers_whether_it_was_sent(store: LabStore) -> None:
    lease = _lease()
    _with_lease(store, lease)
    assert store.best_voucher(lease.id) is None
    assert store.vouched(lease.id) == 0
    small = LAB.sign(DOMAIN, Voucher(lease.id, 700))
    large = LAB.sign(DOMAIN, Voucher(lease.id, 2_100))
    assert store.save_voucher(large)
    assert store.save_voucher(small)
    assert not store.save_voucher(large)
    assert store.best_voucher(lease.id) == (large, False)
    store.mark_sent(lease.id, 2_100)
    assert store.best_voucher(lease.id) == (large, True)
    assert store.vouched(lease.id) == 2_100


def test_actions_are_stored_once_and_finished_with_a_reason(store: LabStore) -> None:
    lease = _lease()
    _with_lease(store, lease)
    chain = ReceiptChain(PROVIDER, DOMAIN, lease)
    evidence = codec.encode(chain.append(1_100, 100))
    assert store.add_action(lease.id, "terminate", amount=700)
    assert not store.add_action(lease.id, "terminate", amount=900)
    assert store.add_action(lease.id, "impossible_usage", evidence)
    terminate, proof = store.actions("pending")
    assert (terminate.kind, terminate.amount) == ("terminate", 700)
    assert (proof.kind, proof.a) == ("impossible_usage", evidence)
    store.finish_action(terminate.id, "done", "terminated")
    assert [a.kind for a in store.actions("pending")] == ["impossible_usage"]
    assert store.actions("done")[0].reason == "terminated"


def test_a_lease_is_terminating_once_its_termination_is_decided_and_no_sooner(
    store: LabStore,
) -> None:
    lease, other = _lease(), _lease(2)
    _with_lease(store, lease)
    _with_lease(store, other)
    assert store.add_action(lease.id, "impossible_usage", b"evidence")
    assert not store.terminating(lease.id)  # another action is no termination
    assert store.add_action(lease.id, "terminate", amount=700)
    assert store.terminating(lease.id)
    assert not store.terminating(other.id)
