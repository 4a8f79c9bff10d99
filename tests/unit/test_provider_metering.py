"""Metering: reserved time (rental) or busy seconds (metered) into GPU-seconds, receipts a lab
accepts, stored before use, resumable."""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market.protocol.keccak import keccak
from market.protocol.types import Billing, Lease
from market.receipts import ReceiptVerifier, output_root, reserved_gpu_seconds
from nodes.provider import Meter, OutputTail
from nodes.state import Records, StateDB
from tests.unit.order_factory import DOMAIN, LAB_KEYS, PROVIDER_KEYS

pytestmark = pytest.mark.unit

PROVIDER = PROVIDER_KEYS[0]
START = 10_000
LEASE = Lease(
    PROVIDER.address, LAB_KEYS[0].address, 4, 3, START, 3_600, b"\x07" * 32, Billing.METERED
)
RENTAL = dataclasses.replace(LEASE, billing=Billing.RENTAL, salt=b"\x08" * 32)


@pytest.fixture
def records(tmp_path: Path) -> Iterator[Records]:
    db = StateDB.open(tmp_path / "state.sqlite")
    yield Records(db, DOMAIN)
    db.close()


# --- metered: busy time ------------------------------------------------------------------------


def test_busy_seconds_times_gpus_become_cumulative_gpu_seconds(records: Records) -> None:
    meter = Meter.resume(records, PROVIDER, DOMAIN, LEASE)
    first = meter.close_period(START + 60, busy_s=50.0)
    second = meter.close_period(START + 120, busy_s=60.0)
    assert first.receipt.message.gpu_seconds_cumulative == 200
    assert second.receipt.message.gpu_seconds_cumulative == 440
    assert (second.receipt.message.seq, second.receipt.message.period_start) == (1, START + 60)


def test_fractions_of_a_second_carry_over_instead_of_being_lost(records: Records) -> None:
    meter = Meter.resume(records, PROVIDER, DOMAIN, LEASE)
    usage = [meter.close_period(START + 60 * (i + 1), busy_s=0.1).receipt for i in range(10)]
    assert [r.message.gpu_seconds_cumulative for r in usage] == [0, 0, 1, 1, 2, 2, 2, 3, 3, 4]


def test_usage_is_capped_at_what_the_gpus_could_do_by_the_period_end(records: Records) -> None:
    meter = Meter.resume(records, PROVIDER, DOMAIN, LEASE)
    # The host clock ran ahead of the chain's: 90 busy seconds in a 60-second period.
    capped = meter.close_period(START + 60, busy_s=90.0)
    assert capped.receipt.message.gpu_seconds_cumulative == 4 * 60
    after = meter.close_period(START + 120, busy_s=30.0)
    assert after.receipt.message.gpu_seconds_cumulative == 4 * 60 + 120


# --- rental: reserved time ----------------------------------------------------------------------


def test_rental_bills_the_reserved_time_whatever_ran(records: Records) -> None:
    meter = Meter.resume(records, PROVIDER, DOMAIN, RENTAL)
    first = meter.close_period(START + 60, busy_s=5.0)  # the job ran 5 s of the 60
    idle = meter.close_period(START + 120, busy_s=0.0)  # it finished: the GPUs are still held
    assert first.receipt.message.gpu_seconds_cumulative == 4 * 60
    assert idle.receipt.message.gpu_seconds_cumulative == 4 * 120
    assert msgpack.unpackb(idle.metrics)["busyMs"] == 0  # the metrics still say what ran


def test_rental_stops_at_the_termination_the_scheduled_end_and_the_chain_time(
    records: Records,
) -> None:
    meter = Meter.resume(records, PROVIDER, DOMAIN, RENTAL)
    assert meter.period_end(START + 90) == START + 90  # the chain's clock
    assert meter.period_end(START + 90, end=START + 75) == START + 75  # terminated at 75
    assert meter.period_end(START + 9_000) == RENTAL.end  # never past the scheduled end
    last = meter.close_period(START + 90, busy_s=90.0, end=START + 75)
    assert (last.receipt.message.period_end, last.receipt.message.gpu_seconds_cumulative) == (
        START + 75,
        4 * 75,
    )
    lab = ReceiptVerifier(DOMAIN, RENTAL, lease_end=START + 75)
    lab.accept(last.receipt, [])  # the lab, knowing the termination, accepts it


