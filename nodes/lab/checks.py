"""Checking a job's output as it arrives, period by period, per job kind.

The output of a lease is one stream: the chunks of every period, in seq order (a matmul product
or a line of a command's output may straddle two periods). A check is fed each period's output
once its receipt verified, *before* the lab pays for it, and told when the job has finished:

* ``matmul``: every product completed in the period is known by index ``k``; a sample of them,
  drawn from the receipt's hash and the lease's audit secret (:mod:`market.receipts.sampling`,
  fixed only once the provider signed), is checked with Freivalds' algorithm
  (:func:`nodes.jobs.matmul.check_product`). More bytes than ``rounds`` products is a failure;
  at the finish, exactly ``rounds`` products must have arrived.
* ``train``: each checkpoint completed in the period is known by segment index ``k``; a sample
  of them, drawn as for matmul, is re-executed from the checkpoint before it
  (:func:`nodes.jobs.train.run_segment`) and must come out byte for byte. A provider that fakes a
  fraction ``f`` of the segments passes a period's ``s`` samples with probability at most
  ``(1 - f) ** s``. As for matmul, the finish needs all ``segments`` checkpoints.
* ``command``: the lab runs the argv itself alongside the provider (:class:`CommandRerun`,
  ``python`` as ``argv[0]`` meaning this interpreter, stopped at the lease's end like the
  provider's run) and compares as both go: each period's output must be the rerun's next bytes;
  a period the rerun has not reached yet waits (:class:`NotYetCheckable`, nothing paid for it
  meanwhile); at the finish the whole of a completed rerun's output must have arrived.

A period's output is fed whole, or, streamed, in pieces of at most
:data:`~nodes.lab.outputs.FEED_BYTES` (each piece is then sampled as a period would be). After a
restart a check resumes from the output already accepted (:class:`StoredOutput`: its size and
its last bytes, read from disk, never the whole of it).

A failed check raises :class:`OutputCheckFailed` naming the receipt ``seq``, the byte offset in
the stream and why: stop paying, terminate.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from market.errors import AuditError
from market.receipts.sampling import audit_seed, sample_indices
from nodes.daemon.guard import die_with_parent
from nodes.errors import NodeError
from nodes.jobs.matmul import check_product
from nodes.jobs.spec import JobSpec, MatmulParams, TrainParams
from nodes.jobs.train import run_segment


class OutputCheckFailed(AuditError):
    """The output of receipt ``seq`` is wrong at byte ``offset`` of the job's stream."""

    def __init__(self, seq: int, offset: int, reason: str) -> None:
        self.seq = seq
        self.offset = offset
        self.reason = reason
        super().__init__(
            f"receipt {seq}: output at byte {offset} {reason}; stop paying and terminate"
        )


class StoredOutput(Protocol):
    """The output accepted so far, as a check resuming needs it."""

    @property
    def size(self) -> int: ...

    def tail(self, n: int) -> bytes:
        """The last ``n`` bytes (all of them when there are fewer)."""
        ...


class BytesOutput:
    """A :class:`StoredOutput` held in memory."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    @property
    def size(self) -> int:
        return len(self.data)

    def tail(self, n: int) -> bytes:
        return self.data[max(0, len(self.data) - n) :]


class OutputCheck(Protocol):
    received: int

    @property
    def complete(self) -> bool:
        """Whether the whole output the job should produce has arrived."""
        ...

    def resume(self, output: StoredOutput) -> None:
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

    def resume(self, output: StoredOutput) -> None:
        size = self.params.product_bytes
        self.received = output.size
        self._partial = output.tail(output.size % size) if output.size % size else b""

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


class TrainCheck:
    """Re-execution of a sample of each period's completed training segments."""

    def __init__(self, params: TrainParams, audit_secret: bytes, samples: int) -> None:
        if samples < 1:
            raise ValueError(f"re-execute at least one segment per period, got {samples}")
        self.params = params
        self.audit_secret = audit_secret
        self.samples = samples
        self.received = 0
        self.checked: list[int] = []
        self._partial = b""  # the bytes of the checkpoint being received
        self._previous: bytes | None = None  # the last complete checkpoint before _partial

    @property
    def total(self) -> int:
        return self.params.segments * self.params.record_bytes

    @property
    def complete(self) -> bool:
        return self.received == self.total

    def resume(self, output: StoredOutput) -> None:
        size = self.params.record_bytes
        self.received = output.size
        done, rest = divmod(output.size, size)
        last = output.tail(size + rest) if done else b""
        self._partial = last[len(last) - rest :] if done else output.tail(rest)
        self._previous = last[:size] if done else None

    def feed(self, seq: int, receipt_hash: bytes, data: bytes) -> None:
        if self.received + len(data) > self.total:
            raise OutputCheckFailed(
                seq, self.total, f"runs past the {self.params.segments} segments the job makes"
            )
        size = self.params.record_bytes
        first = self.received // size  # the segment that data starts in (or continues)
        stream = self._partial + data
        done = len(stream) // size
        self.received += len(data)
        previous = self._previous
        self._partial = stream[done * size :]
        if done == 0:
            return
        self._previous = stream[(done - 1) * size : done * size]
        picks = sample_indices(audit_seed(receipt_hash, self.audit_secret), done, self.samples)
        for i in sorted(picks):
            k = first + i
            before = previous if i == 0 else stream[(i - 1) * size : i * size]
            if k > 0 and before is None:  # cannot happen: the stream is fed in order
                raise OutputCheckFailed(seq, k * size, f"segment {k} has no checkpoint before it")
            try:
                expected = run_segment(self.params, k, before if k > 0 else None)
            except ValueError as exc:
                raise OutputCheckFailed(
                    seq, (k - 1) * size, f"is not a checkpoint ({exc})"
                ) from exc
            if stream[i * size : (i + 1) * size] != expected:
                raise OutputCheckFailed(seq, k * size, f"is not segment {k} (re-executed)")
            self.checked.append(k)

    def finish(self, seq: int) -> None:
        if not self.complete:
            raise OutputCheckFailed(
                seq, self.received, f"ends early: {self.total} bytes expected "
                f"({self.params.segments} segments)",
            )  # fmt: skip


