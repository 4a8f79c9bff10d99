"""Output checks: matmul products by Freivalds on a sample fixed by the receipt, commands by
comparing with the lab's own run, both across period boundaries and restarts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from market.receipts.sampling import audit_seed, sample_indices
from nodes.jobs.matmul import product
from nodes.jobs.spec import CommandParams, JobSpec, MatmulParams
from nodes.lab.checks import (
    BytesOutput,
    CommandCheck,
    CommandRerun,
    MatmulCheck,
    NotYetCheckable,
    OutputCheckFailed,
    local_argv,
    make_check,
)
from tests.waiting import wait_until

pytestmark = pytest.mark.unit

PARAMS = MatmulParams(n=4, seed=7, rounds=3)
SECRET = b"s" * 32
SIZE = PARAMS.product_bytes
STREAM = b"".join(product(PARAMS.seed, k, PARAMS.n) for k in range(PARAMS.rounds))


def _tampered(k: int) -> bytes:
    out = bytearray(STREAM)
    out[k * SIZE] ^= 1
    return bytes(out)


def test_products_straddling_periods_are_all_checked_and_complete() -> None:
    check = MatmulCheck(PARAMS, SECRET, samples=10)
    cut = SIZE + SIZE // 2  # period 0 ends inside product 1
    check.feed(0, b"\x01" * 32, STREAM[:cut])
    assert check.checked == [0]
    assert check.received == cut  # not complete yet
    check.feed(1, b"\x02" * 32, STREAM[cut:])
    assert check.checked == [0, 1, 2]
    assert check.complete
    check.finish(1)


def test_wrong_product_fails_naming_its_seq_and_offset() -> None:
    check = MatmulCheck(PARAMS, SECRET, samples=10)
    check.feed(0, b"\x01" * 32, STREAM[:SIZE])
    with pytest.raises(OutputCheckFailed, match="is not product 1") as info:
        check.feed(1, b"\x02" * 32, _tampered(1)[SIZE:])
    assert (info.value.seq, info.value.offset) == (1, SIZE)


def test_only_the_sample_fixed_by_the_receipt_hash_is_checked() -> None:
    digest = b"\x05" * 32
    [picked] = sample_indices(audit_seed(digest, SECRET), PARAMS.rounds, 1)
    unpicked = next(k for k in range(PARAMS.rounds) if k != picked)
    MatmulCheck(PARAMS, SECRET, samples=1).feed(0, digest, _tampered(unpicked))
    with pytest.raises(OutputCheckFailed, match=f"is not product {picked}"):
        MatmulCheck(PARAMS, SECRET, samples=1).feed(0, digest, _tampered(picked))


def test_output_past_the_last_product_fails() -> None:
    check = MatmulCheck(PARAMS, SECRET, samples=10)
    with pytest.raises(OutputCheckFailed, match="runs past the 3 products") as info:
        check.feed(0, b"\x01" * 32, STREAM + b"x")
    assert info.value.offset == len(STREAM)


def test_finish_before_every_product_arrived_fails() -> None:
    check = MatmulCheck(PARAMS, SECRET, samples=10)
    check.feed(0, b"\x01" * 32, STREAM[: 2 * SIZE])
    with pytest.raises(OutputCheckFailed, match="ends early") as info:
        check.finish(0)
    assert info.value.offset == 2 * SIZE


def test_matmul_check_resumes_mid_product_after_a_restart() -> None:
    check = MatmulCheck(PARAMS, SECRET, samples=10)
    check.resume(BytesOutput(STREAM[: SIZE + 5]))
    check.feed(3, b"\x01" * 32, STREAM[SIZE + 5 :])
    assert check.checked == [1, 2]
    assert check.complete


def _rerun(tmp_path: Path, script: str, limit_s: float = 30.0) -> CommandRerun:
    return CommandRerun(["python", "-c", script], tmp_path / "rerun", limit_s)


def _finished(rerun: CommandRerun) -> CommandRerun:
    wait_until(lambda: rerun.done, 30, "the rerun to exit")
    return rerun


PRINT = "import sys; sys.stdout.write({!r})"
# Writes "ab", then waits for the file named by argv... (here: a fixed path) before writing "c".
GATED = (
    "import os, sys, time\n"
    "sys.stdout.write('ab'); sys.stdout.flush()\n"
    "while not os.path.exists({gate!r}): time.sleep(0.01)\n"
    "sys.stdout.write('c')\n"
)


def test_command_output_must_be_the_reruns_bytes(tmp_path: Path) -> None:
    check = CommandCheck(_finished(_rerun(tmp_path, PRINT.format("hello\nworld\n"))))
    check.feed(0, b"", b"hel")
    check.feed(1, b"", b"lo\n")
    with pytest.raises(OutputCheckFailed, match="differs from the rerun") as info:
        check.feed(2, b"", b"wOrld\n")
    assert (info.value.seq, info.value.offset) == (2, 7)


def test_command_output_longer_than_a_completed_rerun_fails(tmp_path: Path) -> None:
    check = CommandCheck(_finished(_rerun(tmp_path, PRINT.format("ok\n"))))
    with pytest.raises(OutputCheckFailed, match="runs past") as info:
        check.feed(0, b"", b"ok\nmore")
    assert info.value.offset == 3


def test_a_period_ahead_of_the_rerun_waits_and_passes_once_it_catches_up(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    rerun = _rerun(tmp_path, GATED.format(gate=str(gate)))
    check = CommandCheck(rerun)
    wait_until(lambda: rerun.output() == b"ab", 30, "the rerun's first bytes")
    check.feed(0, b"", b"ab")
    with pytest.raises(NotYetCheckable):
        check.feed(1, b"", b"c")
    assert check.received == 2  # nothing taken for the period that waits
    with pytest.raises(NotYetCheckable):
        check.finish(1)
    gate.touch()
    wait_until(lambda: rerun.done, 30, "the rerun to finish")
    check.feed(1, b"", b"c")
    assert check.complete
    check.finish(1)


def test_a_rerun_cut_at_its_limit_checks_what_it_wrote_and_no_further(tmp_path: Path) -> None:
    rerun = _rerun(tmp_path, GATED.format(gate=str(tmp_path / "never")), limit_s=0.5)
    check = CommandCheck(rerun)
    wait_until(lambda: rerun.done, 30, "the rerun to be cut at its limit")
    assert rerun.cut
    with pytest.raises(OutputCheckFailed, match="differs"):
        CommandCheck(rerun).feed(0, b"", b"aX")
    check.feed(0, b"", b"abcdef")  # past what the rerun wrote by its limit: not checkable
    check.finish(0)


def test_command_check_completes_only_with_the_whole_output(tmp_path: Path) -> None:
    check = CommandCheck(_finished(_rerun(tmp_path, PRINT.format("abc"))))
    check.feed(0, b"", b"ab")
    with pytest.raises(OutputCheckFailed, match="ends early"):
        check.finish(0)
    check.feed(1, b"", b"c")
    assert check.complete
    check.finish(1)


def test_command_check_resumes_from_the_stored_output(tmp_path: Path) -> None:
    check = CommandCheck(_finished(_rerun(tmp_path, PRINT.format("abc"))))
    check.resume(BytesOutput(b"ab"))  # checked before it was stored
    assert check.received == 2
    check.feed(1, b"", b"c")
    assert check.complete


def test_python_as_argv0_is_this_interpreter() -> None:
    assert local_argv(["python", "-c", "1"]) == [sys.executable, "-c", "1"]
    assert local_argv(["/bin/echo", "python"]) == ["/bin/echo", "python"]


def test_make_check_picks_the_kind_and_needs_the_rerun_for_commands(tmp_path: Path) -> None:
    assert isinstance(make_check(JobSpec(bytes(32), PARAMS), SECRET, 4), MatmulCheck)
    command = JobSpec(bytes(32), CommandParams(("true",)))
    rerun = _rerun(tmp_path, PRINT.format(""))
    assert isinstance(make_check(command, SECRET, 4, rerun), CommandCheck)
    with pytest.raises(ValueError, match="rerun"):
        make_check(command, SECRET, 4)
    rerun.stop()
