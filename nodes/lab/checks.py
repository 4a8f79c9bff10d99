"""Checking a job's output as it arrives, period by period, per job kind.

The output of a lease is one stream: the chunks of every period, in seq order (a matmul product
or a line of a command's output may straddle two periods). A check is fed each period's output
once its receipt verified, *before* the lab pays for it, and told when the job has finished:

* ``matmul``: every product completed in the period is known by index ``k``; a sample of them,
  drawn from the receipt's hash and the lease's audit secret (:mod:`market.receipts.sampling`,
  fixed only once the provider signed), is checked with Freivalds' algorithm
  (:func:`nodes.jobs.matmul.check_product`). More bytes than ``rounds`` products is a failure;
  at the finish, exactly ``rounds`` products must have arrived.
* ``command``: the lab runs the argv itself (:func:`expected_command_output`, ``python`` as
  ``argv[0]`` meaning this interpreter) and compares: each period's output must extend a prefix
  of the expected output, and at the finish the whole of it must have arrived.

A failed check raises :class:`OutputCheckFailed` naming the receipt ``seq``, the byte offset in
the stream and why: stop paying, terminate.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from typing import Protocol

from market.errors import AuditError
from market.receipts.sampling import audit_seed, sample_indices
from nodes.jobs.matmul import check_product
from nodes.jobs.spec import CommandParams, JobSpec, MatmulParams


class OutputCheckFailed(AuditError):
    """The output of receipt ``seq`` is wrong at byte ``offset`` of the job's stream."""

    def __init__(self, seq: int, offset: int, reason: str) -> None:
        self.seq = seq
        self.offset = offset
        self.reason = reason
        super().__init__(
            f"receipt {seq}: output at byte {offset} {reason}; stop paying and terminate"
        )


class OutputCheck(Protocol):
    received: int

    @property
    def complete(self) -> bool:
        """Whether the whole output the job should produce has arrived."""
        ...

    def resume(self, output: bytes) -> None:
        """Continue after a restart from the output already accepted (checked before)."""
        ...

    def feed(self, seq: int, receipt_hash: bytes, data: bytes) -> None:
        """Check period ``seq``'s output; raises OutputCheckFailed."""
        ...

    def finish(self, seq: int) -> None:
        """The job reports it finished after receipt ``seq``: raise unless it is complete."""
        ...


class MatmulCheck:
    """Freivalds on a sample of each period's completed products."""

    def __init__(self, params: MatmulParams, audit_secret: bytes, samples: int) -> None:
        if samples < 1:
            raise ValueError(f"check at least one product per period, got {samples}")
        self.params = params
        self.audit_secret = audit_secret
        self.samples = samples
        self.received = 0
        self.checked: list[int] = []
        self._partial = b""  # the bytes of the product being received

    @property
    def total(self) -> int:
        return self.params.rounds * self.params.product_bytes

    @property
    def complete(self) -> bool:
        return self.received == self.total

    def resume(self, output: bytes) -> None:
        size = self.params.product_bytes
        self.received = len(output)
        self._partial = output[len(output) - len(output) % size :]

    def feed(self, seq: int, receipt_hash: bytes, data: bytes) -> None:
        if self.received + len(data) > self.total:
            raise OutputCheckFailed(
                seq, self.total, f"runs past the {self.params.rounds} products the job makes"
            )
        size = self.params.product_bytes
        first = self.received // size  # the product that data starts in (or continues)
        stream = self._partial + data
        done = len(stream) // size
        self.received += len(data)
        self._partial = stream[done * size :]
        if done == 0:
            return
        picks = sample_indices(audit_seed(receipt_hash, self.audit_secret), done, self.samples)
        for i in sorted(picks):
            k = first + i
            product = stream[i * size : (i + 1) * size]
            if not check_product(self.params.seed, k, self.params.n, product):
                raise OutputCheckFailed(seq, k * size, f"is not product {k} (Freivalds)")
            self.checked.append(k)

    def finish(self, seq: int) -> None:
        if not self.complete:
            raise OutputCheckFailed(
                seq, self.received, f"ends early: {self.total} bytes expected ({self.params.rounds}"
                " products)",
            )  # fmt: skip


class CommandCheck:
    """The output must be what running the command here gives, byte for byte."""

    def __init__(self, expected: bytes) -> None:
        self.expected = expected
        self.received = 0

    @property
    def complete(self) -> bool:
        return self.received == len(self.expected)

    def resume(self, output: bytes) -> None:
        self.received = 0
        self.feed(-1, b"", output)

    def feed(self, seq: int, receipt_hash: bytes, data: bytes) -> None:
        start = self.received
        want = self.expected[start : start + len(data)]
        if want != data:
            at = next(
                (i for i, (x, y) in enumerate(zip(want, data, strict=False)) if x != y), len(want)
            )
            why = "runs past the expected output" if at == len(want) else "differs from the rerun"
            raise OutputCheckFailed(seq, start + at, why)
        self.received += len(data)

    def finish(self, seq: int) -> None:
        if not self.complete:
            raise OutputCheckFailed(
                seq, self.received, f"ends early: the rerun wrote {len(self.expected)} bytes"
            )


def local_argv(argv: Sequence[str]) -> list[str]:
    """The argv to run here: ``python`` as ``argv[0]`` is this interpreter, as on the provider."""
    args = list(argv)
    if args and args[0] == "python":
        args[0] = sys.executable
    return args


def expected_command_output(params: CommandParams, timeout_s: float) -> bytes:
    """Run the command here and return its stdout (blocking; call it off the event loop)."""
    done = subprocess.run(
        local_argv(params.argv),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout_s,
        check=False,
    )
    return done.stdout


def make_check(
    spec: JobSpec, audit_secret: bytes, samples: int, expected: bytes | None = None
) -> OutputCheck:
    """The check for ``spec``'s kind; a command check needs the rerun's ``expected`` output."""
    if isinstance(spec.params, MatmulParams):
        return MatmulCheck(spec.params, audit_secret, samples)
    if expected is None:
        raise ValueError("a command check needs the expected output (expected_command_output)")
    return CommandCheck(expected)


__all__ = [
    "CommandCheck",
    "MatmulCheck",
    "OutputCheck",
    "OutputCheckFailed",
    "expected_command_output",
    "local_argv",
    "make_check",
]
