"""The provider agent's chain-side loop, one ``tick`` at a time, on one worker thread.

Each tick, in order:

1. **follow** the market's events from the stored cursor: a ``LeaseOpened`` naming this provider
   records the lease (terms, bid hash, model) before anything else acts on it; terminations
   bring a lease's end forward; closes and slashes end it in the records;
2. **start** the jobs whose spec a lab has sent since (the HTTP side stored it);
3. **meter** every lease each metering interval: the time it bills (reserved time for a rental
   lease, busy seconds for a metered one: :mod:`~nodes.provider.metering`) and the job's new
   output become a signed receipt, stored with its sealed output in one transaction before any
   lab can read it; at the lease's end (chain time, or the termination the chain shows, read
   before each receipt so none runs past it) the job is stopped and a last receipt closes it;
4. **stop work when payment stops**: ``max_unpaid_periods`` receipts without a voucher (for a
   rental lease whether or not its job still runs: the GPUs are held either way); the last
   receipt then closes the lease's work as its end would;
5. **settle**, every ``claim_interval_s``: claim the best vouchers in one batch; close each ended
   lease once it is paid for its last receipt; when the lab stays silent past
   ``final_voucher_wait_s``, post the last receipt (optimistic claim) and finalize it after the
   challenge window; withdraw what the market credits.

Once a lease's work has ended (its end, its termination, its close, or payment stopped), no
receipt is signed for it again: only settlement is left.

Chain actions go through :class:`~nodes.state.DurableChain` (intent first; reconciled on start),
so a SIGKILL anywhere repeats nothing and loses nothing. Chain time, never the host's clock,
bounds each receipt (a receipt ending after the latest block would be slashable).
A job running when the agent died died with it (``PR_SET_PDEATHSIG``); on restart it is
reported ``stopped`` ("interrupted"), and its receipts and payment go on as for any stopped job.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import msgpack

from market.chain.client import MarketClient
from market.chain.events import ChainEvent
from market.chain.forks import Reorg, detect_reorg
from market.chain.history import DEFAULT_CHUNK_BLOCKS
from market.errors import ChainError
from market.protocol.eip712 import Domain, receipt_hash
from market.protocol.signing import SigningKey
from market.protocol.types import Billing, Lease, LeaseState, LeaseStatus, Receipt, Signed
from market.reputation import LabRecord, ReputationBook
from market.sealing import Purpose, associated_data, seal
from nodes.errors import JobError, JobRefused, SandboxUnavailable
from nodes.jobs import JobSpec, MatmulParams, TrainParams
from nodes.logs import EventLogger
from nodes.metrics import Metrics
from nodes.provider.config import ProviderConfig
from nodes.provider.confinement import Confinement
from nodes.provider.inventory import Inventory
from nodes.provider.metering import Meter, OutputTail, Period
from nodes.provider.outputs import INLINE_OUTPUT, STREAM_CHUNK, StreamedOutput
from nodes.provider.runtime import Job
from nodes.provider.store import AgentStore, JobRow
from nodes.state import DurableChain
from nodes.state.actions import ClaimBatch, CloseLease, CloseLeaseBatch, Withdraw
from nodes.state.optimistic import FinalizeClaim, PostReceipt
from nodes.state.records import Records
from nodes.wire import JobState

INTERRUPTED = "interrupted: the provider restarted"
STARTS_PER_TICK = 8
CLOSES_PER_BATCH = 200
"""Paid-up leases closed per ``closeLeaseBatch`` (about 12,000 gas each: 2.5M)."""


@dataclass
class _Running:
    job: Job
    tail: OutputTail
    devices: tuple[int, ...]
    billed_s: float = 0.0  # busy seconds already in receipts


class ProviderMetrics(Metrics):
    """The agent's counters (its HTTP side adds its own, and a gauge of running jobs)."""

    def __init__(self) -> None:
        super().__init__()
        self.receipts = self.counter("gpumarket_provider_receipts_total", "Receipts signed.")
        self.jobs = self.counter("gpumarket_provider_jobs_total", "Jobs, by outcome.", ("outcome",))
        self.claims = self.counter(
            "gpumarket_provider_claimed_total", "Tokens claimed, by path.", ("path",)
        )
        self.chain_errors = self.counter(
            "gpumarket_provider_chain_errors_total", "Ticks cut short by the chain's RPC."
        )
        self.requests = self.counter(
            "gpumarket_provider_requests_total", "Lab requests answered, by endpoint and status.",
            ("endpoint", "status"),
        )  # fmt: skip
        self.vouchers = self.counter(
            "gpumarket_provider_vouchers_total", "Vouchers received, by result (new, replay).",
            ("result",),
        )  # fmt: skip
        self.output_chunks = self.counter(
            "gpumarket_provider_output_chunks_total", "Streamed output chunks sent to labs."
        )


