"""The lab client daemon: bids, follows its leases, verifies and pays, proves fraud, settles.

    agent = LabAgent(config, deployment, key, out=sys.stdout)
    await agent.start()                      # prints "lab ready address=0x... metrics=http://..."
    code = await agent.run(exit_when_done=True)
    await agent.stop()

Every ``poll_interval_s`` a tick runs, in order: the chain's events (leases of the lab's bids
opening, terminating, closing, claims posted), each live lease's step, the pending chain actions
(terminations, proofs, disputes), then settlement (close, withdraw). A lease's step:

1. ``opened``: seal the job spec to the provider's registered X25519 key and submit it with the
   signed bid (an unknown lease is asked again next tick);
2. ``running``: send the best voucher again if unacknowledged, ask for the periods after the last
   accepted receipt, and for each: open its sealed output, verify the receipt
   (:class:`~market.receipts.ReceiptVerifier`: signature, chain, period, usage bounds, output
   root), its metrics hash, and the output itself (:mod:`nodes.lab.checks`); a streamed output is
   fetched chunk by chunk, each opened and proved before it is written to disk, from the first
   chunk not yet stored (:mod:`nodes.lab.outputs`), and checked once all are stored; then store
   receipt and output, sign and store the voucher (by the key the bid named), send it. The voucher
   pays what the receipt bills: the reserved GPU time for a rental lease, busy GPU time for a
   metered one. A command's period that the lab's own rerun has not reached yet waits for it
   (nothing is paid for it meanwhile). Once the job is over (its whole output verified, or it
   failed or was stopped) the lease is terminated, paying what was vouched, so a rental stops
   costing; the receipts up to the termination (or the lease's end) are still followed, verified
   and paid. Any failure stops payment: the lease is terminated paying what was vouched, and a
   provable failure is proved on-chain.

Outages (chain, provider, relay) are logged and retried next tick; any other error ends the
process (crash-only: its state is durable and a restart reconciles it).

State is the lab's SQLite (:mod:`nodes.lab.store`), written before each act, so a SIGKILL at any
point loses nothing and pays nothing twice. All database and chain work runs on one worker thread
(:class:`~nodes.lab.ledger.Ledger`); HTTP and checks stay off it. SIGTERM ends the tick in
progress, then stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TextIO, TypeVar

import aiohttp
import msgpack
from aiohttp import web

from market.chain.deploy import Deployment
from market.errors import (
    ChainError,
    DecodeError,
    FrameTooLarge,
    MarketError,
    ReceiptError,
    ReceiptUsageImpossible,
    SealError,
)
from market.matching import Submission
from market.protocol.eip712 import receipt_hash
from market.protocol.keccak import keccak
from market.protocol.types import Receipt, Signed, Voucher
from market.receipts import ChainHead, ReceiptVerifier, detect_equivocation
from market.sealing import Purpose, SealingKeyPair, associated_data, open_sealed, seal
from nodes.errors import PeerUnavailable, RequestRefused
from nodes.jobs.spec import CommandParams, JobSpec
from nodes.lab.challenges import (
    BUSY,
    ENDED,
    MAX_BUSY,
    MIN_GAP_S,
    ChallengeSchedule,
    run_challenge,
)
from nodes.lab.checks import (
    CommandCheck,
    CommandRerun,
    NotYetCheckable,
    OutputCheck,
    OutputCheckFailed,
    make_check,
)
from nodes.lab.config import LabConfig
from nodes.lab.ledger import Ledger
from nodes.lab.metrics import LabMetrics
from nodes.lab.outputs import LeaseOutput, PeriodFile, open_chunks, period_path
from nodes.lab.provider_client import JobExists, JobRefused, ProviderClient, UnknownLease
from nodes.lab.store import JobRecord, LeaseRecord
from nodes.logs import get_logger, render_fields
from nodes.provider.decisions import log_no_match
from nodes.wire import (
    CONTENT_TYPE,
    MAX_PERIODS,
    ErrorCode,
    ErrorResponse,
    JobState,
    OutputChunks,
    PeriodReport,
    SubmitJob,
    encode,
)
from nodes.wire.messages import OrderStatus
from nodes.wire.relay_client import RelayClient

T = TypeVar("T")
RERUN_GRACE_S = 10.0
"""A command's rerun may run this much past the lease's end (the provider stops at the end)."""
_ACCEPTED_BIDS = (OrderStatus.ACCEPTED, OrderStatus.DUPLICATE_ORDER)


@web.middleware
async def _typed_refusals(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """aiohttp's own refusals (no route, wrong method) as ErrorResponse frames a client decodes."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        code = _HTTP_CODES.get(exc.status, ErrorCode.MALFORMED_FRAME)
        return web.Response(status=exc.status, body=encode(ErrorResponse(code, exc.reason)),
                            content_type=CONTENT_TYPE)  # fmt: skip


