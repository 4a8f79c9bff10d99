"""Metering: a lease's time becomes GPU-seconds per period, each period a signed receipt.

    meter = Meter.resume(records, key, domain, lease)       # continues after a restart
    tail = OutputTail(job.workdir / "stdout")
    period = meter.close_period(period_end=chain_now, busy_s=job_seconds_this_period,
                                output=tail.read_new(), end=lease_end_now)
    # or, for a large output, its chunk hashes alone (:mod:`~nodes.provider.outputs`):
    period = meter.close_period(chain_now, busy_s, streamed=StreamedOutput.of_file(...))
    send(period.receipt, period.chunks)                     # already stored: write-before-act

What a period bills is the lease's billing mode, a term both orders signed
(:class:`~market.protocol.types.Billing`):

* ``RENTAL``: the GPU time reserved to the lab, ``gpus x (period_end - lease start)`` in total
  (:func:`~market.receipts.reserved_gpu_seconds`), whether or not the job still runs: the
  receipt attests that the GPUs were held for the lab and reachable;
* ``METERED``: ``gpus x busy seconds``, the fractions carried to the next period so nothing is
  lost to rounding, and capped at what the lease's GPUs could have done by ``period_end``.

Either way a period never ends past ``end``, the lease's current end (earlier than scheduled when
the lab terminated it), nor past the chain's clock, which the caller passes as ``period_end``
(not the host's: a receipt above the reserved time would be slashable). The period's output is
cut into chunks and committed in the receipt's ``outputRoot``
(:func:`market.receipts.output_root`), or, streamed, committed from its chunk hashes alone; its
metrics (busy seconds, GPUs, bytes of output) are
msgpack, committed by ``metricsHash``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import msgpack

from market.protocol.eip712 import Domain
from market.protocol.keccak import keccak
from market.protocol.signing import SigningKey
from market.protocol.types import Billing, Lease, Receipt, Signed
from market.receipts import ReceiptChain, output_root, reserved_gpu_seconds
from market.receipts.merkle import chunk
from nodes.logs import get_logger
from nodes.provider.outputs import StreamedOutput
from nodes.state.records import Records

CHUNK_SIZE = 4096
_log = get_logger("gpumarket.provider.metering")


@dataclass(frozen=True, slots=True)
class Period:
    """One closed period: its signed receipt, the output chunks under its ``outputRoot`` (or
    the file range they are in, ``streamed``), and the metrics under its ``metricsHash``."""

    receipt: Signed[Receipt]
    chunks: tuple[bytes, ...]
    metrics: bytes
    streamed: StreamedOutput | None = None


class Meter:
    """Turns a lease's reserved or busy time into its receipts; stores each before returning
    it."""

    def __init__(
        self,
        chain: ReceiptChain,
        records: Records,
        *,
        gpus: int | None = None,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        self.chain = chain
        self.records = records
        self.gpus = chain.lease.gpus if gpus is None else gpus
        self.chunk_size = chunk_size
        head = chain.head
        self._billed = Fraction(0 if head is None else head.message.gpu_seconds_cumulative)

    @classmethod
    def resume(cls, records: Records, key: SigningKey, domain: Domain, lease: Lease) -> Meter:
        """A meter continuing from the last receipt stored for ``lease`` (or from its start)."""
        records.save_lease(lease)
        head = records.latest_receipt(lease.id)
        return cls(ReceiptChain(key, domain, lease, head=head), records)

    @property
    def lease(self) -> Lease:
        return self.chain.lease

    @property
    def gpu_seconds(self) -> int:
        """GPU-seconds billed so far (the next receipt's cumulative starts from here)."""
        head = self.chain.head
        return 0 if head is None else head.message.gpu_seconds_cumulative

    def period_end(self, chain_time: int, end: int | None = None) -> int:
        """Where a period closed at ``chain_time`` ends: never past ``end``, the lease's current
        end (the scheduled one by default)."""
        return min(chain_time, self.lease.end if end is None else end)

    def usage(self, period_end: int, busy_s: float) -> tuple[int, Fraction]:
        """The cumulative GPU-seconds a period ending at ``period_end`` bills, with ``busy_s``
        seconds of work in it, and the exact metered total to carry on (see the module)."""
        bound = reserved_gpu_seconds(self.lease, period_end)
        if self.lease.billing is Billing.RENTAL:
            return max(self.gpu_seconds, bound), Fraction(bound)
        billed = self._billed + Fraction(busy_s) * self.gpus
        if int(billed) > bound:
            _log.warning("usage_capped", lease=self.lease.id, billed=int(billed), bound=bound)
            billed = Fraction(bound)
        return max(self.gpu_seconds, int(billed)), billed

    def close_period(
        self,
        period_end: int,
        busy_s: float,
        output: bytes = b"",
        *,
        end: int | None = None,
        also: Callable[[sqlite3.Connection, Period], None] | None = None,
        streamed: StreamedOutput | None = None,
    ) -> Period:
        """Sign, store and return the receipt for the period ending at ``period_end`` (chain
        time), cut at ``end``, the lease's current end; ``also`` stores what belongs with it in
        the receipt's own transaction. The output is ``output``, or the ``streamed`` range of
        the job's output file (committed by its chunk hashes; never both)."""
        if busy_s < 0:
            raise ValueError(f"busy seconds cannot be negative: {busy_s}")
        if streamed is not None and output:
            raise ValueError("a period's output is inline or streamed, not both")
        period_end = self.period_end(period_end, end)
        cumulative, self._billed = self.usage(period_end, busy_s)
        chunks = tuple(chunk(output, self.chunk_size))
        size = len(output) if streamed is None else streamed.size
        metrics: bytes = msgpack.packb(
            {"busyMs": int(busy_s * 1000), "gpus": self.gpus, "outputBytes": size}
        )
        root = output_root(chunks) if streamed is None else streamed.tree().root
        signed = self.chain.append(
            period_end,
            cumulative,
            output_root=root,
            metrics_hash=keccak(metrics),
        )
        period = Period(signed, chunks, metrics, streamed)
        extra = None if also is None else (lambda conn: also(conn, period))
        self.records.save_receipt(signed, extra)  # before anyone can see it
        _log.info(
            "receipt_signed", lease=self.lease.id, seq=signed.message.seq,
            gpu_seconds=cumulative, chunks=len(chunks) if streamed is None else streamed.count,
        )  # fmt: skip
        return period


class OutputTail:
    """Reads what a job has appended to an output file since the last read."""

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = path
        self.offset = offset

    def available(self) -> int:
        """Bytes appended since the last read (0 before the file exists)."""
        try:
            return max(0, self.path.stat().st_size - self.offset)
        except FileNotFoundError:
            return 0

    def skip(self, size: int) -> None:
        """Count ``size`` bytes as read (a streamed period's range, left in the file)."""
        self.offset += size

    def read_new(self, limit: int | None = None) -> bytes:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read() if limit is None else f.read(limit)
        except FileNotFoundError:
            return b""
        self.offset += len(data)
        return data


__all__ = ["CHUNK_SIZE", "Meter", "OutputTail", "Period"]
