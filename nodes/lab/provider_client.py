"""Talking to a provider's job API over HTTP (aiohttp), with a timeout on every call.

    async with ProviderClient(info.endpoint) as provider:
        accepted = await provider.submit_job(SubmitJob(lease.id, signed_bid, sealed_spec))
        batch = await provider.receipts(lease.id, from_seq=0)
        ack = await provider.send_voucher(signed_voucher)

Refusals are :class:`~market.errors.RequestRefused` with the ErrorResponse's code and details; the
codes a lab acts on have their own subclasses: :class:`UnknownLease` (the provider has not seen
the lease open yet: ask again later), :class:`JobRefused`, :class:`JobExists`. No answer in time
or a broken connection is :class:`~market.errors.PeerUnavailable`; an answer over the size limit
:class:`~market.errors.FrameTooLarge` (read no further than the limit); any other bad answer a
:class:`~market.errors.DecodeError`.
"""

from __future__ import annotations

from types import TracebackType
from typing import Final, Self, TypeVar

import aiohttp

from market.errors import FrameTooLarge, PeerUnavailable, RequestRefused
from market.protocol.types import Signed, Voucher
from nodes.wire import (
    CONTENT_TYPE,
    MAX_FRAME_SIZE,
    MAX_PERIODS,
    ErrorCode,
    ErrorResponse,
    JobAccepted,
    Message,
    ReceiptBatch,
    ReceiptsQuery,
    SubmitJob,
    SubmitVoucher,
    VoucherAccepted,
    decode,
    decode_as,
    encode,
)

DEFAULT_TIMEOUT_S: Final = 10.0
MAX_BATCH_SIZE: Final = 8 * 2**20
"""A ReceiptBatch answer stays under this; other answers under the wire's default limit."""
M = TypeVar("M", bound=Message)


class UnknownLease(RequestRefused):
    """The provider does not know the lease yet (it has not seen it open): ask again later."""


class JobRefused(RequestRefused):
    """The provider will not run the job (its checks failed, or it cannot)."""


class JobExists(RequestRefused):
    """The lease already has another job."""


_BY_CODE: dict[str, type[RequestRefused]] = {
    ErrorCode.UNKNOWN_LEASE.value: UnknownLease,
    ErrorCode.JOB_REFUSED.value: JobRefused,
    ErrorCode.JOB_EXISTS.value: JobExists,
}


class ProviderClient:
    """A provider's ``/v1`` job API at ``url`` (the endpoint it registered on-chain)."""

    def __init__(
        self,
        url: str,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session = session
        self._owns_session = session is None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

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

    async def send_voucher(self, voucher: Signed[Voucher]) -> VoucherAccepted:
        return await self._expect(
            "/v1/vouchers", SubmitVoucher(voucher), VoucherAccepted, MAX_FRAME_SIZE
        )

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
        headers = {"Content-Type": CONTENT_TYPE} if body is not None else {}
        try:
            async with self.session.request(
                method, self.url + path, data=body, headers=headers, timeout=self.timeout
            ) as response:
                declared = response.content_length
                if declared is not None and declared > max_size:
                    raise FrameTooLarge(declared, max_size)
                data = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    data += chunk
                    if len(data) > max_size:
                        raise FrameTooLarge(len(data), max_size)
                return response.status, bytes(data)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PeerUnavailable(self.url, f"{type(exc).__name__}: {exc}") from exc


def _raise_refused(status: int, data: bytes) -> None:
    """Raise the typed refusal an error answer carries (DecodeError for a malformed one)."""
    answer = decode(data, max_size=MAX_FRAME_SIZE)
    if isinstance(answer, ErrorResponse):
        cls = _BY_CODE.get(answer.code.value, RequestRefused)
        raise cls(answer.code.value, answer.message, answer.details, status)
    raise RequestRefused(
        "unexpected_answer", f"HTTP {status} with a {answer.TYPE_NAME}", {}, status
    )


__all__ = [
    "DEFAULT_TIMEOUT_S",
    "MAX_BATCH_SIZE",
    "JobExists",
    "JobRefused",
    "ProviderClient",
    "UnknownLease",
]
