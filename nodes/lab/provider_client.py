"""Talking to a provider's job API over HTTP (aiohttp), with a timeout on every call.

    async with ProviderClient(info.endpoint) as provider:
        accepted = await provider.submit_job(SubmitJob(lease.id, signed_bid, sealed_spec))
        batch = await provider.receipts(lease.id, from_seq=0)
        part = await provider.outputs(lease.id, seq=3, from_chunk=0)   # a streamed period
        ack = await provider.send_voucher(signed_voucher)
        commitment = await provider.challenge(signed_request)   # then open_challenge(rows)

Refusals are :class:`~nodes.errors.RequestRefused` with the ErrorResponse's code and details; the
codes a lab acts on have their own subclasses: :class:`UnknownLease` (the provider has not seen
the lease open yet: ask again later), :class:`JobRefused`, :class:`JobExists`,
:class:`UnknownPeriod` (no streamed output for that receipt). No answer in time
or a broken connection is :class:`~nodes.errors.PeerUnavailable`; an answer over the size limit
:class:`~market.errors.FrameTooLarge` (read no further than the limit); any other bad answer a
:class:`~market.errors.DecodeError`.
"""

from __future__ import annotations

from typing import Final, TypeVar

from market.protocol.types import Signed, Voucher
from nodes.errors import RequestRefused
from nodes.wire import (
    MAX_FRAME_SIZE,
    MAX_OUTPUT_CHUNKS,
    MAX_PERIODS,
    ChallengeCommitment,
    ChallengeOpen,
    ChallengeRequest,
    ChallengeRows,
    ErrorCode,
    JobAccepted,
    Message,
    OutputChunks,
    OutputQuery,
    ReceiptBatch,
    ReceiptsQuery,
    SubmitJob,
    SubmitVoucher,
    VoucherAccepted,
    decode_as,
    encode,
)
from nodes.wire.http import DEFAULT_TIMEOUT_S, HttpPeer, raise_refused

MAX_BATCH_SIZE: Final = 8 * 2**20
"""A ReceiptBatch or OutputChunks answer stays under this; others under the wire's default
limit."""
MAX_ROWS_SIZE: Final = 8 * 2**20
"""A ChallengeRows answer stays under this (64 rows of 64 KiB, with their proofs)."""
M = TypeVar("M", bound=Message)


class UnknownLease(RequestRefused):
    """The provider does not know the lease yet (it has not seen it open): ask again later."""


class JobRefused(RequestRefused):
    """The provider will not run the job (its checks failed, or it cannot)."""


class JobExists(RequestRefused):
    """The lease already has another job."""


class UnknownPeriod(RequestRefused):
    """The provider has no streamed output for that receipt."""


_BY_CODE: dict[str, type[RequestRefused]] = {
    ErrorCode.UNKNOWN_LEASE.value: UnknownLease,
    ErrorCode.JOB_REFUSED.value: JobRefused,
    ErrorCode.JOB_EXISTS.value: JobExists,
    ErrorCode.UNKNOWN_PERIOD.value: UnknownPeriod,
}


class ProviderClient(HttpPeer):
    """A provider's ``/v1`` job API at ``url`` (the endpoint it registered on-chain)."""

    # --- the API -------------------------------------------------------------------------------

    async def submit_job(self, job: SubmitJob) -> JobAccepted:
        """Hand over the lease's job (idempotent: the same job again answers its state)."""
        return await self._expect("/v1/jobs", job, JobAccepted, MAX_FRAME_SIZE)

    async def receipts(
        self, lease_id: bytes, from_seq: int = 0, limit: int = MAX_PERIODS
    ) -> ReceiptBatch:
        """The lease's periods from receipt ``from_seq`` on, at most ``limit`` (maybe fewer)."""
        query = ReceiptsQuery(lease_id, from_seq, limit)
        batch = await self._expect("/v1/receipts", query, ReceiptBatch, MAX_BATCH_SIZE)
        if batch.lease_id != lease_id:
            raise RequestRefused(
                "wrong_lease", f"asked for 0x{lease_id.hex()}, got 0x{batch.lease_id.hex()}", {}
            )
        return batch

    async def outputs(
        self, lease_id: bytes, seq: int, from_chunk: int = 0, max_chunks: int = MAX_OUTPUT_CHUNKS
    ) -> OutputChunks:
        """Receipt ``seq``'s streamed output chunks from ``from_chunk`` on (maybe fewer than
        ``max_chunks``); each still to be opened and proved by the caller."""
        query = OutputQuery(lease_id, seq, from_chunk, max_chunks)
        part = await self._expect("/v1/outputs", query, OutputChunks, MAX_BATCH_SIZE)
        if (part.lease_id, part.seq, part.from_chunk) != (lease_id, seq, from_chunk):
            raise RequestRefused(
                "wrong_output",
                f"asked for 0x{lease_id.hex()} seq {seq} from chunk {from_chunk}, got "
                f"0x{part.lease_id.hex()} seq {part.seq} from chunk {part.from_chunk}",
                {},
            )
        return part

    async def send_voucher(self, voucher: Signed[Voucher]) -> VoucherAccepted:
        return await self._expect(
            "/v1/vouchers", SubmitVoucher(voucher), VoucherAccepted, MAX_FRAME_SIZE
        )

    async def challenge(self, request: ChallengeRequest) -> ChallengeCommitment:
        """A timed hardware challenge: the provider's commitment to the product's rows."""
        return await self._expect("/v1/challenge", request, ChallengeCommitment, MAX_FRAME_SIZE)

    async def open_challenge(self, request: ChallengeOpen) -> ChallengeRows:
        """The rows of the committed product named in ``request``, with their proofs."""
        return await self._expect("/v1/challenge/open", request, ChallengeRows, MAX_ROWS_SIZE)

    async def text(self, path: str) -> str:
        """A plain-text endpoint (``/metrics``, ``/healthz``)."""
        status, data = await self.raw("GET", path, max_size=MAX_FRAME_SIZE)
        if status != 200:
            _raise_refused(status, data)
        return data.decode()

    # --- plumbing ------------------------------------------------------------------------------

    async def _expect(self, path: str, message: Message, cls: type[M], max_size: int) -> M:
        status, data = await self.raw("POST", path, encode(message), max_size=max_size)
        if status != 200:
            _raise_refused(status, data)
        return decode_as(data, cls, max_size=max_size)

    async def raw(
        self, method: str, path: str, body: bytes | None = None, *, max_size: int = MAX_FRAME_SIZE
    ) -> tuple[int, bytes]:
        """Send ``body`` as is and return (HTTP status, answer bytes), reading at most
        ``max_size`` bytes of the answer (FrameTooLarge past it)."""
        return await self.request(method, path, body, max_size=max_size)


def _raise_refused(status: int, data: bytes) -> None:
    raise_refused(status, data, MAX_FRAME_SIZE, _BY_CODE)


__all__ = [
    "DEFAULT_TIMEOUT_S",
    "MAX_BATCH_SIZE",
    "JobExists",
    "JobRefused",
    "ProviderClient",
    "UnknownLease",
    "UnknownPeriod",
]
