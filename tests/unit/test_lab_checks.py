"""Output checks: matmul products by Freivalds on a sample fixed by the receipt, commands by
comparing with the lab's own run, both across period boundaries and restarts."""

from __future__ import annotations

import sys

import pytest

from market.receipts.sampling import audit_seed, sample_indices
from nodes.jobs.matmul import product
from nodes.jobs.spec import CommandParams, JobSpec, MatmulParams
from nodes.lab.checks import (
    CommandCheck,
    MatmulCheck,
    OutputCheckFailed,
    local_argv,
    make_check,
)

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
    assert not check.complete
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
    check.resume(STREAM[: SIZE + 5])
    check.feed(3, b"\x01" * 32, STREAM[SIZE + 5 :])
    assert check.checked == [1, 2]
    assert check.complete


def test_command_output_must_extend_a_prefix_of_the_rerun() -> None:
    check = CommandCheck(b"hello\nworld\n")
    check.feed(0, b"", b"hel")
    check.feed(1, b"", b"lo\n")
    with pytest.raises(OutputCheckFailed, match="differs from the rerun") as info:
        check.feed(2, b"", b"wOrld\n")
    assert (info.value.seq, info.value.offset) == (2, 7)


def test_command_output_longer_than_the_rerun_fails() -> None:
    check = CommandCheck(b"ok\n")
    with pytest.raises(OutputCheckFailed, match="runs past") as info:
        check.feed(0, b"", b"ok\nmore")
    assert info.value.offset == 3


def test_command_check_completes_only_with_the_whole_output() -> None:
    check = CommandCheck(b"abc")
    check.feed(0, b"", b"ab")
    with pytest.raises(OutputCheckFailed, match="ends early"):
        check.finish(0)
    check.feed(1, b"", b"c")
    assert check.complete
    check.finish(1)


def test_command_check_resume_rechecks_the_stored_output() -> None:
    check = CommandCheck(b"abc")
    check.resume(b"ab")
    assert check.received == 2
    with pytest.raises(OutputCheckFailed):
        CommandCheck(b"abc").resume(b"xb")


def test_python_as_argv0_is_this_interpreter() -> None:
    assert local_argv(["python", "-c", "1"]) == [sys.executable, "-c", "1"]
    assert local_argv(["/bin/echo", "python"]) == ["/bin/echo", "python"]


def test_make_check_picks_the_kind_and_needs_the_rerun_for_commands() -> None:
    assert isinstance(make_check(JobSpec(bytes(32), PARAMS), SECRET, 4), MatmulCheck)
    command = JobSpec(bytes(32), CommandParams(("true",)))
    assert isinstance(make_check(command, SECRET, 4, b""), CommandCheck)
    with pytest.raises(ValueError, match="expected output"):
        make_check(command, SECRET, 4)