_HTTP_CODES = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED}


class _Rejected(Exception):
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


class LabAgent:
    """One lab account's daemon over ``config``'s jobs."""

    def __init__(
        self,
        config: LabConfig,
        deployment: Deployment,
        key: bytes,
        *,
        voucher_key: bytes | None = None,
        out: TextIO | None = None,
    ) -> None:
        self.config = config
        self.deployment = deployment
        self.key = key
        self.voucher_key = voucher_key
        self.out = out
        self.log = get_logger("gpumarket.lab")
        self.metrics = LabMetrics()
        self.port = 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lab-ledger")
        self._ledger: Ledger | None = None
        self._keys: SealingKeyPair | None = None
        self._jobs: dict[int, JobRecord] = {}
        self._challenges = ChallengeSchedule(config.challenge)
        self._provider_ended: dict[bytes, int] = {}  # lease -> chain time it said work was over
        self._checks: dict[bytes, OutputCheck] = {}
        self._bids_placed: set[int] = set()
        self._phases: dict[str, int] = {}
        self._block = 0
        self._chain_time = 0  # the head's timestamp, read once a tick
        self._stop = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._outputs = config.state.parent / "outputs"  # streamed periods' files

    # --- lifecycle -----------------------------------------------------------------------------

    @property
    def metrics_url(self) -> str:
        return f"http://{self.config.lab.host}:{self.port}/metrics"

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            raise RuntimeError("start the agent first")
        return self._ledger

    async def _w(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn`` on the ledger's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def start(self) -> None:
        """Open the state, catch up with the chain, sign and fund the bids, serve /metrics;
        prints the ready line once it is all up."""
        cfg = self.config
        self._ledger = await self._w(
            lambda: Ledger.open(
                cfg.state, self.deployment, self.key, self.emit, cfg.chain.confirmations,
                voucher_key=self.voucher_key, wallet=cfg.wallet,
            )
        )  # fmt: skip
        try:
            self._keys = await self._w(self.ledger.store.sealing_key)
            jobs = await self._w(self.ledger.prepare_jobs, cfg.jobs, cfg.lab.bid_ttl_s)
            self._jobs = {j.idx: j for j in jobs}
            self._block = await self._w(self.ledger.poll_events)
            funded = await self._w(self.ledger.fund, cfg.lab.fund)
            self.log.info("lab_funded", address=self.ledger.lab.address, allowance=funded)
            self._session = aiohttp.ClientSession()
            await self._serve()
        except BaseException:
            await self._close()
            raise
        lab = self.ledger.lab
        self._line(f"lab ready address={lab.address} metrics={self.metrics_url}")
        self.log.info(
            "lab_ready", address=lab.address, owner=lab.key.address, wallet=lab.wallet is not None,
            voucher_key=self.ledger.voucher_key.address, metrics=self.metrics_url, jobs=len(jobs),
        )  # fmt: skip

    async def run(self, *, exit_when_done: bool = False) -> int:
        """Tick until :meth:`request_stop` (or, with ``exit_when_done``, until every job is
        settled); returns the exit status (0)."""
        while not self._stop.is_set():
            await self.tick()
            if exit_when_done and await self._settled():
                self.emit("lab_done")
                return 0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.config.lab.poll_interval_s)
        return 0

    async def _settled(self) -> bool:
        try:
            return await self._w(self.ledger.done)
        except ChainError as exc:  # it reads the chain: an outage means "not yet known"
            self.log.warning("chain_unavailable", error=str(exc))
            return False

    def request_stop(self) -> None:
        """Stop after the tick in progress (the SIGTERM handler)."""
        self._stop.set()

    async def stop(self) -> None:
        await self._close()
        self.log.info("lab_stopped")

    async def _close(self) -> None:
        for check in self._checks.values():
            if isinstance(check, CommandCheck):
                check.rerun.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._ledger is not None:
            await self._w(self._ledger.close)
            self._ledger = None
        self._pool.shutdown(wait=True)

    def app(self) -> web.Application:
        """/metrics and /healthz; any other request refused with an ErrorResponse."""
        app = web.Application(middlewares=[_typed_refusals])
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        return app

    async def _serve(self) -> None:
        app = self.app()
        self.metrics.gauge(
            "gpumarket_lab_leases", "The lab's leases, by phase.",
            lambda: [((("phase", p),), n) for p, n in sorted(self._phases.items())],
        )  # fmt: skip
        lab = self.ledger.lab
        account = (("address", lab.address), ("owner", lab.key.address),
                   ("voucher_key", self.ledger.voucher_key.address))  # fmt: skip
        self.metrics.gauge(
            "gpumarket_lab_account",
            "The account the lab is (address: a contract wallet or the key's own), the key that "
            "signs its orders (owner) and the one that signs its vouchers; always 1.",
            lambda: [(account, 1)],
        )
        self.metrics.gauge(
            "gpumarket_lab_chain_block", "The last block whose events the lab applied.",
            lambda: [((), self._block)],
        )  # fmt: skip
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.lab.host, self.config.lab.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(text=self.metrics.render(), content_type="text/plain")

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n", content_type="text/plain")

    # --- progress ------------------------------------------------------------------------------

    def emit(self, event: str, **fields: object) -> None:
        """A progress event: logged, counted and printed as one ``event k=v ...`` line."""
        self.log.info(event, **fields)
        self.metrics.events.inc(event=event)
        self._line(f"{event} {render_fields(fields)}".rstrip())

    def _line(self, text: str) -> None:
        if self.out is not None:
            print(text, file=self.out, flush=True)

    # --- the tick ------------------------------------------------------------------------------

    async def tick(self) -> None:
        """One round: events, bids, lease steps, actions, settlement. Chain and peer outages
        are logged and retried next tick."""
        try:
            self._block = await self._w(self.ledger.poll_events)
            self._chain_time = await self._w(self.ledger.client.chain_time)
            await self._place_bids()
            live = await self._w(self.ledger.store.leases, "opened", "running")
            await asyncio.gather(*(self._step(record) for record in live))
            await self._w(self.ledger.run_actions)
            await self._w(self.ledger.settle)
            leases = await self._w(self.ledger.store.leases)
            self._phases = {}
            for r in leases:
                self._phases[r.phase] = self._phases.get(r.phase, 0) + 1
        except ChainError as exc:
            self.log.warning("chain_unavailable", error=str(exc))

    async def _place_bids(self) -> None:
        """Send each open bid to the relays until one accepts it (a duplicate counts)."""
        todo = [j for j in await self._w(self.ledger.open_bids) if j.idx not in self._bids_placed]
        if not todo:
            return
        session = self._session
        for url in self.config.relays:
            async with RelayClient(url, session=session) as relay:
                try:
                    results = await relay.submit([Submission(j.bid) for j in todo])
                except (PeerUnavailable, RequestRefused, DecodeError) as exc:
                    self.log.warning("relay_unavailable", relay=url, error=str(exc))
                    continue
                for job, result in zip(todo, results, strict=True):
                    if result.status in _ACCEPTED_BIDS:
                        if job.idx not in self._bids_placed:
                            self.emit("bid_submitted", job=job.idx, relay=url, bid=job.bid_hash)
                            await self._explain(relay, job)
                        self._bids_placed.add(job.idx)
                    else:
                        self.log.warning(
                            "bid_refused", job=job.idx, relay=url, status=result.status.value,
                            message=result.message,
                        )  # fmt: skip

    async def _explain(self, relay: RelayClient, job: JobRecord) -> None:
        """Log ``no_match`` with the matcher's reason codes and the single-field changes that
        would make it match, for a bid the relay's book cannot fill now."""
        try:
            explanation = await relay.explain(job.bid.message)
        except (PeerUnavailable, RequestRefused, DecodeError) as exc:
            self.log.warning("explain_unavailable", relay=relay.url, error=str(exc))
            return
        log_no_match(self.log.bind(job=job.idx), job.bid_hash, explanation)

    async def _step(self, record: LeaseRecord) -> None:
        lease = record.lease
        try:
            info = await self._w(self.ledger.provider_info, lease.provider)
            provider = ProviderClient(info.endpoint, session=self._session)
            if record.phase == "opened":
                await self._submit(record, provider, info.encryption_key)
            else:
                await self._follow(record, provider)
        except (PeerUnavailable, FrameTooLarge, DecodeError) as exc:
            self.log.warning("provider_unavailable", lease=lease.id, error=str(exc))
            # A restarted provider may answer elsewhere now: its endpoint is read again.
            await self._w(self.ledger.forget_provider, lease.provider)
        except RequestRefused as exc:
            self.log.warning("provider_refused", lease=lease.id, code=exc.code, error=exc.message)
        except (OSError, subprocess.SubprocessError) as exc:  # the lab's own rerun of a command
            self.log.error("check_unavailable", lease=lease.id, error=str(exc))

    async def _submit(self, record: LeaseRecord, provider: ProviderClient, key: bytes) -> None:
        lease = record.lease
        job = self._jobs[record.job_idx]
        try:
            sealed = seal(key, job.spec.encode(), associated_data(lease.id, Purpose.JOB_SPEC))
        except ValueError as exc:  # no usable encryption key registered
            await self._fail(record, f"cannot seal the job to the provider: {exc}")
            return
        try:
            accepted = await provider.submit_job(SubmitJob(lease.id, job.bid, sealed))
        except UnknownLease:
            return  # the provider has not seen the lease yet: next tick
        except JobExists as exc:
            self.log.warning("job_exists", lease=lease.id, message=exc.message)
            state = JobState.RUNNING.value
        except JobRefused as exc:
            await self._fail(record, f"the provider refused the job: {exc.message}")
            return
        else:
            state = accepted.state.value
        await self._w(
            lambda: self.ledger.store.update_lease(lease.id, phase="running", job_state=state)
        )
        self.emit("job_accepted", lease=lease.id, state=state)

    async def _follow(self, record: LeaseRecord, provider: ProviderClient) -> None:
        lease = record.lease
        store = self.ledger.store
        best = await self._w(store.best_voucher, lease.id)
        if best is not None and not best[1]:
            await self._send_voucher(provider, best[0])
        if not await self._challenge(record, provider):
            return  # failed: the lease is failing, nothing more is paid
        head = await self._w(store.head, lease.id)
        check = await self._check(record)
        batch = await provider.receipts(lease.id, 0 if head is None else head.message.seq + 1)
        for period in batch.periods:
            try:
                head = await self._period(record, head, check, period, provider)
            except NotYetCheckable:
                return  # the lab's rerun is behind: this period is checked (and paid) later
            except _Rejected as exc:
                self.metrics.rejected.inc(reason=exc.reason.split(":")[0])
                await self._fail(
                    record, exc.reason, equivocation=exc.equivocation, impossible=exc.impossible
                )
                return
        state = batch.job_state
        await self._w(lambda: store.update_lease(lease.id, job_state=state.value))
        if len(batch.periods) >= MAX_PERIODS or state is JobState.RUNNING:
            return
        seq = -1 if head is None else head.message.seq
        # The job is over once its whole output is verified (or it failed or was stopped): the
        # lease is terminated then, paying what was vouched, so a rental stops costing.
        if (state is not JobState.FINISHED or check.complete) and await self._w(
            self.ledger.job_over, lease.id
        ):
            if state is JobState.FINISHED:
                self.emit("job_verified", lease=lease.id, bytes=check.received)
            else:
                self.emit("job_ended", lease=lease.id, state=state.value, error=batch.job_error)
        # Receipts go on until the lease's end (its termination's, once the chain has it): keep
        # verifying and paying them, so a later receipt that inflates usage or contradicts an
        # earlier one is caught, and the last one, up to the end, is paid by voucher rather than
        # left to an optimistic claim. Stop following once the provider has metered to the end
        # (or the lease closes: a provider that stopped early is settled on-chain).
        if head is None or head.message.period_end < record.end_at:
            return
        if state is JobState.FINISHED and not check.complete:
            try:
                check.finish(seq)
            except NotYetCheckable:
                return
            except OutputCheckFailed as exc:
                await self._fail(record, str(exc))
                return
        await self._w(lambda: store.update_lease(lease.id, phase="ended"))
        self.emit("lease_ended", lease=lease.id, end=record.end_at, state=state.value)

    async def _challenge(self, record: LeaseRecord, provider: ProviderClient) -> bool:
        """Run the lease's hardware challenge when one is due (:mod:`nodes.lab.challenges`);
        False when the provider failed it, and the lease then fails: terminated, paying only
        what was vouched before, so the period it failed in is not paid."""
        settings = self.config.challenge
        lease = record.lease
        if not settings.enabled or not self._challenges.due(lease.id, time.monotonic()):
            return True
        # A lease that has ended, or that the lab is terminating, has no hardware left to
        # challenge: an honest provider refuses ("the lease has ended"), which must not fail the
        # lease and leave its last receipt unpaid (a restarted lab challenges at once).
        # Nor one in its last MIN_GAP_S: the provider may see it end before this lab's clock does.
        if record.end_at - MIN_GAP_S <= self._chain_time or await self._w(
            self.ledger.store.terminating, lease.id
        ):
            self._challenges.ran(lease.id, float("inf"))
            return True
        model = self._jobs[record.job_idx].bid.message.gpu_model
        gpu_class = settings.gpu_class(model)
        if gpu_class is None:
            self._challenges.ran(lease.id, float("inf"))  # never: no class to hold it to
            self.log.info("challenge_skipped", lease=lease.id, model=model, reason="no_gpu_class")
            return True
        key, domain = self.ledger.voucher_key, self.ledger.domain
        outcome = await run_challenge(
            provider.url, self._session, domain, key, lease, settings, gpu_class
        )
        if outcome is None:  # unreachable: the lease's other checks deal with it; again later
            return True
        if outcome is ENDED:  # nothing left to challenge; no receipt may bill past this
            self._challenges.ran(lease.id, float("inf"))
            self._provider_ended[lease.id] = self._chain_time
            self.log.info("challenge_skipped", lease=lease.id, reason="provider_ended")
            return True
        if outcome is BUSY:
            times = self._challenges.busy(lease.id, time.monotonic())
            if times < MAX_BUSY:
                self.log.info("challenge_deferred", lease=lease.id, busy=times)
                return True
            outcome = replace(outcome, n=settings.n, gpu_class=gpu_class,
                              reason=f"answered busy {times} times in a row")  # fmt: skip
        self._challenges.ran(lease.id, time.monotonic())
        await self._w(lambda: self.ledger.store.add_challenge(lease.id, lease.provider, outcome))
        result = "passed" if outcome.passed else "failed"
        self.metrics.challenges.inc(result=result, gpu_class=gpu_class)
        fields = {"lease": lease.id, "provider": lease.provider, "gpu_class": gpu_class,
                  "n": outcome.n, "elapsed_s": round(outcome.elapsed_s, 4),
                  "deadline_s": round(outcome.deadline_s, 4)}  # fmt: skip
        if outcome.passed:
            self.emit("challenge_passed", **fields)
            return True
        self.emit("challenge_failed", **fields, reason=outcome.reason)
        await self._fail(record, f"challenge failed: {outcome.reason}")
        return False

    async def _period(
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
                    raise _Rejected(f"equivocation: two receipts for seq {r.seq}",
                                    equivocation=(stored, signed))  # fmt: skip
                raise _Rejected(f"receipt {r.seq} differs from the one accepted")
            return head
        ended = self._provider_ended.get(lease.id)
        if ended is not None and r.period_start >= ended:
            raise _Rejected(
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
                raise _Rejected(f"output: receipt {r.seq} is streamed and inline at once")
            # A streamed output is proved chunk by chunk as it arrives (below).
            chunks = None if streamed else self._open_output(lease.id, period.sealed_output)
            verifier.accept(signed, chunks)
            if keccak(period.metrics) != r.metrics_hash:
                raise _Rejected(f"metrics: receipt {r.seq}'s metrics do not hash to metricsHash")
            if chunks is not None:
                data = b"".join(chunks)
                await asyncio.to_thread(check.feed, r.seq, digest, data)
        except ReceiptUsageImpossible as exc:
            raise _Rejected(f"usage: {exc}", impossible=signed) from exc
        except (ReceiptError, SealError, DecodeError, OutputCheckFailed) as exc:
            raise _Rejected(f"{type(exc).__name__}: {exc}") from exc
        if streamed:
            file = await self._fetch(record, signed, period, provider)
            start = await self._w(ledger.store.output_size, lease.id)
            try:  # from where the check got to (a rerun that was behind stopped it mid-period)
                await asyncio.to_thread(_feed, check, r.seq, digest, file, check.received - start)
            except OutputCheckFailed as exc:
                raise _Rejected(f"{type(exc).__name__}: {exc}") from exc
        voucher = await self._w(ledger.accept, signed, data)
        self.emit(
            "receipt_verified", lease=lease.id, seq=r.seq, gpu_seconds=r.gpu_seconds_cumulative
        )
        before = (
            0 if head is None else lease.price_per_gpu_second * head.message.gpu_seconds_cumulative
        )
        self.metrics.vouched.inc(max(0, voucher.message.cumulative_amount - before))
        with contextlib.suppress(PeerUnavailable, RequestRefused, DecodeError):
            await self._send_voucher(provider, voucher)  # stored: sent again next tick if lost
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
                raise _Rejected(f"equivocation: two receipts for seq {r.seq}",
                                equivocation=(first, signed))  # fmt: skip
            raise _Rejected(f"receipt {r.seq} differs from the one being fetched")
        if progress.chunks != total:
            raise _Rejected(f"output: receipt {r.seq} had {progress.chunks} chunks, now {total}")
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
                    raise _Rejected(
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
                    raise _Rejected(f"{type(exc).__name__}: {exc}") from exc
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
            raise _Rejected(
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
        if self._keys is None:
            raise RuntimeError("start the agent first")
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

    async def _send_voucher(self, provider: ProviderClient, voucher: Signed[Voucher]) -> None:
        ack = await provider.send_voucher(voucher)
        v = voucher.message
        await self._w(self.ledger.store.mark_sent, v.lease_id, v.cumulative_amount)
        self.emit("voucher_sent", lease=v.lease_id, amount=v.cumulative_amount, new=ack.new)

    async def _check(self, record: LeaseRecord) -> OutputCheck:
        """The lease's output check, rebuilt from the stored output after a restart."""
        check = self._checks.get(record.lease.id)
        if check is not None:
            return check
        spec: JobSpec = self._jobs[record.job_idx].spec
        rerun = None
        if isinstance(spec.params, CommandParams):
            path = self.config.state.parent / "reruns" / record.lease.id.hex()
            limit = float(record.end_at - self._chain_time)
            rerun = CommandRerun(spec.params.argv, path, max(1.0, limit) + RERUN_GRACE_S)
        check = make_check(spec, record.audit_secret, self.config.lab.audit_samples, rerun)
        parts = await self._w(self.ledger.store.output_parts, record.lease.id)
        await asyncio.to_thread(check.resume, LeaseOutput(self._outputs, record.lease.id, parts))
        self._checks[record.lease.id] = check
        return check

    async def _fail(
        self,
        record: LeaseRecord,
        reason: str,
        *,
        equivocation: tuple[Signed[Receipt], Signed[Receipt]] | None = None,
        impossible: Signed[Receipt] | None = None,
    ) -> None:
        self._checks.pop(record.lease.id, None)
        await self._w(
            lambda: self.ledger.fail(
                record.lease, reason, equivocation=equivocation, impossible=impossible
            )
        )


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


__all__ = ["LabAgent"]
