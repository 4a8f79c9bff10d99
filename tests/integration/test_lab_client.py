"""The lab's provider client against a tiny aiohttp server on a real socket: answers decoded,
refusals typed by code, and malformed or oversize answers refused."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web

from market.errors import DecodeError, FrameTooLarge
from market.protocol.types import Voucher
from nodes.errors import PeerUnavailable, RequestRefused
from nodes.lab.provider_client import (
    JobExists,
    JobRefused,
    ProviderClient,
    UnknownLease,
)
from nodes.wire import (
    CONTENT_TYPE,
    ErrorCode,
    ErrorResponse,
    JobAccepted,
    JobState,
    Message,
    ReceiptBatch,
    VoucherAccepted,
    encode,
)
from tests.unit.order_factory import DOMAIN, LAB_KEYS

pytestmark = pytest.mark.integration

LEASE = b"\x07" * 32
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _frame(message: Message, status: int = 200) -> web.Response:
    return web.Response(body=encode(message), status=status, content_type=CONTENT_TYPE)


async def _with_server(handler: Handler, body: Callable[[ProviderClient], Awaitable[None]]) -> None:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with ProviderClient(f"http://127.0.0.1:{port}", timeout_s=5) as client:
            await body(client)
    finally:
        await runner.cleanup()


def _run(handler: Handler, body: Callable[[ProviderClient], Awaitable[None]]) -> None:
    asyncio.run(_with_server(handler, body))


@pytest.mark.parametrize(
    ("code", "status", "cls"),
    [
        (ErrorCode.UNKNOWN_LEASE, 404, UnknownLease),
        (ErrorCode.JOB_REFUSED, 422, JobRefused),
        (ErrorCode.JOB_EXISTS, 409, JobExists),
        (ErrorCode.INVALID_SIGNATURE, 400, RequestRefused),
    ],
)
def test_error_responses_raise_typed_refusals_with_code_status_and_details(
    code: ErrorCode, status: int, cls: type[RequestRefused]
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return _frame(ErrorResponse(code, "no", {"lease": "0x07"}), status)

    async def body(client: ProviderClient) -> None:
        with pytest.raises(cls) as info:
            await client.receipts(LEASE)
        assert type(info.value) is cls
        assert (info.value.code, info.value.status) == (code.value, status)
        assert info.value.details == {"lease": "0x07"}

    _run(handler, body)


def test_answers_are_decoded_into_their_messages() -> None:
    voucher = LAB_KEYS[0].sign(DOMAIN, Voucher(LEASE, 42))

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.path == "/v1/receipts":
            return _frame(ReceiptBatch(LEASE, (), JobState.FINISHED))
        return _frame(VoucherAccepted(LEASE, 42, True))

    async def body(client: ProviderClient) -> None:
        batch = await client.receipts(LEASE, from_seq=3)
        assert (batch.lease_id, batch.periods, batch.job_state) == (LEASE, (), JobState.FINISHED)
        ack = await client.send_voucher(voucher)
        assert ack == VoucherAccepted(LEASE, 42, True)

    _run(handler, body)


def test_an_answer_of_the_wrong_type_or_lease_is_refused() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        if request.path == "/v1/vouchers":
            return _frame(JobAccepted(LEASE, JobState.RUNNING))
        return _frame(ReceiptBatch(b"\x08" * 32, (), JobState.RUNNING))

    async def body(client: ProviderClient) -> None:
        with pytest.raises(DecodeError, match="expected a VoucherAccepted"):
            await client.send_voucher(LAB_KEYS[0].sign(DOMAIN, Voucher(LEASE, 1)))
        with pytest.raises(RequestRefused, match="asked for 0x0707") as info:
            await client.receipts(LEASE)
        assert info.value.code == "wrong_lease"

    _run(handler, body)


def test_malformed_answers_raise_decode_errors() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        status = 500 if request.path == "/v1/vouchers" else 200
        return web.Response(body=b"\xc1garbage", status=status, content_type=CONTENT_TYPE)

    async def body(client: ProviderClient) -> None:
        with pytest.raises(DecodeError, match="malformed msgpack"):
            await client.receipts(LEASE)
        voucher = LAB_KEYS[0].sign(DOMAIN, Voucher(LEASE, 1))
        with pytest.raises(DecodeError):
            await client.send_voucher(voucher)

    _run(handler, body)


def test_oversize_answers_are_refused_before_reading_them_whole() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        size = 9 * 2**20 if request.path == "/v1/receipts" else 2 * 2**20
        return web.Response(body=b"\x00" * size, content_type=CONTENT_TYPE)

    async def body(client: ProviderClient) -> None:
        with pytest.raises(FrameTooLarge) as info:
            await client.receipts(LEASE)
        assert info.value.limit == 8 * 2**20
        voucher = LAB_KEYS[0].sign(DOMAIN, Voucher(LEASE, 1))
        with pytest.raises(FrameTooLarge) as small:
            await client.send_voucher(voucher)
        assert small.value.limit == 2**20

    _run(handler, body)


def test_a_provider_that_is_not_listening_is_unavailable() -> None:
    async def body() -> None:
        async with ProviderClient("http://127.0.0.1:1", timeout_s=2) as client:
            with pytest.raises(PeerUnavailable):
                await client.receipts(LEASE)

    asyncio.run(body())
