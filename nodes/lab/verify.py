"""A lab's verification of a lease's periods, and its payment for them.

    verifier = PeriodVerifier(config, ledger, on_ledger, emit, metrics, keys, jobs, outputs)
    check = await verifier.check(record, chain_time)       # the lease's output check
    head = await verifier.period(record, head, check, period, provider)   # or Rejected

A period is paid only once all of it is verified: its receipt (:class:`~market.receipts
.ReceiptVerifier`: signature, chain, period, usage bounds, output root), its metrics hash, and the
output itself (:mod:`nodes.lab.checks`). A streamed output is fetched chunk by chunk, each opened
and proved before it is written to disk, from the first chunk not yet stored
(:mod:`nodes.lab.outputs`), and checked once all are stored; then receipt and output are stored,
the voucher signed and stored (by the key the bid named) and sent. A period that fails raises
:class:`Rejected` with the reason and the evidence a proof on-chain needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Protocol, TypeVar

import msgpack

from market.errors import (
    DecodeError,
    MarketError,
    ReceiptError,
    ReceiptUsageImpossible,
    SealError,
)
from market.protocol.eip712 import receipt_hash
from market.protocol.keccak import keccak
from market.protocol.types import Receipt, Signed, Voucher
from market.receipts import ChainHead, ReceiptVerifier, detect_equivocation
from market.sealing import Purpose, SealingKeyPair, associated_data, open_sealed
from nodes.errors import NodeError, PeerUnavailable, RequestRefused
from nodes.jobs.spec import CommandParams, JobSpec
from nodes.lab.checks import CommandCheck, CommandRerun, OutputCheck, OutputCheckFailed, make_check
from nodes.lab.config import LabConfig
from nodes.lab.ledger import Ledger
from nodes.lab.metrics import LabMetrics
from nodes.lab.outputs import LeaseOutput, PeriodFile, open_chunks, period_path
from nodes.lab.provider_client import ProviderClient
from nodes.lab.store import JobRecord, LeaseRecord
from nodes.wire import OutputChunks, PeriodReport

T = TypeVar("T")
RERUN_GRACE_S = 10.0
"""A command's rerun may run this much past the lease's end (the provider stops at the end)."""


class OnLedger(Protocol):
    """Runs a function on the ledger's one thread (all database and chain work goes there)."""

    def __call__(self, fn: Callable[..., T], *args: object) -> Awaitable[T]: ...


class Emit(Protocol):
    """A progress event: logged, counted and printed as one ``event k=v ...`` line."""

    def __call__(self, event: str, **fields: object) -> None: ...


