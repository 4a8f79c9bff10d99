"""The provider agent's HTTP API, for the labs of its leases (aiohttp).

    POST /v1/jobs       SubmitJob      -> JobAccepted     the lab's sealed job for a lease
    POST /v1/receipts   ReceiptsQuery  -> ReceiptBatch    receipts, sealed outputs, metrics
    POST /v1/outputs    OutputQuery    -> OutputChunks    a streamed period's chunks, with proofs
    POST /v1/vouchers   SubmitVoucher  -> VoucherAccepted the lab's cumulative payment
    POST /v1/challenge  ChallengeRequest -> ChallengeCommitment  a lab's timed hardware challenge
    POST /v1/challenge/open  ChallengeOpen -> ChallengeRows      its rows, opened with proofs
    GET  /metrics       Prometheus text
    GET  /healthz       "ok", or 503 "chain_unavailable ..." while the chain is not reached

A job is authenticated by the lab's signed bid: its hash must be the lease's ``bidHash`` (from
``LeaseOpened``), its signer the lease's lab, and its ``jobSpecHash`` the keccak256 of the spec
that opens from ``sealedSpec`` (sealed to this provider's registered key, bound to the lease).
(A lab that named a voucher key may be a contract, whose bid signature only the chain can check,
by ERC-1271: it did when it opened the lease, so the bid hash alone stands for it.)
Resending the same job answers its state; a different one is refused (``job_exists``). A voucher
is stored only once its signature by the lease's voucher key checks (``lease.voucher_key``: the
key the bid named, else the lab's own; the only one ``claim`` accepts); a replay answers
``new: false``. A hardware challenge (:mod:`nodes.provider.challenges`) is answered only to the
lease's voucher key, while the lease runs here, one at a time and at a bounded rate.
A streamed period's chunks (:mod:`~nodes.provider.outputs`) are read from the job's output
file, each checked against the hash its receipt committed, sealed to the lab's key bound to the
lease, the seq and the chunk's index (:func:`~market.sealing.chunk_associated_data`), and sent
with its Merkle proof; an answer stops short of ``MAX_ANSWER`` bytes (the lab asks on from
there).
Every refusal is an ErrorResponse with a code, and changes nothing. The store is used from one
worker thread (a StateDB belongs to its thread).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TypeVar

from aiohttp import web

from market.errors import DecodeError, InvalidSignature, MarketError, SealError
from market.protocol.eip712 import Domain, order_hash
from market.protocol.keccak import keccak
from market.protocol.signing import verify
from market.protocol.types import ZERO_ADDRESS
from market.receipts.merkle import MerkleTree
from market.sealing import Purpose, associated_data, chunk_associated_data, open_sealed, seal
from nodes.daemon.health import health_response
from nodes.errors import OutputUnavailable, StoreError
from nodes.jobs import JobSpec
from nodes.logs import EventLogger
from nodes.metrics import Counter
from nodes.provider.challenges import ChallengeDesk, ChallengeRefused
from nodes.provider.store import WAITING, AgentStore
from nodes.provider.work import ProviderMetrics
from nodes.state.records import Records
from nodes.wire import (
    MAX_OUTPUT_CHUNKS,
    ChallengeCommitment,
    ChallengeOpen,
    ChallengeRequest,
    ChallengeRows,
    ErrorCode,
    ErrorResponse,
    JobAccepted,
    JobState,
    Message,
    OutputChunk,
    OutputChunks,
    OutputQuery,
    PeriodReport,
    ReceiptBatch,
    ReceiptsQuery,
    SubmitJob,
    SubmitVoucher,
    VoucherAccepted,
)
from nodes.wire.answers import Answer, WrongMessageType, answer_for, read_message, respond

MAX_REQUEST: Final = 1024 * 1024
MAX_ANSWER: Final = 6 * 1024 * 1024
"""A ReceiptBatch (or OutputChunks) stops adding periods (chunks) past this many bytes (at
least one goes)."""
TREES_CACHED: Final = 8
"""Merkle trees of streamed periods kept built (a lab reads one period's chunks in a row)."""
M = TypeVar("M", bound=Message)
T = TypeVar("T")


class Refused(MarketError):
    """A request refused for a reason of this API (not of the frame)."""

    def __init__(self, status: int, code: ErrorCode, message: str) -> None:
        self.status = status
        self.code = code
        super().__init__(message)


@dataclass
class ProviderService:
    """Answers labs from the agent's store; jobs start when the agent's loop sees their spec."""

    domain: Domain
    store: AgentStore
    records: Records
    sealing_key: bytes
    pool: ThreadPoolExecutor
    log: EventLogger
    metrics: ProviderMetrics
    challenges: ChallengeDesk | None = None
    workdir: Path = Path("jobs")
    """The jobs' folders (``<lease id hex>/stdout`` is a job's output file)."""
    _trees: OrderedDict[tuple[bytes, int], MerkleTree] = field(default_factory=OrderedDict)

    @property
    def requests(self) -> Counter:
        return self.metrics.requests

    @property
    def vouchers(self) -> Counter:
        return self.metrics.vouchers

    def app(self) -> web.Application:
        app = web.Application(
            middlewares=[self.metrics.timed_routes, self._answers], client_max_size=MAX_REQUEST
        )
        app.add_routes(
            [
                web.post("/v1/jobs", self.jobs),
                web.post("/v1/receipts", self.receipts),
                web.post("/v1/outputs", self.outputs),
                web.post("/v1/vouchers", self.vouchers_post),
                web.post("/v1/challenge", self.challenge),
                web.post("/v1/challenge/open", self.challenge_open),
                web.get("/metrics", self.prometheus),
                web.get("/healthz", self.health),
            ]
        )
        return app

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn)

    @web.middleware
    async def _answers(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        route = request.match_info.route.resource
        endpoint = route.canonical if route is not None else "unmatched"
        response: web.StreamResponse
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            code = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED}.get(
                exc.status, ErrorCode.FRAME_TOO_LARGE if exc.status == 413 else ErrorCode.INTERNAL
            )
            response = _error(request, Answer(exc.status, ErrorResponse(code, exc.reason)))
        except Refused as exc:
            response = _error(request, Answer(exc.status, ErrorResponse(exc.code, str(exc))))
        except MarketError as exc:
            answer = answer_for(exc)
            if answer is None:
                self.log.error("request_failed", endpoint=endpoint, error=repr(exc))
                answer = Answer(500, ErrorResponse(ErrorCode.INTERNAL, type(exc).__name__))
            response = _error(request, answer)
        except Exception as exc:  # a bug: answered as a typed refusal and logged, never bare
            self.log.error("request_failed", endpoint=endpoint, error=repr(exc), exc_info=True)
            response = _error(
                request, Answer(500, ErrorResponse(ErrorCode.INTERNAL, type(exc).__name__))
            )
        self.requests.inc(endpoint=endpoint, status=str(response.status))
        return response

    async def _body(self, request: web.Request, cls: type[M]) -> M:
        try:
            data = await request.read()
        except web.HTTPRequestEntityTooLarge as exc:
            raise Refused(413, ErrorCode.FRAME_TOO_LARGE, str(exc.reason)) from exc
        message = read_message(request, data, max_size=MAX_REQUEST)
        if not isinstance(message, cls):
            raise WrongMessageType(message.TYPE_NAME, cls.TYPE_NAME)
        return message

    # --- jobs --------------------------------------------------------------------------------

    async def jobs(self, request: web.Request) -> web.Response:
        message = await self._body(request, SubmitJob)
        state = await self._run(lambda: self._accept_job(message))
        return _frame(request, JobAccepted(message.lease_id, state))

    def _accept_job(self, m: SubmitJob) -> JobState:
        row = self.store.job(m.lease_id)
        lease = self.records.lease(m.lease_id)
        if row is None or lease is None:
            raise Refused(404, ErrorCode.UNKNOWN_LEASE, f"no lease 0x{m.lease_id.hex()} here")
        if order_hash(self.domain, m.bid.message) != row.bid_hash:
            raise Refused(400, ErrorCode.JOB_REFUSED, "the bid is not the one this lease filled")
        try:
            if lease.voucher_signer == ZERO_ADDRESS:  # the lab signs for itself: an account
                verify(self.domain, m.bid, signer=lease.lab)
        except InvalidSignature as exc:
            raise Refused(400, ErrorCode.INVALID_SIGNATURE, f"the bid: {exc}") from exc
        try:
            plain = open_sealed(
                self.sealing_key, m.sealed_spec, associated_data(m.lease_id, Purpose.JOB_SPEC)
            )
        except SealError as exc:
            raise Refused(400, ErrorCode.JOB_REFUSED, f"the sealed spec: {exc}") from exc
        if keccak(plain) != m.bid.message.job_spec_hash:
            raise Refused(400, ErrorCode.JOB_REFUSED, "the spec is not the one the bid commits to")
        try:
            JobSpec.decode(plain)
        except DecodeError as exc:
            raise Refused(400, ErrorCode.JOB_REFUSED, str(exc)) from exc
        if row.spec is not None:
            if row.spec != plain:  # unreachable while the bid binds the spec; kept as a guard
                raise Refused(409, ErrorCode.JOB_EXISTS, "this lease runs another job")
            return JobState(row.state)
        if row.ended_at is not None:
            raise Refused(400, ErrorCode.JOB_REFUSED, "the lease has ended")
        if not self.store.set_spec(m.lease_id, plain):  # raced with a resend: answer its state
            current = self.store.job(m.lease_id)
            return (
                JobState(current.state)
                if current and current.state != WAITING
                else (JobState.RUNNING)
            )
        self.log.info("job_received", lease=m.lease_id, kind=JobSpec.decode(plain).kind)
        return JobState.RUNNING  # the chain side's next tick starts it

    # --- receipts ----------------------------------------------------------------------------

    async def receipts(self, request: web.Request) -> web.Response:
        message = await self._body(request, ReceiptsQuery)
        batch = await self._run(lambda: self._batch(message))
        return _frame(request, batch)

    def _batch(self, q: ReceiptsQuery) -> ReceiptBatch:
        row = self.store.job(q.lease_id)
        if row is None:
            raise Refused(404, ErrorCode.UNKNOWN_LEASE, f"no lease 0x{q.lease_id.hex()} here")
        rows = self.store.periods(q.lease_id, q.from_seq, max(1, q.limit))
        # Read after the periods: each period's receipt was committed with it, so every one read
        # has its receipt here even while the chain side stores more.
        receipts = {r.message.seq: r for r in self.records.receipts(q.lease_id)}
        periods: list[PeriodReport] = []
        size = 0
        for seq, sealed, metrics, chunks in rows:
            if periods and size + len(sealed) > MAX_ANSWER:
                break
            periods.append(PeriodReport(receipts[seq], sealed, metrics, chunks))
            size += len(sealed) + 512
        state = JobState.RUNNING if row.state == WAITING else JobState(row.state)
        return ReceiptBatch(q.lease_id, tuple(periods), state, row.error)

    # --- streamed outputs --------------------------------------------------------------------

    async def outputs(self, request: web.Request) -> web.Response:
        message = await self._body(request, OutputQuery)
        answer = await self._run(lambda: self._chunks(message))
        self.metrics.output_chunks.inc(len(answer.chunks))
        return _frame(request, answer)

    def _chunks(self, q: OutputQuery) -> OutputChunks:
        row = self.store.job(q.lease_id)
        if row is None or row.spec is None:
            raise Refused(404, ErrorCode.UNKNOWN_LEASE, f"no job for lease 0x{q.lease_id.hex()}")
        stream = self.store.streamed(q.lease_id, q.seq)
        if stream is None:
            raise Refused(
                404, ErrorCode.UNKNOWN_PERIOD, f"receipt {q.seq} has no streamed output here"
            )
        tree = self._tree(q.lease_id, q.seq, stream.tree)
        lab_key = JobSpec.decode(row.spec).lab_key
        path = self.workdir / q.lease_id.hex() / "stdout"
        chunks: list[OutputChunk] = []
        size = 0
        stop = min(stream.count, q.from_chunk + min(max(1, q.max_chunks), MAX_OUTPUT_CHUNKS))
        for index in range(q.from_chunk, stop):
            length = min(stream.chunk_size, stream.size - index * stream.chunk_size)
            if chunks and size + length > MAX_ANSWER:
                break
            try:
                data = stream.read_chunk(path, index)
            except OutputUnavailable as exc:  # the operator's to fix; nothing served instead
                self.log.error("output_unavailable", lease=q.lease_id, seq=q.seq, error=str(exc))
                raise Refused(500, ErrorCode.INTERNAL, str(exc)) from exc
            sealed = seal(lab_key, data, chunk_associated_data(q.lease_id, q.seq, index))
            chunks.append(OutputChunk(sealed, tuple(tree.proof(index))))
            size += len(sealed) + 32 * len(chunks[-1].proof) + 16
        return OutputChunks(q.lease_id, q.seq, q.from_chunk, stream.count, tuple(chunks))

    def _tree(self, lease_id: bytes, seq: int, build: Callable[[], MerkleTree]) -> MerkleTree:
        key = (lease_id, seq)
        tree = self._trees.get(key)
        if tree is None:
            tree = self._trees[key] = build()
            while len(self._trees) > TREES_CACHED:
                self._trees.popitem(last=False)
        self._trees.move_to_end(key)
        return tree

    # --- vouchers ----------------------------------------------------------------------------

    async def vouchers_post(self, request: web.Request) -> web.Response:
        message = await self._body(request, SubmitVoucher)
        v = message.voucher.message
        new = await self._run(lambda: self._save_voucher(message))
        self.vouchers.inc(result="new" if new else "replay")
        if new:
            self.log.info("voucher_received", lease=v.lease_id, amount=v.cumulative_amount)
        return _frame(request, VoucherAccepted(v.lease_id, v.cumulative_amount, new))

    def _save_voucher(self, m: SubmitVoucher) -> bool:
        lease_id = m.voucher.message.lease_id
        if self.records.lease(lease_id) is None:
            raise Refused(404, ErrorCode.UNKNOWN_LEASE, f"no lease 0x{lease_id.hex()} here")
        try:
            return self.records.save_voucher(m.voucher)
        except InvalidSignature as exc:
            raise Refused(400, ErrorCode.INVALID_SIGNATURE, f"the voucher: {exc}") from exc
        except StoreError as exc:
            raise Refused(404, ErrorCode.UNKNOWN_LEASE, str(exc)) from exc

    # --- hardware challenges -------------------------------------------------------------------

    @property
    def desk(self) -> ChallengeDesk:
        if self.challenges is None:
            self.challenges = ChallengeDesk(self.domain)
        return self.challenges

    async def challenge(self, request: web.Request) -> web.Response:
        message = await self._body(request, ChallengeRequest)
        await self._run(lambda: self._authenticate_challenge(message))
        try:  # off the store's thread: a product can take a while
            commitment: ChallengeCommitment = await asyncio.to_thread(self.desk.commit, message)
        except ChallengeRefused as exc:
            raise Refused(exc.status, ErrorCode.CHALLENGE_REFUSED, str(exc)) from exc
        self.log.info("challenge_answered", lease=message.lease_id, n=message.n,
                      backend=commitment.backend)  # fmt: skip
        return _frame(request, commitment)

    def _authenticate_challenge(self, m: ChallengeRequest) -> None:
        row = self.store.job(m.lease_id)
        lease = self.records.lease(m.lease_id)
        if row is None or lease is None:
            raise Refused(404, ErrorCode.UNKNOWN_LEASE, f"no lease 0x{m.lease_id.hex()} here")
        if row.ended_at is not None:  # its work is over here: no receipt follows
            raise Refused(409, ErrorCode.LEASE_ENDED, "the lease has ended here")
        try:
            self.desk.authenticate(m, lease)
        except InvalidSignature as exc:
            raise Refused(400, ErrorCode.INVALID_SIGNATURE, f"the challenge: {exc}") from exc
        except ChallengeRefused as exc:
            raise Refused(exc.status, ErrorCode.CHALLENGE_REFUSED, str(exc)) from exc

    async def challenge_open(self, request: web.Request) -> web.Response:
        message = await self._body(request, ChallengeOpen)
        try:
            rows: ChallengeRows = await asyncio.to_thread(self.desk.open, message)
        except ChallengeRefused as exc:
            raise Refused(exc.status, ErrorCode.CHALLENGE_REFUSED, str(exc)) from exc
        return _frame(request, rows)

    # --- operations --------------------------------------------------------------------------

    async def prometheus(self, request: web.Request) -> web.Response:
        return web.Response(text=self.metrics.render(), content_type="text/plain")

    async def health(self, request: web.Request) -> web.Response:
        return health_response(self.metrics.chain)


def _frame(request: web.Request, message: Message, status: int = 200) -> web.Response:
    return respond(request, message, status)


def _error(request: web.Request, answer: Answer) -> web.Response:
    return respond(request, answer.body, answer.status, answer.headers)


__all__ = ["MAX_ANSWER", "MAX_REQUEST", "ProviderService", "Refused"]