class NotYetCheckable(NodeError):
    """The lab's own rerun has not produced this far yet: check the period again later (not a
    failure, and nothing is paid for it until then)."""


class CommandRerun:
    """The lab's own run of a command job, started when the lease is followed and read as it
    writes, so periods are checked as soon as the rerun gets as far as the provider did. It is
    stopped after ``limit_s`` (the lease's duration and a grace): the provider's run stops at the
    lease's end too, so what both wrote by then is what must agree."""

    def __init__(self, argv: Sequence[str], path: Path, limit_s: float) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.deadline = time.monotonic() + limit_s
        with path.open("wb") as out:
            self.proc = subprocess.Popen(
                local_argv(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=die_with_parent,  # never outlives a killed lab
            )
        self.cut = False  # stopped at the deadline, before it exited by itself

    def output(self) -> bytes:
        return self.path.read_bytes()

    def size(self) -> int:
        return self.path.stat().st_size

    def read(self, start: int, n: int) -> bytes:
        """Up to ``n`` bytes of its output from ``start`` (fewer where it has not got to)."""
        with self.path.open("rb") as f:
            f.seek(start)
            return f.read(n)

    @property
    def done(self) -> bool:
        if self.proc.poll() is not None:
            return True
        if time.monotonic() >= self.deadline:
            self.stop()
            self.cut = True
            return True
        return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


class CommandCheck:
    """The output must be what running the command here gives, byte for byte, as far as both
    runs got (a run cut at the lease's end is a prefix of the whole)."""

    def __init__(self, rerun: CommandRerun) -> None:
        self.rerun = rerun
        self.received = 0

    @property
    def complete(self) -> bool:
        return self.rerun.done and self.received >= self.rerun.size()

    def resume(self, output: StoredOutput) -> None:
        self.received = output.size  # stored output was checked before it was stored

    def feed(self, seq: int, receipt_hash: bytes, data: bytes) -> None:
        start = self.received
        done = self.rerun.done  # read before the output: a finished rerun's output is final
        want = self.rerun.read(start, len(data))
        if want != data[: len(want)]:
            at = next(i for i, (x, y) in enumerate(zip(want, data, strict=False)) if x != y)
            raise OutputCheckFailed(seq, start + at, "differs from the rerun")
        if len(want) < len(data):
            if not done:
                raise NotYetCheckable(f"receipt {seq}: the rerun is at byte {start + len(want)}")
            if not self.rerun.cut:
                raise OutputCheckFailed(seq, start + len(want), "runs past the expected output")
        self.received += len(data)

    def finish(self, seq: int) -> None:
        if not self.rerun.done:
            raise NotYetCheckable(f"receipt {seq}: the rerun is still running")
        expected = self.rerun.size()
        if not self.rerun.cut and self.received < expected:
            raise OutputCheckFailed(
                seq, self.received, f"ends early: the rerun wrote {expected} bytes"
            )


def local_argv(argv: Sequence[str]) -> list[str]:
    """The argv to run here: ``python`` as ``argv[0]`` is this interpreter, as on the provider."""
    args = list(argv)
    if args and args[0] == "python":
        args[0] = sys.executable
    return args


def make_check(
    spec: JobSpec, audit_secret: bytes, samples: int, rerun: CommandRerun | None = None
) -> OutputCheck:
    """The check for ``spec``'s kind; a command check compares with the lab's ``rerun``."""
    if isinstance(spec.params, MatmulParams):
        return MatmulCheck(spec.params, audit_secret, samples)
    if isinstance(spec.params, TrainParams):
        return TrainCheck(spec.params, audit_secret, samples)
    if rerun is None:
        raise ValueError("a command check needs the lab's rerun of the command")
    return CommandCheck(rerun)


__all__ = [
    "BytesOutput",
    "CommandCheck",
    "MatmulCheck",
    "OutputCheck",
    "OutputCheckFailed",
    "CommandRerun",
    "NotYetCheckable",
    "StoredOutput",
    "TrainCheck",
    "local_argv",
    "make_check",
]