class Rejected(NodeError):
    """A period failed verification: why, and the evidence a proof needs."""

    def __init__(
        self,
        reason: str,
        *,
        equivocation: tuple[Signed[Receipt], Signed[Receipt]] | None = None,
        impossible: Signed[Receipt] | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.equivocation = equivocation
        self.impossible = impossible


class PeriodVerifier:
    """Verifies and pays the periods of the lab's leases; holds each lease's output check."""

    def __init__(
        self,
        config: LabConfig,
        ledger: Ledger,
        on_ledger: OnLedger,
        emit: Emit,
        metrics: LabMetrics,
        keys: SealingKeyPair,
        jobs: Mapping[int, JobRecord],
        outputs: Path,
    ) -> None:
        self.config = config
        self.ledger = ledger
        self._w = on_ledger
        self.emit = emit
        self.metrics = metrics
        self._keys = keys
        self._jobs = jobs
        self._outputs = outputs  # streamed periods' files
        self.checks: dict[bytes, OutputCheck] = {}
        self.provider_ended: dict[bytes, int] = {}  # lease -> chain time it said work was over

    def forget(self, lease_id: bytes) -> None:
        """Drop the lease's check (it failed: nothing more of it is verified)."""
        self.checks.pop(lease_id, None)

    def stop_reruns(self) -> None:
        """Stop the lab's own reruns of commands (at shutdown)."""
        for check in self.checks.values():
            if isinstance(check, CommandCheck):
                check.rerun.stop()

    async def period(
        self,
        record: LeaseRecord,
        head: Signed[Receipt] | None,
        check: OutputCheck,
        period: PeriodReport,
        provider: ProviderClient,
    ) -> Signed[Receipt] | None:
        """Verify one period and pay for it; returns the new head (unchanged for a repeat)."""
        lease = record.lease
        ledger = self.ledger
        signed = period.receipt
        r = signed.message
        if head is not None and r.lease_id == lease.id and r.seq <= head.message.seq:
            stored = await self._w(ledger.store.receipt, lease.id, r.seq)
            if stored is not None and stored.message != r:
                if detect_equivocation(ledger.domain, stored, signed, provider=lease.receipt_key):
                    raise Rejected(f"equivocation: two receipts for seq {r.seq}",
                                    equivocation=(stored, signed))  # fmt: skip
                raise Rejected(f"receipt {r.seq} differs from the one accepted")
            return head
        ended = self.provider_ended.get(lease.id)
        if ended is not None and r.period_start >= ended:
            raise Rejected(
                f"receipt {r.seq} bills time after the provider answered that its work had ended"
            )
        verifier = ReceiptVerifier(
            ledger.domain,
            lease,
            lease_end=record.end_at,
            head=None if head is None else ChainHead.of(ledger.domain, head.message),
        )
        streamed = period.output_chunks > 0
        digest = receipt_hash(ledger.domain, r)
        data = b""
        try:
            if streamed and period.sealed_output:
                raise Rejected(f"output: receipt {r.seq} is streamed and inline at once")
            # A streamed output is proved chunk by chunk as it arrives (below).
            chunks = None if streamed else self._open_output(lease.id, period.sealed_output)
            verifier.accept(signed, chunks)
            if keccak(period.metrics) != r.metrics_hash:
                raise Rejected(f"metrics: receipt {r.seq}'s metrics do not hash to metricsHash")
            if chunks is not None:
                data = b"".join(chunks)
                await asyncio.to_thread(check.feed, r.seq, digest, data)
        except ReceiptUsageImpossible as exc:
            raise Rejected(f"usage: {exc}", impossible=signed) from exc
        except (ReceiptError, SealError, DecodeError, OutputCheckFailed) as exc:
            raise Rejected(f"{type(exc).__name__}: {exc}") from exc
        if streamed:
            file = await self._fetch(record, signed, period, provider)
            start = await self._w(ledger.store.output_size, lease.id)
            try:  # from where the check got to (a rerun that was behind stopped it mid-period)
                await asyncio.to_thread(_feed, check, r.seq, digest, file, check.received - start)
            except OutputCheckFailed as exc:
                raise Rejected(f"{type(exc).__name__}: {exc}") from exc
        voucher = await self._w(ledger.accept, signed, data)
        self.emit(
            "receipt_verified", lease=lease.id, seq=r.seq, gpu_seconds=r.gpu_seconds_cumulative
        )
        before = (
            0 if head is None else lease.price_per_gpu_second * head.message.gpu_seconds_cumulative
        )
        self.metrics.vouched.inc(max(0, voucher.message.cumulative_amount - before))
        with contextlib.suppress(PeerUnavailable, RequestRefused, DecodeError):
            await self.send_voucher(provider, voucher)  # stored: sent again next tick if lost
        return signed

    async def _fetch(
        self, record: LeaseRecord, signed: Signed[Receipt], period: PeriodReport,
        provider: ProviderClient,
    ) -> PeriodFile:  # fmt: skip
        """Fetch, open, prove and store a streamed period's chunks, from the first one not yet
        stored (a restart of either side resumes there); its file once all are stored."""
        lease = record.lease
        store = self.ledger.store
        r = signed.message
        total = period.output_chunks
        progress = await self._w(store.begin_stream, signed, total)
        if progress.signed.message != r:  # another receipt for this seq since the fetch began
            first = progress.signed
            if detect_equivocation(self.ledger.domain, first, signed, provider=lease.receipt_key):
                raise Rejected(f"equivocation: two receipts for seq {r.seq}",
                                equivocation=(first, signed))  # fmt: skip
            raise Rejected(f"receipt {r.seq} differs from the one being fetched")
        if progress.chunks != total:
            raise Rejected(f"output: receipt {r.seq} had {progress.chunks} chunks, now {total}")
        path = period_path(self._outputs, lease.id, r.seq)
        file = await asyncio.to_thread(PeriodFile, path, progress.size)
        next_chunk = progress.next_chunk
        began, fetched = time.monotonic(), 0
        if 0 < next_chunk < total:
            self.emit("output_resumed", lease=lease.id, seq=r.seq, chunk=next_chunk, chunks=total)
        # One answer is asked for ahead while the one before is opened, proved and written.
        ahead: asyncio.Task[OutputChunks] | None = None
        try:
            while next_chunk < total:
                part = await (ahead or provider.outputs(lease.id, r.seq, next_chunk))
                ahead = None
                end = next_chunk + len(part.chunks)
                if part.total != total or not part.chunks or end > total:
                    raise Rejected(
                        f"output: receipt {r.seq} has {total} chunks; asked from {next_chunk}, "
                        f"the provider answered {len(part.chunks)} of {part.total}"
                    )
                if end < total:
                    ahead = asyncio.create_task(provider.outputs(lease.id, r.seq, end))
                try:
                    plain = await asyncio.to_thread(
                        open_chunks, self._private_key(), r, next_chunk, part.chunks
                    )
                except (ReceiptError, SealError) as exc:  # nothing of the answer is stored
                    raise Rejected(f"{type(exc).__name__}: {exc}") from exc
                size = await asyncio.to_thread(file.append, plain)
                next_chunk = end
                await self._w(store.advance_stream, lease.id, r.seq, next_chunk, size)
                fetched += sum(len(c) for c in plain)
                self.metrics.output_bytes.inc(sum(len(c) for c in plain))
        finally:
            if ahead is not None:  # an error stopped the fetch: the answer ahead is dropped
                ahead.cancel()
                with contextlib.suppress(asyncio.CancelledError, MarketError):
                    await ahead
        expected = _output_bytes(period.metrics)
        if expected is not None and expected != file.size:
            raise Rejected(
                f"output: receipt {r.seq}'s metrics say {expected} bytes, its chunks hold "
                f"{file.size}"
            )
        if progress.next_chunk < total:
            elapsed = time.monotonic() - began
            self.emit(
                "output_received", lease=lease.id, seq=r.seq, chunks=total, bytes=file.size,
                fetched=fetched, seconds=round(elapsed, 3),
                mib_s=round(fetched / 2**20 / max(elapsed, 1e-9), 1),
            )  # fmt: skip
        return file

    def _private_key(self) -> bytes:
        return self._keys.private

    def _open_output(self, lease_id: bytes, sealed: bytes) -> list[bytes]:
        plain = open_sealed(
            self._private_key(), sealed, associated_data(lease_id, Purpose.JOB_OUTPUT)
        )
        try:
            chunks = msgpack.unpackb(plain, raw=False, use_list=True, max_bin_len=len(plain))
        except (ValueError, msgpack.UnpackException) as exc:
            raise DecodeError(f"period output: malformed msgpack ({exc})") from exc
        if not isinstance(chunks, list) or not all(type(c) is bytes for c in chunks):
            raise DecodeError("period output: not an array of bins")
        return chunks

    async def send_voucher(self, provider: ProviderClient, voucher: Signed[Voucher]) -> None:
        """Send ``voucher`` to the provider; marked sent once it acknowledges."""
        ack = await provider.send_voucher(voucher)
        v = voucher.message
        await self._w(self.ledger.store.mark_sent, v.lease_id, v.cumulative_amount)
        self.emit("voucher_sent", lease=v.lease_id, amount=v.cumulative_amount, new=ack.new)

    async def check(self, record: LeaseRecord, chain_time: int) -> OutputCheck:
        """The lease's output check, rebuilt from the stored output after a restart."""
        check = self.checks.get(record.lease.id)
        if check is not None:
            return check
        spec: JobSpec = self._jobs[record.job_idx].spec
        rerun = None
        if isinstance(spec.params, CommandParams):
            path = self.config.state.parent / "reruns" / record.lease.id.hex()
            limit = float(record.end_at - chain_time)
            rerun = CommandRerun(spec.params.argv, path, max(1.0, limit) + RERUN_GRACE_S)
        check = make_check(spec, record.audit_secret, self.config.lab.audit_samples, rerun)
        parts = await self._w(self.ledger.store.output_parts, record.lease.id)
        await asyncio.to_thread(check.resume, LeaseOutput(self._outputs, record.lease.id, parts))
        self.checks[record.lease.id] = check
        return check


def _feed(check: OutputCheck, seq: int, digest: bytes, file: PeriodFile, start: int) -> None:
    """Feed a streamed period's file to ``check`` from byte ``start``, a piece at a time."""
    for piece in file.pieces(start):
        check.feed(seq, digest, piece)


def _output_bytes(metrics: bytes) -> int | None:
    """The ``outputBytes`` a period's metrics state (None when they state none)."""
    try:
        decoded = msgpack.unpackb(metrics, raw=False)
    except (ValueError, msgpack.UnpackException):
        return None
    value = decoded.get("outputBytes") if isinstance(decoded, dict) else None
    return value if type(value) is int else None


__all__ = ["RERUN_GRACE_S", "Emit", "OnLedger", "PeriodVerifier", "Rejected"]
