"""The lab's tick: one round of following the chain, its bids and its leases.

Every ``poll_interval_s`` a tick runs, in order: the chain's events (leases of the lab's bids
opening, terminating, closing, claims posted), each live lease's step, the pending chain actions
(terminations, proofs, disputes), then settlement (close, withdraw). A lease's step:

1. ``opened``: seal the job spec to the provider's registered X25519 key and submit it with the
   signed bid (an unknown lease is asked again next tick);
2. ``running``: send the best voucher again if unacknowledged, run the hardware challenge when
   one is due, ask for the periods after the last accepted receipt and have each verified and
   paid (:mod:`nodes.lab.verify`). A command's period that the lab's own rerun has not reached
   yet waits for it (nothing is paid for it meanwhile). Once the job is over (its whole output
   verified, or it failed or was stopped) the lease is terminated, paying what was vouched, so a
   rental stops costing; the receipts up to the termination (or the lease's end) are still
   followed, verified and paid. Any failure stops payment: the lease is terminated paying what
   was vouched, and a provable failure is proved on-chain.

Each placed bid's fate is asked of the relays every tick while it is open and logged when it
changes (:mod:`nodes.lab.fates`: matched, unmatched with the reason, fill failed with the error).
Outages (chain, provider, relay) are logged and retried next tick.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Mapping
from dataclasses import replace

import aiohttp

from market.errors import ChainError, DecodeError, FrameTooLarge
from market.matching import Submission
from market.protocol.types import Receipt, Signed
from market.sealing import Purpose, associated_data, seal
from nodes.daemon.explain import is_filled, log_no_match
from nodes.errors import PeerUnavailable, RequestRefused
from nodes.lab.challenges import BUSY, ENDED, MAX_BUSY, MIN_GAP_S, ChallengeSchedule, run_challenge
from nodes.lab.checks import NotYetCheckable, OutputCheckFailed
from nodes.lab.config import LabConfig
from nodes.lab.fates import BidFates
from nodes.lab.ledger import Ledger
from nodes.lab.metrics import LabMetrics
from nodes.lab.provider_client import JobExists, JobRefused, ProviderClient, UnknownLease
from nodes.lab.store import JobRecord, LeaseRecord
from nodes.lab.verify import Emit, OnLedger, PeriodVerifier, Rejected
from nodes.logs import EventLogger
from nodes.wire import MAX_PERIODS, JobState, SubmitJob
from nodes.wire.messages import OrderStatus
from nodes.wire.relay_client import RelayClient

_ACCEPTED_BIDS = (OrderStatus.ACCEPTED, OrderStatus.DUPLICATE_ORDER)


class LabTicks:
    """The tick's state (the head block, chain time, bids placed, leases by phase) and steps."""

    def __init__(
        self,
        config: LabConfig,
        ledger: Ledger,
        on_ledger: OnLedger,
        emit: Emit,
        log: EventLogger,
        metrics: LabMetrics,
        session: aiohttp.ClientSession,
        jobs: Mapping[int, JobRecord],
        verifier: PeriodVerifier,
        *,
        block: int,
    ) -> None:
        self.config = config
        self.ledger = ledger
        self._w = on_ledger
        self.emit = emit
        self.log = log
        self.metrics = metrics
        self._session = session
        self._jobs = jobs
        self.verifier = verifier
        self._challenges = ChallengeSchedule(config.challenge)
        self._bids_placed: set[int] = set()
        self.fates = BidFates(session, log)
        """Each placed bid's fate as the relay tells it, logged when it changes."""
        self.phases: dict[str, int] = {}
        self.block = block  # the last block whose events were applied
        self.chain_time = 0  # the head's timestamp, read once a tick

    async def tick(self) -> None:
        """One round: events, bids, lease steps, actions, settlement. Chain and peer outages
        are logged and retried next tick."""
        try:
            self.block = await self._w(self.ledger.poll_events)
            self.chain_time = await self._w(self.ledger.client.chain_time)
            open_bids = await self._w(self.ledger.open_bids)
            await self._place_bids(open_bids)
            placed = [j for j in open_bids if j.idx in self._bids_placed]
            await self.fates.follow(self.config.relays, placed)
            live = await self._w(self.ledger.store.leases, "opened", "running")
            await asyncio.gather(*(self._step(record) for record in live))
            await self._w(self.ledger.run_actions)
            await self._w(self.ledger.settle)
            leases = await self._w(self.ledger.store.leases)
            self.phases = {}
            for r in leases:
                self.phases[r.phase] = self.phases.get(r.phase, 0) + 1
            self.metrics.chain.reached()
        except ChainError as exc:
            self.metrics.chain.unreachable(str(exc))
            self.log.warning("chain_unavailable", error=str(exc))

    async def _place_bids(self, open_bids: list[JobRecord]) -> None:
        """Send each open bid to the relays until one accepts it (a duplicate counts)."""
        todo = [j for j in open_bids if j.idx not in self._bids_placed]
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
        unmatched = not explanation.matchable and not is_filled(explanation)
        self.fates.seen(job.idx, "unmatched" if unmatched else "resting")

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
            await self.verifier.send_voucher(provider, best[0])
        if not await self._challenge(record, provider):
            return  # failed: the lease is failing, nothing more is paid
        head = await self._w(store.head, lease.id)
        check = await self.verifier.check(record, self.chain_time)
        batch = await provider.receipts(lease.id, 0 if head is None else head.message.seq + 1)
        for period in batch.periods:
            try:
                head = await self.verifier.period(record, head, check, period, provider)
            except NotYetCheckable:
                return  # the lab's rerun is behind: this period is checked (and paid) later
            except Rejected as exc:
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
        if record.end_at - MIN_GAP_S <= self.chain_time or await self._w(
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
            self.verifier.provider_ended[lease.id] = self.chain_time
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

    async def _fail(
        self,
        record: LeaseRecord,
        reason: str,
        *,
        equivocation: tuple[Signed[Receipt], Signed[Receipt]] | None = None,
        impossible: Signed[Receipt] | None = None,
    ) -> None:
        self.verifier.forget(record.lease.id)
        await self._w(
            lambda: self.ledger.fail(
                record.lease, reason, equivocation=equivocation, impossible=impossible
            )
        )


__all__ = ["LabTicks"]