@dataclass
class LeaseWork:
    """Everything the agent does with the chain and its jobs; owned by one thread."""

    config: ProviderConfig
    key: SigningKey
    client: MarketClient
    store: AgentStore
    records: Records
    chain: DurableChain
    domain: Domain
    workdir: Path
    log: EventLogger
    inventory: Inventory
    confinement: Confinement
    counters: ProviderMetrics = field(default_factory=ProviderMetrics)
    running: dict[bytes, _Running] = field(default_factory=dict)
    meters: dict[bytes, Meter] = field(default_factory=dict)
    last_period: dict[bytes, float] = field(default_factory=dict)
    last_settle: float = 0.0
    disputes_seen: set[bytes] = field(default_factory=set)  # leases whose dispute was logged
    claim_window: int | None = None  # the market's, read once
    labs: ReputationBook | None = None  # labs' dispute records, when the config refuses by them

    def recover(self) -> None:
        """On start: finish the chain actions a crash left open; jobs that were running died
        with the previous process."""
        for outcome in self.chain.reconcile():
            self.log.info("intent_reconciled", kind=outcome.kind, status=outcome.status)
        for row in self.store.jobs(ended=False):
            if row.state == JobState.RUNNING.value:
                self.store.set_state(row.lease_id, JobState.STOPPED, INTERRUPTED)
                self.log.warning("job_interrupted", lease=row.lease_id)

    # --- the tick ----------------------------------------------------------------------------

    def tick(self) -> None:
        """One round of everything; a chain outage ends the round early (retried next tick)."""
        try:
            self.follow()
            head_time = self.client.head().timestamp
            self.start_jobs()
            self.meter(head_time)
            if time.monotonic() - self.last_settle >= self.config.agent.claim_interval_s:
                self.last_settle = time.monotonic()
                self.settle(head_time)
            self.counters.chain.reached()
        except ChainError as exc:
            self.counters.chain_errors.inc()
            self.counters.chain.unreachable(str(exc))
            self.log.warning("chain_unavailable", error=str(exc))

    def follow(self) -> None:
        head = self.client.head().number - self.config.chain.confirmations  # final enough
        self.check_reorg()
        start = self.store.cursor(self.client.contracts.deployment.deploy_block)
        if head < start:
            return
        # The hash before the events: a reorganisation between the two reads leaves a hash the
        # next check finds replaced, so the range is read again.
        block_hash = self.client.block_hashes([head]).get(head)
        if block_hash is None:  # the chain got shorter since the head was read
            return
        me = self.key.address
        events = self.client.events(start, head)
        labs = self._lab_book(start)
        if labs is not None:
            labs.apply_all((e for e in events if e.name in LAB_RECORD_EVENTS), {})
        refused: list[Lease] = []
        with self.store.db.transaction():  # one commit for the range, its cursor included
            self._apply(events, me, refused)
            self.store.set_cursor(head + 1, (head, block_hash))
        for lease in refused:  # given up at once: the lab is refunded, the provider owed nothing
            outcome = self.chain.run(CloseLease(lease))
            self.records.mark_closed(lease.id)
            self.log.info("lease_given_up", lease=lease.id, status=outcome.status)

    def check_reorg(self) -> Reorg | None:
        """Whether the chain replaced the last block applied (a reorganisation deeper than
        ``confirmations``). If so: every open lease the chain no longer has is dropped (its job
        stopped, no receipt signed for it again) and events are read again from the fork."""
        reorg = detect_reorg(self.client, self.store.applied_blocks())
        if reorg is None:
            return None
        deployed = self.client.contracts.deployment.deploy_block
        fork = reorg.fork if reorg.fork is not None else deployed
        live = self.records.open_leases()
        states = self.client.lease_states([lease.id for lease in live])  # before any change
        self.log.warning(
            "reorg_detected", depth=reorg.depth, fork=fork, beyond_window=reorg.fork is None
        )
        with self.store.db.transaction():
            for lease in live:
                if states[lease.id].status == LeaseStatus.NONE:
                    self._drop(lease)
            self.store.rewind(fork)
        self.labs = None  # labs' records folded again, from the new branch
        return reorg

    def _drop(self, lease: Lease) -> None:
        """The chain no longer has ``lease``: stop its job and sign nothing more for it. Without
        a receipt signed, it is forgotten, so the same lease opening again on the new branch is
        taken up as new; with one, it stays ended (a new receipt chain for it would equivocate)."""
        self._stop(lease.id, "a reorganisation removed the lease")
        self.running.pop(lease.id, None)
        self.meters.pop(lease.id, None)
        self.last_period.pop(lease.id, None)
        if self.records.receipts(lease.id):
            self.store.mark_ended(lease.id)
            self.records.mark_closed(lease.id)
            self.records.mark_released(lease.id)  # no stake lock to wait for: no lease
        else:
            self.store.forget_lease(lease.id)
            self.records.forget_lease(lease.id)
        self.log.warning("lease_gone", lease=lease.id, lab=lease.lab)

    def _lab_book(self, start: int) -> ReputationBook | None:
        """Labs' dispute records, when the config refuses labs by them: the market's events
        folded from its deployment (those before ``start`` read once), then as they are followed."""
        if self.config.agent.max_lab_disputes_lost is None:
            return None
        if self.labs is None:
            self.labs = ReputationBook()
            first = self.client.contracts.deployment.deploy_block
            for low in range(first, start, DEFAULT_CHUNK_BLOCKS):
                older = self.client.events(low, min(low + DEFAULT_CHUNK_BLOCKS, start) - 1)
                self.labs.apply_all((e for e in older if e.name in LAB_RECORD_EVENTS), {})
        return self.labs

    def _refuses(self, lab: str) -> LabRecord | None:
        """``lab``'s record when the config refuses it (more disputes lost than it allows)."""
        limit = self.config.agent.max_lab_disputes_lost
        if limit is None or self.labs is None:
            return None
        record = self.labs.lab_record(lab)
        return record if record.disputes_lost > limit else None

    def _apply(self, events: list[ChainEvent], me: str, refused: list[Lease]) -> None:
        for event in events:
            a = event.args
            if event.name == "LeaseOpened" and a["provider"] == me:
                lease: Lease = a["lease"]
                model = self.store.offer_model(a["offer_hash"]) or "unknown"
                self.records.save_lease(lease)
                self.store.add_lease(lease.id, a["bid_hash"], model, lease.gpus, lease.end)
                self.log.info(
                    "lease_opened", lease=lease.id, lab=lease.lab, gpus=lease.gpus,
                    price=lease.price_per_gpu_second, duration=lease.duration,
                )  # fmt: skip
                if (record := self._refuses(lease.lab)) is not None:
                    self.store.mark_ended(lease.id)  # its job is refused: "the lease has ended"
                    refused.append(lease)
                    self.log.warning(
                        "lab_refused", lease=lease.id, lab=lease.lab,
                        disputes_lost=record.disputes_lost,
                        max_lab_disputes_lost=self.config.agent.max_lab_disputes_lost,
                    )  # fmt: skip
            elif event.name == "LeaseTerminated":
                self._terminated(a["lease_id"], int(a["end"]))
            elif event.name in ("LeaseClosed", "LeaseSlashed") and self.records.lease(
                a["lease_id"]
            ):
                self.records.mark_closed(a["lease_id"])
                self._stop(a["lease_id"], "the lease closed")
                self.store.mark_ended(a["lease_id"])
                self.log.info("lease_closed", lease=a["lease_id"], by=event.name)

    def start_jobs(self) -> None:
        """Start the jobs whose spec arrived, at most ``STARTS_PER_TICK`` a tick: a burst of
        leases must not hold up metering and claims (the rest start next tick)."""
        started = 0
        for row in self.store.jobs(ended=False):
            if row.spec is None or row.state != JobState.RUNNING.value:
                continue
            if row.lease_id in self.running:
                continue
            if started == STARTS_PER_TICK:
                return
            started += 1
            spec = JobSpec.decode(row.spec)
            try:
                self.running[row.lease_id] = self._launch(row, spec)
            except JobRefused as exc:  # billed by the lease's terms, as any job that failed
                self.store.set_state(row.lease_id, JobState.FAILED, f"refused: {exc}")
                self.counters.jobs.inc(outcome="refused")
                self.log.warning("job_refused", lease=row.lease_id, what=exc.what,
                                 asked=exc.asked, allowed=exc.allowed)  # fmt: skip
                continue
            except OSError as exc:  # no such program, not executable, no space for its folder
                self.store.set_state(row.lease_id, JobState.FAILED, f"cannot start: {exc}")
                self.counters.jobs.inc(outcome="failed")
                self.log.warning("job_not_started", lease=row.lease_id, error=str(exc))
                continue
            self.counters.jobs.inc(outcome="started")
            self.log.info("job_started", lease=row.lease_id, kind=spec.kind)

    def _launch(self, row: JobRow, spec: JobSpec) -> _Running:
        """Start the lease's job in the agent's confinement; JobRefused if its policy forbids
        what the spec asks for."""
        name = f"lease-{row.lease_id.hex()[:12]}"
        self.confinement.admit(name, spec)
        folder = self.workdir / row.lease_id.hex()
        devices = self._devices(row.model, row.gpus)
        run = self.confinement.run_spec(name, job_argv(spec), devices, network=spec.network)
        job = Job.start(run, folder)
        return _Running(job, OutputTail(folder / "stdout", offset=row.out_offset), devices)

    def _devices(self, model: str, gpus: int) -> tuple[int, ...]:
        """``gpus`` device indices of ``model`` that no running job holds (the job is pinned to
        them: ``CUDA_VISIBLE_DEVICES``)."""
        busy = {d for r in self.running.values() if r.job.poll() is None for d in r.devices}
        group = next((g for g in self.inventory.groups if g.model == model), None)
        free = [] if group is None else [d for d in group.devices if d not in busy]
        if len(free) < gpus:
            self.log.warning("devices_short", model=model, wanted=gpus, free=len(free))
        return tuple(free[:gpus])

    # --- metering ----------------------------------------------------------------------------

    def _terminated(self, lease_id: bytes, end: int) -> None:
        """The lab terminated the lease: its end comes forward to ``end`` (once)."""
        row = self.store.job(lease_id)
        if row is not None and end < row.end_time:
            self.store.set_end(lease_id, end)
            self.log.info("lease_terminated", lease=lease_id, end=end)

    def _current_end(self, row: JobRow, state: LeaseState) -> int | None:
        """The lease's end as the chain has it now (a termination moves it forward, and is
        read here before a receipt even when its event is not yet deep enough to follow: a
        receipt past it would be refused); None once the lease is closed."""
        if state.status is LeaseStatus.CLOSED:
            return None
        if state.status is LeaseStatus.TERMINATED:
            self._terminated(row.lease_id, state.end)
            return min(row.end_time, state.end)
        return row.end_time

    def meter(self, head_time: int) -> None:
        interval = self.config.metering.interval_s
        rows: list[tuple[JobRow, Lease, bool, bool]] = []
        for row in self.store.jobs(ended=False):
            lease = self.records.lease(row.lease_id)
            if lease is not None:
                due = time.monotonic() - self.last_period.get(row.lease_id, 0.0) >= interval
                receipt = row.spec is not None and (due or head_time >= row.end_time)
                rows.append((row, lease, due, receipt))
        # The states of the leases about to be receipted, in one batch of reads.
        states = self.client.lease_states([row.lease_id for row, *_, receipt in rows if receipt])
        # One commit for the tick's receipts: none is served before it, and nothing in the loop
        # reads the chain; an error ends the process, which resumes from what was committed.
        with self.store.db.transaction():
            self._meter_rows(rows, states, head_time)

    def _meter_rows(
        self,
        rows: list[tuple[JobRow, Lease, bool, bool]],
        states: Mapping[bytes, LeaseState],
        head_time: int,
    ) -> None:
        for row, lease, due, receipt in rows:
            end: int | None = row.end_time
            if receipt:
                end = self._current_end(row, states[row.lease_id])
            if end is None:  # closed (its event is not deep enough yet): nothing more to bill
                self._stop(row.lease_id, "the lease closed")
                self._end_work(row.lease_id, "closed")
                continue
            ended = head_time >= end
            if ended:
                self._stop(row.lease_id, "the lease ended")
            if row.spec is not None and (due or ended):
                self._close_period(row, lease, head_time, end)
            if ended:
                self._end_work(row.lease_id, "ended")
            elif self._check_payment(row, lease):
                self._end_work(row.lease_id, "payment stopped")

    def _end_work(self, lease_id: bytes, why: str) -> None:
        """No receipt is signed for the lease from now on: only its settlement is left."""
        self.store.mark_ended(lease_id)
        self.log.info("lease_work_ended", lease=lease_id, why=why)

    def _meter(self, lease: Lease) -> Meter:
        meter = self.meters.get(lease.id)
        if meter is None:
            meter = Meter.resume(self.records, self.key, self.domain, lease)
            self.meters[lease.id] = meter
        return meter

    def _close_period(self, row: JobRow, lease: Lease, head_time: int, end: int) -> None:
        meter = self._meter(lease)
        head = meter.chain.head
        start = lease.start if head is None else head.message.period_end
        run = self.running.get(row.lease_id)
        period_end = meter.period_end(head_time, end)
        if period_end <= start:  # e.g. already receipted up to a termination
            return
        busy = 0.0
        output = b""
        streamed: StreamedOutput | None = None
        if run is not None:
            elapsed = run.job.elapsed_s()
            busy, run.billed_s = max(0.0, elapsed - run.billed_s), elapsed
            self._reap(row.lease_id, run)  # first: what an exited job wrote is all in the file
        # What the job wrote since the last receipt, all of it (no output trails into a later
        # period); after a restart, what the job wrote before it died with the last agent.
        tail = (
            run.tail
            if run is not None
            else OutputTail(self.workdir / row.lease_id.hex() / "stdout", offset=row.out_offset)
        )
        size = tail.available()
        if size > INLINE_OUTPUT:
            streamed = StreamedOutput.of_file(
                tail.path, start=tail.offset, size=size, chunk_size=STREAM_CHUNK
            )
            tail.skip(size)
        else:
            output = tail.read_new(size)
        offset = tail.offset
        spec = JobSpec.decode(row.spec or b"")

        def also(conn: object, period: Period) -> None:
            sealed = (
                b""
                if period.streamed is not None
                else seal(
                    spec.lab_key,
                    msgpack.packb(list(period.chunks), use_bin_type=True),
                    associated_data(lease.id, Purpose.JOB_OUTPUT),
                )
            )
            seq = period.receipt.message.seq
            AgentStore.save_period(
                conn,  # type: ignore[arg-type]
                lease.id, seq, sealed, period.metrics, offset, period.streamed,
            )  # fmt: skip

        period = meter.close_period(period_end, busy, output, end=end, also=also, streamed=streamed)
        self.last_period[row.lease_id] = time.monotonic()
        self.counters.receipts.inc()
        self.log.info("receipt", lease=lease.id, seq=period.receipt.message.seq,
                      gpu_seconds=period.receipt.message.gpu_seconds_cumulative,
                      output_bytes=offset - row.out_offset)  # fmt: skip

    def _reap(self, lease_id: bytes, run: _Running) -> None:
        """Record a job that exited (its output is all in the file by now)."""
        code = run.job.poll()
        if code is None:
            return
        row = self.store.job(lease_id)
        if row is not None and row.state == JobState.RUNNING.value:
            state = JobState.FINISHED if code == 0 else JobState.FAILED
            error = ""
            try:
                run.job.result()
            except (JobError, SandboxUnavailable) as exc:  # typed: disk, memory, sandbox, exit
                error = f"exit code {code}: {str(exc)[-500:]}"
            self.store.set_state(lease_id, state, error)
            self.counters.jobs.inc(outcome=state.value)
            self.log.info("job_exited", lease=lease_id, state=state.value, code=code)

    def _stop(self, lease_id: bytes, why: str) -> None:
        run = self.running.get(lease_id)
        if run is not None and run.job.poll() is None:
            run.job.stop()
            self.store.set_state(lease_id, JobState.STOPPED, why)
            self.counters.jobs.inc(outcome="stopped")
            self.log.info("job_stopped", lease=lease_id, why=why)

    def _check_payment(self, row: JobRow, lease: Lease) -> bool:
        """Stop the work when ``max_unpaid_periods`` receipts are unpaid; True when it did. A
        metered lease is judged while its job runs (after that its usage no longer grows); a
        rental lease always, as its receipts bill the GPUs held whether the job runs or not."""
        run = self.running.get(row.lease_id)
        running = run is not None and run.job.poll() is None
        if not running and lease.billing is not Billing.RENTAL:
            return False
        head = self._meter(lease).chain.head
        if head is None:
            return False
        paid_seq = self._paid_seq(lease)
        unpaid = head.message.seq - paid_seq
        if unpaid < self.config.agent.max_unpaid_periods:
            return False
        self.log.warning("payment_stopped", lease=lease.id, unpaid_receipts=unpaid)
        self._stop(lease.id, f"payment stopped: {unpaid} receipts unpaid")
        return True

    def _paid_seq(self, lease: Lease) -> int:
        """The seq of the receipt the best voucher pays for (-1 without one)."""
        best = self.records.best_voucher(lease.id)
        if best is None:
            return -1
        by_hash: dict[bytes, int] = {
            receipt_hash(self.domain, r.message): r.message.seq
            for r in self.records.receipts(lease.id)
        }
        return by_hash.get(best.message.receipt_hash, -1)

    # --- settlement --------------------------------------------------------------------------

    def settle(self, head_time: int) -> None:
        claimable = self.records.claimable()
        if claimable:
            outcome = self.chain.run(ClaimBatch(tuple(claimable)))
            total = outcome.result.get("total", 0)
            self.counters.claims.inc(total, path="voucher")
            self.log.info("claimed", leases=len(claimable), total=total, status=outcome.status)
            after = self.client.lease_states([lease.id for lease, _ in claimable])
            with self.store.db.transaction():
                for lease, _ in claimable:
                    self.records.record_paid(lease.id, after[lease.id].paid)
        open_ids = {lease.id for lease in self.records.open_leases()}
        ended = [
            (row, terms)
            for row in self.store.jobs(ended=True)
            if (terms := self.records.lease(row.lease_id)) is not None and terms.id in open_ids
        ]
        states = self.client.lease_states([lease.id for _, lease in ended])
        paid_up: list[tuple[Lease, int]] = []
        for row, lease in ended:
            paid = self._finish(row, lease, states[lease.id], head_time)
            if paid is not None:
                paid_up.append((lease, paid))
        for start in range(0, len(paid_up), CLOSES_PER_BATCH):
            self._close(paid_up[start : start + CLOSES_PER_BATCH])
        self._release_locks(head_time)
        if self.client.withdrawable(self.key.address) > 0:
            outcome = self.chain.run(Withdraw())
            self.log.info("withdrawn", amount=outcome.result.get("amount", 0))

    def _release_locks(self, head_time: int) -> None:
        """Return to the free stake the locks of leases closed before their proof window ended
        (a close after it releases the lock itself), once that window is over."""
        waiting = self.records.awaiting_release()
        if not waiting:
            return
        states = self.client.lease_states([lease.id for lease in waiting])
        for lease in waiting:
            state = states[lease.id]
            if state.stake_released or state.slashed:
                self.records.mark_released(lease.id)
            elif head_time >= state.end + self._claim_window():
                amount = self.client.release_stake(lease)
                self.records.mark_released(lease.id)
                self.log.info("stake_released", lease=lease.id, amount=amount)

    def _claim_window(self) -> int:
        if self.claim_window is None:
            self.claim_window = self.client.claim_window()
        return self.claim_window

    def _finish(self, row: JobRow, lease: Lease, state: LeaseState, head_time: int) -> int | None:
        """What an ended lease was paid, once that is all its last receipt is owed (close it);
        None while payment may still come, or after claiming optimistically."""
        last = self.records.latest_receipt(lease.id)
        if state.disputed and last is not None:
            # The lab disputed the claim: it and the lab's bond are collected at the ruling
            # deadline (a close meanwhile keeps the disputed amount in escrow).
            self._optimistic(lease, last, head_time)
            return None
        if state.status is LeaseStatus.CLOSED:
            self.records.mark_closed(lease.id)
            return None
        owed = (
            0
            if last is None
            else min(lease.escrow, lease.price_per_gpu_second * last.message.gpu_seconds_cumulative)
        )
        if state.paid >= owed:
            # Paid up: closed once its proof window is over, so that the close also releases its
            # stake lock (or the lab closes it first, which does the same).
            return state.paid if head_time >= state.end + self._claim_window() else None
        best = self.records.best_voucher(lease.id)
        if best is not None and best.message.cumulative_amount >= owed:
            return None  # the next claim batch takes it
        waited = time.time() - (row.ended_at or time.time())
        if waited < self.config.agent.final_voucher_wait_s or last is None:
            return None
        self._optimistic(lease, last, head_time)
        return None

    def _close(self, paid_up: list[tuple[Lease, int]]) -> None:
        """Close paid-up leases in one ``closeLeaseBatch`` (a lease closed meanwhile is skipped)."""
        outcome = self.chain.run(CloseLeaseBatch(tuple(lease for lease, _ in paid_up)))
        with self.store.db.transaction():
            for lease, _ in paid_up:
                self.records.mark_closed(lease.id)
        for lease, paid in paid_up:
            self.log.info("lease_closed_by_provider", lease=lease.id, paid=paid,
                          refund=outcome.result.get("0x" + lease.id.hex(), 0))  # fmt: skip

    def _optimistic(self, lease: Lease, last: Signed[Receipt], head_time: int) -> None:
        claim = self.client.claim_slot(lease.id)
        if claim.disputed:
            # The lab's dispute pays the claim and its bond from the ruling deadline unless the
            # lease's arbiter rules for the lab first (or a proof settles it).
            if head_time >= claim.ruling_deadline:
                self._finalize(lease, "disputed")
            elif lease.id not in self.disputes_seen:
                self.disputes_seen.add(lease.id)
                self.log.warning(
                    "claim_disputed",
                    lease=lease.id,
                    seq=claim.seq,
                    bond=claim.bond,
                    ruling_deadline=claim.ruling_deadline,
                )
        elif claim.seq < last.message.seq or claim.receipt_hash == bytes(32):
            outcome = self.chain.run(PostReceipt(lease, last))
            self.log.info("receipt_posted", lease=lease.id, seq=last.message.seq,
                          status=outcome.status)  # fmt: skip
        elif claim.ready_at and head_time >= claim.ready_at:
            self._finalize(lease, "optimistic")
        elif not claim.ready_at:  # ruled for the lab: nothing more can be claimed; give it back
            self.log.warning("claim_rejected", lease=lease.id, seq=claim.seq)
            self.chain.run(CloseLease(lease))
            self.records.mark_closed(lease.id)

    def _finalize(self, lease: Lease, path: str) -> None:
        outcome = self.chain.run(FinalizeClaim(lease))
        amount = outcome.result.get("amount", 0)
        self.counters.claims.inc(amount, path="optimistic")
        self.log.info("claim_finalized", lease=lease.id, amount=amount, path=path,
                      bond=outcome.result.get("bond", 0), status=outcome.status)  # fmt: skip

    def stop_all(self) -> None:
        for lease_id in list(self.running):
            self._stop(lease_id, "the provider is shutting down")


LAB_RECORD_EVENTS = frozenset(
    {"LeaseOpened", "ClaimDisputed", "DisputeRuled", "ClaimFinalized", "LeaseSlashed"}
)
"""The events a lab's dispute record is folded from (none needs its block's timestamp)."""


def _python() -> tuple[str, ...]:
    """How a job runs Python: this agent's interpreter (jobs import ``nodes.jobs`` from it)."""
    return (sys.executable,)


def job_argv(spec: JobSpec) -> tuple[str, ...]:
    """The command that runs ``spec``: the workloads of :mod:`nodes.jobs` by module, a command
    as given (``python`` as ``argv[0]`` being this agent's interpreter)."""
    p = spec.params
    if isinstance(p, MatmulParams):
        return (*_python(), "-m", "nodes.jobs.matmul", str(p.n), str(p.seed), str(p.rounds))
    if isinstance(p, TrainParams):
        args = (str(p.seed), str(p.segments), str(p.steps), str(p.width))
        return (*_python(), "-m", "nodes.jobs.train", *args)
    first, *rest = p.argv
    return (*_python(), *rest) if first == "python" else (first, *rest)


__all__ = ["INTERRUPTED", "LeaseWork", "ProviderMetrics", "job_argv"]
