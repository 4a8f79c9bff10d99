"""The state database: WAL, migrations by version, intent rows, write-before-act records."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from market.errors import InvalidSignature
from market.protocol.signing import to_compact
from market.protocol.types import Lease, Signed, Voucher
from market.receipts import ReceiptChain
from nodes.errors import StoreError
from nodes.state import SCHEMA_VERSION, IntentLog, Records, StateDB
from nodes.state.db import MIGRATIONS
from tests.unit.order_factory import DOMAIN, LAB_KEYS, PROVIDER_KEYS

pytestmark = pytest.mark.unit

PROVIDER, LAB = PROVIDER_KEYS[0], LAB_KEYS[0]


def _lease(salt: int = 1, gpus: int = 2, price: int = 7) -> Lease:
    return Lease(PROVIDER.address, LAB.address, gpus, price, 1_000, 3_600, bytes([salt]) * 32)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[StateDB]:
    state = StateDB.open(tmp_path / "state.sqlite")
    yield state
    state.close()


@pytest.fixture
def records(db: StateDB) -> Records:
    return Records(db, DOMAIN)


def test_new_database_is_wal_at_the_latest_schema_version(db: StateDB) -> None:
    assert db.version == SCHEMA_VERSION == len(MIGRATIONS)
    assert db.query("PRAGMA journal_mode")[0][0] == "wal"


def test_reopening_applies_only_the_missing_migrations(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    StateDB.open(path).close()
    extra = (*MIGRATIONS, "CREATE TABLE peers (url TEXT PRIMARY KEY);")
    db = StateDB.open(path, migrations=extra)
    assert db.version == len(MIGRATIONS) + 1
    assert db.query("SELECT count(*) FROM peers")[0][0] == 0
    db.close()


def test_database_from_a_newer_release_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1} is newer"):
        StateDB.open(path)


def test_failed_migration_leaves_the_version_before_it(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    StateDB.open(path).close()
    broken = (*MIGRATIONS, "CREATE TABLE half (x INTEGER); CREATE TABLE intents (x INTEGER);")
    with pytest.raises(StoreError, match="already exists"):
        StateDB.open(path, migrations=broken)
    db = StateDB.open(path)
    assert db.version == SCHEMA_VERSION
    assert db.query("SELECT count(*) FROM sqlite_master WHERE name = 'half'")[0][0] == 0
    db.close()


def test_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    path.write_bytes(b"not sqlite" * 100)
    with pytest.raises(StoreError, match="unreadable"):
        StateDB.open(path)


def test_intent_moves_from_pending_to_sent_to_done_with_its_transaction(db: StateDB) -> None:
    log = IntentLog(db)
    intent = log.create("withdraw", b"\x80")
    assert (intent.status, intent.tx_hash, intent.attempts, intent.open) == (
        "pending", None, 0, True,
    )  # fmt: skip
    sent = log.mark_sent(intent.id, b"\x81", b"\x11" * 32, 7, b"raw")
    assert (sent.status, sent.args, sent.tx_hash, sent.tx_nonce, sent.raw_tx, sent.attempts) == (
        "sent", b"\x81", b"\x11" * 32, 7, b"raw", 1,
    )  # fmt: skip
    assert log.open_intents() == [sent]
    done = log.finish(intent.id, "done", result={"amount": 2**200, "skipped": 0})
    assert done.result == {"amount": 2**200, "skipped": 0}
    assert not done.open
    assert log.open_intents() == []
    with pytest.raises(StoreError, match=f"no intent with id {intent.id + 1}"):
        log.get(intent.id + 1)


def test_unknown_intent_status_is_refused_by_the_schema(db: StateDB) -> None:
    with pytest.raises(sqlite3.IntegrityError), db.transaction() as conn:
        conn.execute(
            "INSERT INTO intents (kind, args, status, created, updated) "
            "VALUES ('withdraw', x'80', 'maybe', 0, 0)"
        )


def test_transaction_rolls_back_on_error(db: StateDB) -> None:
    def insert_then_fail() -> None:
        with db.transaction() as conn:
            conn.execute(
                "INSERT INTO intents (kind, args, status, created, updated) "
                "VALUES ('withdraw', x'80', 'pending', 0, 0)"
            )
            raise RuntimeError("crash inside")

    with pytest.raises(RuntimeError):
        insert_then_fail()
    assert IntentLog(db).all() == []


def test_a_transaction_inside_another_commits_or_rolls_back_with_it(db: StateDB) -> None:
    insert = (
        "INSERT INTO intents (kind, args, status, created, updated) "
        "VALUES ('withdraw', x'80', 'pending', 0, 0)"
    )

    def inner_then_fail() -> None:
        with db.transaction():
            with db.transaction() as conn:
                conn.execute(insert)
            raise RuntimeError("crash after the inner transaction")

    with pytest.raises(RuntimeError):
        inner_then_fail()
    assert IntentLog(db).all() == []
    with db.transaction():
        for _ in range(2):
            with db.transaction() as conn:
                conn.execute(insert)
    assert len(IntentLog(db).all()) == 2


def test_receipts_resume_from_the_latest_and_a_second_receipt_for_a_seq_is_refused(
    records: Records,
) -> None:
    lease = _lease()
    records.save_lease(lease)
    chain = ReceiptChain(PROVIDER, DOMAIN, lease)
    first = chain.append(1_600, 1_200)
    second = chain.append(2_200, 2_400)
    for signed in (first, second, second):
        records.save_receipt(signed)
    assert records.receipts(lease.id) == [first, second]
    assert records.latest_receipt(lease.id) == second

    resumed = ReceiptChain(PROVIDER, DOMAIN, lease, head=records.latest_receipt(lease.id))
    assert resumed.next_seq == 2
    rival = ReceiptChain(PROVIDER, DOMAIN, lease, head=first).append(2_200, 2_000)
    with pytest.raises(StoreError, match="would be equivocation"):
        records.save_receipt(rival)
    assert records.latest_receipt(lease.id) == second


def test_vouchers_are_checked_kept_and_the_largest_is_claimable(records: Records) -> None:
    lease = _lease()
    records.save_lease(lease)
    small = LAB.sign(DOMAIN, Voucher(lease.id, 300))
    big = LAB.sign(DOMAIN, Voucher(lease.id, 2**70))  # above 63 bits and above the escrow
    assert records.save_voucher(big)
    assert records.save_voucher(small)
    assert not records.save_voucher(small)
    assert records.best_voucher(lease.id) == big
    assert records.claimable() == [(lease, big)]
    records.record_paid(lease.id, lease.escrow)
    records.record_paid(lease.id, 5)  # a stale read never lowers what was seen paid
    assert records.paid(lease.id) == lease.escrow
    assert records.claimable() == []


def test_voucher_signed_in_eip2098_compact_form_is_checked_and_kept(records: Records) -> None:
    lease = _lease()
    records.save_lease(lease)
    full = LAB.sign(DOMAIN, Voucher(lease.id, 300))
    compact = Signed(full.message, to_compact(full.signature))
    assert len(compact.signature) == 64
    assert records.save_voucher(compact)
    assert records.best_voucher(lease.id) == compact
    forged = Signed(full.message, to_compact(LAB_KEYS[1].sign(DOMAIN, full.message).signature))
    with pytest.raises(InvalidSignature) as info:
        records.save_voucher(forged)
    assert (info.value.expected, info.value.recovered) == (LAB.address, LAB_KEYS[1].address)


def test_voucher_from_someone_other_than_the_lab_is_not_stored(records: Records) -> None:
    lease = _lease()
    records.save_lease(lease)
    forged = LAB_KEYS[1].sign(DOMAIN, Voucher(lease.id, 300))
    with pytest.raises(InvalidSignature):
        records.save_voucher(forged)
    assert records.best_voucher(lease.id) is None


def test_voucher_signed_by_the_voucher_key_the_bid_named_is_stored(records: Records) -> None:
    voucher_key = LAB_KEYS[2]
    lease = dataclasses.replace(_lease(), voucher_signer=voucher_key.address)
    assert lease.voucher_key == voucher_key.address
    records.save_lease(lease)
    signed = voucher_key.sign(DOMAIN, Voucher(lease.id, 300))
    assert records.save_voucher(signed)
    assert records.claimable() == [(lease, signed)]


def test_voucher_by_the_labs_own_key_is_refused_when_the_bid_named_another(
    records: Records,
) -> None:
    voucher_key = LAB_KEYS[2]
    lease = dataclasses.replace(_lease(), voucher_signer=voucher_key.address)
    records.save_lease(lease)
    own = LAB.sign(DOMAIN, Voucher(lease.id, 300))  # the lab's key: claim would refuse it
    with pytest.raises(InvalidSignature) as info:
        records.save_voucher(own)
    assert (info.value.expected, info.value.recovered) == (voucher_key.address, LAB.address)
    assert records.best_voucher(lease.id) is None
    assert records.claimable() == []


def test_voucher_for_an_unknown_lease_is_refused(records: Records) -> None:
    with pytest.raises(StoreError, match="unknown lease"):
        records.save_voucher(LAB.sign(DOMAIN, Voucher(_lease().id, 300)))


def test_closed_leases_leave_the_open_list(records: Records) -> None:
    a, b = _lease(1), _lease(2)
    for lease in (a, b, a):
        records.save_lease(lease)
    records.mark_closed(a.id)
    assert records.open_leases() == [b]
    assert records.lease(a.id) == a


def test_records_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    lease = _lease()
    db = StateDB.open(path)
    Records(db, DOMAIN).save_lease(lease)
    receipt = ReceiptChain(PROVIDER, DOMAIN, lease).append(1_600, 600)
    Records(db, DOMAIN).save_receipt(receipt)
    db.close()
    again = StateDB.open(path)
    assert Records(again, DOMAIN).latest_receipt(lease.id) == receipt
    again.close()
