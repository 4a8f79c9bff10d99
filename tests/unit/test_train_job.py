"""The segmented training workload and the lab's audit of it: every segment re-executes bit for
bit from the checkpoint before it, the model learns, and a faked segment is caught exactly when
the sample fixed by the receipt picks it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from market.receipts.sampling import audit_seed, sample_indices
from nodes.jobs.spec import JobSpec, TrainParams
from nodes.jobs.train import (
    decode_record,
    encode_record,
    fake_segments,
    initial_weights,
    run_segment,
)
from nodes.lab.checks import BytesOutput, OutputCheckFailed, TrainCheck, make_check

pytestmark = pytest.mark.unit

PARAMS = TrainParams(seed=3, segments=6, steps=4, width=4)
SIZE = PARAMS.record_bytes
SECRET = b"s" * 32


def _honest(params: TrainParams) -> list[bytes]:
    records: list[bytes] = []
    for k in range(params.segments):
        records.append(run_segment(params, k, records[-1] if records else None))
    return records


RECORDS = _honest(PARAMS)
STREAM = b"".join(RECORDS)


def _job(params: TrainParams, *extra: str) -> bytes:
    args = (str(params.seed), str(params.segments), str(params.steps), str(params.width))
    done = subprocess.run(
        [sys.executable, "-m", "nodes.jobs.train", *extra, *args],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return done.stdout


def test_the_job_writes_exactly_the_checkpoints_each_segment_re_executes_to() -> None:
    assert _job(PARAMS) == STREAM
    assert len(STREAM) == PARAMS.segments * SIZE
    assert [decode_record(PARAMS, r)[0] for r in RECORDS] == list(range(PARAMS.segments))
    assert run_segment(PARAMS, 3, RECORDS[2]) == RECORDS[3]  # any segment, from the one before


def test_training_lowers_the_loss() -> None:
    params = TrainParams(seed=11, segments=30, steps=40, width=16)
    losses = [decode_record(params, r)[1] for r in _honest(params)]
    assert losses[-1] * 4 < losses[0], losses


def test_a_record_round_trips_and_a_malformed_one_is_refused() -> None:
    weights = initial_weights(PARAMS.seed, PARAMS.width)
    record = encode_record(5, 42, weights)
    k, loss, (w1, w2) = decode_record(PARAMS, record)
    assert (k, loss) == (5, 42)
    assert (w1 == weights[0]).all()
    assert (w2 == weights[1]).all()
    with pytest.raises(ValueError, match=f"a checkpoint is {SIZE} bytes"):
        run_segment(PARAMS, 1, record[:-1])


def test_skip_fakes_segments_by_repeating_the_weights() -> None:
    params = TrainParams(seed=3, segments=40, steps=2, width=4)
    faked = _job(params, "--skip", "0.5")
    honest = b"".join(_honest(params))
    assert len(faked) == len(honest)
    assert faked != honest
    records = [faked[i * SIZE : (i + 1) * SIZE] for i in range(params.segments)]
    wrong = [
        k for k in range(1, params.segments) if run_segment(params, k, records[k - 1]) != records[k]
    ]
    assert wrong == sorted(fake_segments(params, 0.5) - {0})
    assert len(fake_segments(params, 0.5)) == 20
    assert len(fake_segments(params, 0.001)) == 1  # a cheater fakes at least one segment


# --- the lab's check ---------------------------------------------------------------------------


def test_checkpoints_straddling_periods_are_all_re_executed() -> None:
    check = TrainCheck(PARAMS, SECRET, samples=10)
    cut = SIZE + SIZE // 2
    check.feed(0, b"\x01" * 32, STREAM[:cut])
    assert check.checked == [0]
    check.feed(1, b"\x02" * 32, STREAM[cut : 4 * SIZE])
    check.feed(2, b"\x03" * 32, STREAM[4 * SIZE :])
    assert check.checked == list(range(PARAMS.segments))
    assert check.complete
    check.finish(2)


def _faked(k: int) -> bytes:
    """Segment ``k`` not trained: checkpoint ``k - 1``'s weights sent again under index ``k``."""
    _, loss, weights = decode_record(PARAMS, RECORDS[k - 1])
    records = list(RECORDS)
    records[k] = encode_record(k, loss, weights)
    return b"".join(records)


def test_a_faked_segment_fails_naming_its_seq_and_offset() -> None:
    check = TrainCheck(PARAMS, SECRET, samples=10)
    check.feed(0, b"\x01" * 32, STREAM[: 2 * SIZE])
    with pytest.raises(OutputCheckFailed, match="is not segment 3") as info:
        check.feed(1, b"\x02" * 32, _faked(3)[2 * SIZE :])
    assert (info.value.seq, info.value.offset) == (1, 3 * SIZE)


def test_only_the_sample_fixed_by_the_receipt_hash_is_re_executed() -> None:
    digest = b"\x05" * 32
    [picked] = sample_indices(audit_seed(digest, SECRET), PARAMS.segments, 1)
    unpicked = next(k for k in range(1, PARAMS.segments) if k != picked)
    passing = TrainCheck(PARAMS, SECRET, samples=1)
    passing.feed(0, digest, _faked(unpicked))
    assert passing.checked == [picked]
    if picked > 0:
        with pytest.raises(OutputCheckFailed, match=f"is not segment {picked}"):
            TrainCheck(PARAMS, SECRET, samples=1).feed(0, digest, _faked(picked))


def test_output_past_the_last_segment_and_an_early_finish_fail() -> None:
    with pytest.raises(OutputCheckFailed, match="runs past the 6 segments"):
        TrainCheck(PARAMS, SECRET, samples=1).feed(0, b"\x01" * 32, STREAM + b"x")
    check = TrainCheck(PARAMS, SECRET, samples=1)
    check.feed(0, b"\x01" * 32, STREAM[: 2 * SIZE])
    with pytest.raises(OutputCheckFailed, match="ends early") as info:
        check.finish(0)
    assert info.value.offset == 2 * SIZE


def test_the_check_resumes_mid_checkpoint_after_a_restart() -> None:
    check = TrainCheck(PARAMS, SECRET, samples=10)
    check.resume(BytesOutput(STREAM[: 2 * SIZE + 7]))
    check.feed(3, b"\x01" * 32, STREAM[2 * SIZE + 7 :])
    assert check.checked == [2, 3, 4, 5]  # segment 2 from checkpoint 1, kept across the restart
    assert check.complete
    resumed = TrainCheck(PARAMS, SECRET, samples=10)
    resumed.resume(BytesOutput(_faked(2)[: 2 * SIZE + 7]))
    with pytest.raises(OutputCheckFailed, match="is not segment 2"):
        resumed.feed(3, b"\x01" * 32, _faked(2)[2 * SIZE + 7 :])


def test_make_check_gives_a_train_check_for_a_train_spec() -> None:
    check = make_check(JobSpec(b"\x07" * 32, PARAMS), SECRET, 3)
    assert isinstance(check, TrainCheck)
    assert check.total == len(STREAM)