def test_rental_receipts_are_what_the_lab_accepts_up_to_the_end(records: Records) -> None:
    meter = Meter.resume(records, PROVIDER, DOMAIN, RENTAL)
    lab = ReceiptVerifier(DOMAIN, RENTAL)
    for t in (600, 1_800, 5_000):  # the last closes past the end: it ends at the end
        period = meter.close_period(START + t, busy_s=1.0)
        lab.accept(period.receipt, list(period.chunks))
    head = records.latest_receipt(RENTAL.id)
    assert head is not None
    assert head.message.gpu_seconds_cumulative == 4 * 3_600 == RENTAL.gpus * RENTAL.duration


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.integers(1, 900), st.floats(0, 2_000, allow_nan=False)), max_size=12
    ),
    terminated=st.one_of(st.none(), st.integers(1, 3_600)),
)
def test_rental_usage_never_exceeds_gpus_times_elapsed_and_never_decreases(
    steps: list[tuple[int, float]], terminated: int | None
) -> None:
    end = None if terminated is None else START + terminated
    with tempfile.TemporaryDirectory() as folder:
        db = StateDB.open(Path(folder) / "state.sqlite")
        try:
            meter = Meter.resume(Records(db, DOMAIN), PROVIDER, DOMAIN, RENTAL)
            lab = ReceiptVerifier(DOMAIN, RENTAL, lease_end=end)
            now, before = START, 0
            for advance, busy in steps:
                now += advance
                period_end = meter.period_end(now, end)
                if period_end <= meter.chain.next_period_start:
                    continue  # receipted up to the end already: nothing more to sign
                signed = meter.close_period(now, busy, end=end).receipt
                lab.accept(signed)  # and the lab, knowing the termination, accepts it
                receipt = signed.message
                used = receipt.gpu_seconds_cumulative
                elapsed = receipt.period_end - RENTAL.start
                assert used <= RENTAL.gpus * elapsed  # the impossible-usage bound
                assert used == reserved_gpu_seconds(RENTAL, now, end)  # exactly the reserved
                assert used >= before  # monotonic
                before = used
        finally:
            db.close()


# --- both ---------------------------------------------------------------------------------------


def test_outputs_are_committed_chunk_by_chunk_and_metrics_by_hash(records: Records) -> None:
    meter = Meter.resume(records, PROVIDER, DOMAIN, LEASE)
    meter.chunk_size = 4
    period = meter.close_period(START + 60, busy_s=10.0, output=b"0123456789")
    assert period.chunks == (b"0123", b"4567", b"89")
    assert period.receipt.message.output_root == output_root(period.chunks)
    assert period.receipt.message.metrics_hash == keccak(period.metrics)
    assert msgpack.unpackb(period.metrics) == {"busyMs": 10_000, "gpus": 4, "outputBytes": 10}


def test_every_receipt_is_stored_before_it_is_returned_and_a_lab_accepts_it(
    records: Records,
) -> None:
    meter = Meter.resume(records, PROVIDER, DOMAIN, LEASE)
    lab = ReceiptVerifier(DOMAIN, LEASE)
    for i in range(3):
        period = meter.close_period(START + 60 * (i + 1), busy_s=60.0, output=b"out%d" % i)
        assert records.latest_receipt(LEASE.id) == period.receipt
        lab.accept(period.receipt, list(period.chunks))
    assert [r.message.seq for r in records.receipts(LEASE.id)] == [0, 1, 2]


def test_meter_resumed_after_a_restart_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    db = StateDB.open(path)
    meter = Meter.resume(Records(db, DOMAIN), PROVIDER, DOMAIN, LEASE)
    first = meter.close_period(START + 60, busy_s=60.0)
    db.close()

    db = StateDB.open(path)
    resumed = Meter.resume(Records(db, DOMAIN), PROVIDER, DOMAIN, LEASE)
    assert resumed.gpu_seconds == 240
    second = resumed.close_period(START + 120, busy_s=30.0)
    db.close()
    assert second.receipt.message.seq == 1
    assert second.receipt.message.gpu_seconds_cumulative == 360
    lab = ReceiptVerifier(DOMAIN, LEASE)
    lab.accept(first.receipt, [])
    lab.accept(second.receipt, [])


def test_negative_busy_time_is_refused(records: Records) -> None:
    meter = Meter.resume(records, PROVIDER, DOMAIN, LEASE)
    with pytest.raises(ValueError, match="negative"):
        meter.close_period(START + 60, busy_s=-1.0)


def test_output_tail_reads_only_what_was_appended(tmp_path: Path) -> None:
    path = tmp_path / "stdout"
    tail = OutputTail(path)
    assert tail.read_new() == b""  # the job has not written yet
    path.write_bytes(b"abc")
    assert tail.read_new() == b"abc"
    with path.open("ab") as f:
        f.write(b"defgh")
    assert tail.read_new(limit=3) == b"def"
    assert tail.read_new() == b"gh"
    assert tail.read_new() == b""
