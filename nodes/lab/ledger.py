"""The lab's blocking side: its state database, the chain's events, and every chain action.

One :class:`Ledger` lives in one worker thread (a StateDB belongs to the thread that opened it,
and web3 calls block); the agent's event loop hands it work with ``run_in_executor``.

Per tick the agent calls :meth:`Ledger.poll_events` (the lab's leases opening, terminating,
closing, slashed, and receipts the provider posted on-chain), then :meth:`Ledger.run_actions`
(terminations and proofs stored as pending: a lease is terminated once its job is over,
:meth:`Ledger.job_over`, or when it fails), then :meth:`Ledger.settle`:

* a claim posted from a receipt the lab verified is finalized once its window passed (so the
  lease can close); one from a receipt the lab never verified is disputed within its window,
  posting the market's bond (the dispute pays the provider, bond and all, unless a proof or the
  lease's arbiter settles it for the lab), and the lease then closes with that amount held back;
* a lease still open ``claim_window`` after its end is closed (CloseLease through the intent log),
  after redeeming the lab's own best voucher if the provider has not (never close below it);
* the lab's credit (refunds, and slashed stake once vested) is withdrawn (Withdraw through the
  intent log).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from eth_typing import ChecksumAddress

from market.chain.client import ProviderInfo
from market.chain.deploy import Deployment
from market.chain.events import ChainEvent
from market.chain.forks import Reorg, detect_reorg
from market.errors import (
    InvalidField,
    RpcUnavailable,
    TransactionReverted,
    TransactionTimeout,
)
from market.protocol import codec
from market.protocol.eip712 import order_hash
from market.protocol.signing import SigningKey
from market.protocol.types import (
    ZERO_ADDRESS,
    Lease,
    LeaseState,
    LeaseStatus,
    Receipt,
    Signed,
    Voucher,
)
from market.receipts.equivocation import detect_equivocation
from market.receipts.issue import voucher_amount
from market.roles import Lab
from nodes.jobs.spec import JobSpec
from nodes.lab.config import JobConfig
from nodes.lab.store import LAB_MIGRATIONS, JobRecord, LabStore, LeaseRecord
from nodes.state.actions import ClaimBatch, CloseLease, Withdraw
from nodes.state.db import StateDB
from nodes.state.durable import DurableChain, Observe
from nodes.state.optimistic import FinalizeClaim

Emit = Callable[..., None]
"""``emit(event, **fields)``: a progress event (logged, printed, counted)."""
EVENT_CHUNK = 2000
"""Blocks per ``eth_getLogs`` when catching up."""
_TRANSIENT = (RpcUnavailable, TransactionTimeout)


class Ledger:
    """The lab's records and chain actions, for one account (``lab.address``: the key's, or the
    contract wallet it acts for). Use from one thread only."""

    def __init__(
        self,
        db: StateDB,
        lab: Lab,
        deployment: Deployment,
        emit: Emit,
        confirmations: int = 0,
        *,
        voucher_key: SigningKey | None = None,
        observe: Observe | None = None,
    ) -> None:
        self.db = db
        self.voucher_key = lab.key if voucher_key is None else voucher_key
        """The key that signs this lab's vouchers: its own, or the one its bids name."""
        self.confirmations = confirmations
        self.lab = lab
        self.client = lab.client
        self.domain = lab.client.domain
        self.deployment = deployment
        self.store = LabStore(db, self.domain)
        self.durable = DurableChain(db, lab.client, observe=observe)
        self.emit = emit
        self.claim_window = self.client.claim_window()
        self._providers: dict[str, ProviderInfo] = {}
        self._unmatched: set[int] = set()

    @classmethod
    def open(
        cls,
        state: Path,
        deployment: Deployment,
        key: bytes,
        emit: Emit,
        confirmations: int = 0,
        *,
        voucher_key: bytes | None = None,
        wallet: str | None = None,
        observe: Observe | None = None,
    ) -> Ledger:
        """Open the database, connect, and finish the chain actions a previous run left open.
        ``voucher_key`` signs the vouchers when given (the bids name it), else ``key``. With
        ``wallet`` the lab is that contract wallet and ``key`` its owner: bids are for the
        wallet, and every transaction is ``key``'s call to the wallet's ``execute``. ``observe`` is
        told each chain action's kind, outcome and seconds (the lab's metrics)."""
        db = StateDB.open(state, migrations=LAB_MIGRATIONS)
        try:
            lab = Lab.connect(deployment, "0x" + key.hex(), wallet=wallet)
            signer = None if voucher_key is None else SigningKey(voucher_key)
            ledger = cls(
                db, lab, deployment, emit, confirmations, voucher_key=signer, observe=observe
            )
            for outcome in ledger.durable.reconcile():
                emit("intent_reconciled", kind=outcome.kind, status=outcome.status)
        except BaseException:
            db.close()
            raise
        return ledger

    def close(self) -> None:
        self.db.close()

    # --- jobs and bids -----------------------------------------------------------------------

    def prepare_jobs(self, jobs: Sequence[JobConfig], ttl_s: int) -> list[JobRecord]:
        """Sign and store a bid for each configured job that has none yet (before any relay
        sees it); a restart reuses the stored ones."""
        keys = self.store.sealing_key()
        stored = {j.idx for j in self.store.jobs()}
        for idx, job in enumerate(jobs):
            if idx in stored:
                continue
            spec = JobSpec(keys.public, job.params, network=job.network)
            bid = self.lab.bid(
                job.model,
                gpus=job.gpus,
                max_price_per_gpu_second=job.max_price_per_gpu_second,
                duration=job.duration,
                job_spec_hash=spec.hash,
                requirements=job.bid_requirements,
                voucher_signer=self._voucher_signer,
                ttl_s=ttl_s,
            )
            self.store.save_job(idx, spec, bid, order_hash(self.domain, bid.message))
            self.emit("bid_signed", job=idx, model=job.model, gpus=job.gpus,
                      billing=job.billing.name.lower())  # fmt: skip
        return self.store.jobs()

    @property
    def _voucher_signer(self) -> ChecksumAddress:
        """What the bids name as their voucher signer: zero for the lab's own key (never for a
        wallet, whose address is no key's: the owner key, or the voucher key, is named)."""
        own = self.voucher_key.address == self.lab.address
        return ZERO_ADDRESS if own else self.voucher_key.address

    def open_bids(self) -> list[JobRecord]:
        """Jobs whose bid may still be filled: unexpired, GPUs left."""
        now = self.client.chain_time()
        leases = self.store.leases()
        out = []
        for job in self.store.jobs():
            filled = sum(r.lease.gpus for r in leases if r.job_idx == job.idx)
            if filled < job.bid.message.gpu_count and now <= job.bid.message.expiry:
                out.append(job)
        return out

    def fund(self, amount: int | None) -> int:
        """Approve ``amount`` (default: the escrow the open bids can still pull); a wallet
        approves by its own transaction, since a contract signs no EIP-2612 permit."""
        if amount is None:
            amount = sum(
                b.message.max_price_per_gpu_second * b.message.gpu_count * b.message.duration
                for b in (j.bid for j in self.open_bids())
            )
        if amount:
            self.lab.fund(amount)
        return amount

    def provider_info(self, address: str) -> ProviderInfo:
        """The provider's registry record (its endpoint and sealing key), read once and kept
        until :meth:`forget_provider`."""
        info = self._providers.get(address)
        if info is None:
            info = self.client.provider_info(address)
            self._providers[address] = info
        return info

    def forget_provider(self, address: str) -> None:
        """Read the provider's record again next time: it did not answer at its endpoint, which
        a restarted provider may have changed on-chain (``updateProfile``)."""
        self._providers.pop(address, None)

    # --- chain events ------------------------------------------------------------------------

    def poll_events(self) -> int:
        """Apply the events since the stored cursor, up to ``confirmations`` blocks below the
        head, after checking that the chain still has the last block applied
        (:meth:`check_reorg`); returns the last block applied."""
        head = self.client.head().number - self.confirmations
        self.check_reorg()
        start = self.store.cursor()
        if start is None:
            start = self.deployment.deploy_block
        while start <= head:
            end = min(start + EVENT_CHUNK - 1, head)
            # The hash before the events: a reorganisation between the two reads leaves a hash
            # the next check finds replaced, so the chunk is read again.
            block_hash = self.client.block_hashes([end]).get(end)
            if block_hash is None:  # the chain got shorter since the head was read
                break
            events = self.client.events(start, end)
            with self.store.db.transaction():  # one commit per chunk, its cursor included
                for event in events:
                    self._apply(event)
                # Events apply idempotently: a crash replays.
                self.store.set_cursor(end + 1, (end, block_hash))
            start = end + 1
        return head

    def check_reorg(self) -> Reorg | None:
        """Whether the chain replaced the last block applied (a reorganisation deeper than
        ``confirmations``). If so: every lease not closed that the chain no longer has is
        forgotten (no more paying or following it), and events are read again from the fork,
        so a lease that opens again on the new branch is taken up as a new one."""
        reorg = detect_reorg(self.client, self.store.applied_blocks())
        if reorg is None:
            return None
        fork = reorg.fork if reorg.fork is not None else self.deployment.deploy_block
        live = self.store.leases("opened", "running", "ended")
        states = self.client.lease_states([r.lease.id for r in live])  # before any change
        self.emit("reorg_detected", depth=reorg.depth, fork=fork, beyond_window=reorg.fork is None)
        with self.store.db.transaction():
            for record in live:
                if states[record.lease.id].status == LeaseStatus.NONE:
                    self.store.forget_lease(record.lease.id)
                    self.emit("lease_gone", lease=record.lease.id, job=record.job_idx)
            self.store.rewind(fork)
        return reorg

    def _apply(self, event: ChainEvent) -> None:
        args = event.args
        if event.name == "LeaseOpened":
            if args["lab"] != self.lab.address:
                return
            job = self.store.job_for_bid(bytes(args["bid_hash"]))
            lease: Lease = args["lease"]
            if job is not None and self.store.save_lease(lease, job, bytes(args["offer_hash"])):
                self.emit(
                    "lease_opened", lease=lease.id, job=job, provider=lease.provider,
                    gpus=lease.gpus, price=lease.price_per_gpu_second, end=lease.end,
                    billing=lease.billing.name.lower(),
                )  # fmt: skip
                if lease.voucher_key != self.voucher_key.address:  # its bid named another key
                    self.fail(lease, f"cannot pay: vouchers must be signed by "
                              f"{lease.voucher_key}, and this lab signs with "
                              f"{self.voucher_key.address}")  # fmt: skip
            return
        lease_id = bytes(args.get("lease_id", b""))
        record = self.store.lease(lease_id) if lease_id else None
        if record is None:
            return
        if event.name == "LeaseTerminated":
            self.store.update_lease(lease_id, end_at=int(args["end"]))
        elif event.name == "LeaseClosed":
            self.store.update_lease(lease_id, phase="closed")
            self.emit("lease_closed", lease=lease_id, paid=args["paid"], refund=args["refund"])
        elif event.name == "LeaseSlashed":
            self.store.update_lease(lease_id, phase="closed")
            self.emit("lease_slashed", lease=lease_id, penalty=args["penalty"])
        elif event.name == "ReceiptPosted":
            self._posted(record, args["receipt"], bytes(args["signature"]))

    def _posted(self, record: LeaseRecord, receipt: Receipt, signature: bytes) -> None:
        """The provider's optimistic claim: compare it with what the lab verified."""
        try:
            posted = Signed(receipt, signature)
        except InvalidField:
            return  # the contract checked the signature; a malformed one cannot be posted
        lease = record.lease
        stored = self.store.receipt(lease.id, receipt.seq)
        self.emit("receipt_posted", lease=lease.id, seq=receipt.seq)
        if stored is not None and stored.message != receipt:
            if detect_equivocation(self.domain, stored, posted, provider=lease.receipt_key):
                self.fail(lease, f"receipt {receipt.seq} posted differs from the one verified",
                          equivocation=(stored, posted))  # fmt: skip
            return
        if stored is None and _impossible(lease, receipt):
            self.fail(lease, f"posted receipt {receipt.seq} claims impossible usage",
                      impossible=posted)  # fmt: skip
        self.store.update_lease(lease.id, posted=True)

    # --- receipts, vouchers, failures --------------------------------------------------------

    def accept(self, signed: Signed[Receipt], output: bytes) -> Signed[Voucher]:
        """Store a verified receipt and its output, then sign (by the lease's voucher key) and
        store the voucher paying for it (both before anything is sent). It pays what the receipt
        bills, whichever the billing: price x cumulative GPU-seconds, capped at the escrow."""
        r = signed.message
        record = self._record(r.lease_id)
        digest = self.store.accept_receipt(signed, output)
        lease = record.lease
        # Cumulative: never less than before.
        amount = max(voucher_amount(lease, r), self.store.vouched(lease.id))
        voucher = self.voucher_key.sign(self.domain, Voucher(lease.id, amount, digest))
        self.store.save_voucher(voucher)
        return voucher

    def job_over(self, lease_id: bytes) -> bool:
        """The lease's job is over (its output verified, or it failed or was stopped): decide
        (store) the termination paying what was vouched, so a rental stops costing now; the
        receipts up to the termination are still verified and paid. True the first time."""
        return self.store.add_action(lease_id, "terminate", amount=self.store.vouched(lease_id))

    def fail(
        self,
        lease: Lease,
        reason: str,
        *,
        equivocation: tuple[Signed[Receipt], Signed[Receipt]] | None = None,
        impossible: Signed[Receipt] | None = None,
    ) -> None:
        """Stop paying: record why, then decide (store) a termination paying what was vouched
        and, when the evidence proves it on-chain, the proof."""
        self.store.update_lease(lease.id, phase="ended", failure=reason)
        self.store.add_action(lease.id, "terminate", amount=self.store.vouched(lease.id))
        if equivocation is not None:
            a, b = equivocation
            self.store.add_action(lease.id, "equivocation", codec.encode(a), codec.encode(b))
        if impossible is not None:
            self.store.add_action(lease.id, "impossible_usage", codec.encode(impossible))
        self.emit("lease_failed", lease=lease.id, reason=reason)

    def _record(self, lease_id: bytes) -> LeaseRecord:
        record = self.store.lease(lease_id)
        if record is None:
            raise KeyError(f"unknown lease 0x{lease_id.hex()}")
        return record

    # --- chain actions -----------------------------------------------------------------------

    def run_actions(self) -> None:
        """Carry out the pending terminations, proofs and disputes, each skipped when the chain
        shows it is no longer needed; transient failures stay pending for the next tick."""
        actions = self.store.actions("pending")
        # What the terminations decide from, read once for all of them.
        states = self.client.lease_states([a.lease_id for a in actions if a.kind == "terminate"])
        now = self.client.chain_time() if states else 0
        for action in actions:
            lease = self._record(action.lease_id).lease
            try:
                if action.kind == "terminate":
                    reason = self._terminate(lease, states[lease.id], now, action.amount)
                else:
                    reason = self._act(action.kind, lease, action.a, action.b)
            except _TRANSIENT as exc:
                self.emit("action_retry", lease=lease.id, kind=action.kind, error=str(exc))
                continue
            except (TransactionReverted, InvalidField) as exc:
                self.store.finish_action(action.id, "failed", str(exc))
                self.emit("action_failed", lease=lease.id, kind=action.kind, error=str(exc))
                continue
            self.store.finish_action(action.id, "done", reason)

    def _terminate(self, lease: Lease, state: LeaseState, now: int, amount: int) -> str:
        if state.status != LeaseStatus.ACTIVE or now >= state.end:
            return f"not needed: lease is {state.status.name.lower()} or ended"
        self.lab.terminate(lease, amount)
        self.emit("lease_terminated", lease=lease.id, paid=amount)
        return "terminated"

    def _act(self, kind: str, lease: Lease, a: bytes, b: bytes) -> str:
        if kind == "equivocation":
            first = codec.decode_as(a, Signed[Receipt])
            second = codec.decode_as(b, Signed[Receipt])
            penalty = self.lab.prove_equivocation(lease, first, second)
            self.emit("fraud_proved", lease=lease.id, kind=kind, penalty=penalty)
            return f"penalty {penalty}"
        if kind == "impossible_usage":
            penalty = self.lab.prove_impossible_usage(lease, codec.decode_as(a, Signed[Receipt]))
            self.emit("fraud_proved", lease=lease.id, kind=kind, penalty=penalty)
            return f"penalty {penalty}"
        self.lab.dispute(lease)
        self.emit("claim_disputed", lease=lease.id, receipt=a)
        return "disputed"

    def settle(self) -> None:
        """Finalize or dispute posted claims, close leases whose claim window has passed, and
        withdraw the lab's credit."""
        now = self.client.chain_time()
        for record in self.store.leases("opened", "running", "ended"):
            lease = record.lease
            pending = self.client.pending_claim(lease.id) if record.posted else None
            if record.posted and pending is None:
                self.store.update_lease(lease.id, posted=False)
            # A claim this lab disputed no longer holds the lease: a close keeps its amount in
            # escrow until the dispute is settled (by its arbiter, a proof, or the deadline).
            if pending is not None and not pending.disputed:
                if not self.store.has_receipt_hash(lease.id, pending.receipt_hash):
                    if now < pending.ready_at:
                        self.store.add_action(lease.id, "dispute", pending.receipt_hash)
                    continue
                if now >= pending.ready_at:
                    try:
                        self.durable.run(FinalizeClaim(lease))
                    except TransactionReverted as exc:
                        self.emit("action_failed", lease=lease.id, kind="finalize_claim",
                                  error=str(exc))  # fmt: skip
                continue
            if now < record.end_at + self.claim_window:
                continue
            state = self.client.lease_state(lease.id)
            if state.status == LeaseStatus.CLOSED:
                self.store.update_lease(lease.id, phase="closed")
                continue
            if now < state.end + self.claim_window:
                continue
            best = self.store.best_voucher(lease.id)
            if best is not None and min(best[0].message.cumulative_amount, lease.escrow) > (
                state.paid
            ):
                # An honest lab never closes below what it vouched for: a provider cut off by an
                # outage past the claim window is paid its unclaimed voucher first (anyone may
                # redeem it; the lab does), and only the rest is refunded (issue 14, bug E).
                try:
                    self.durable.run(ClaimBatch(((lease, best[0]),)))
                    self.emit("voucher_redeemed_for_provider", lease=lease.id,
                              amount=best[0].message.cumulative_amount)  # fmt: skip
                except TransactionReverted as exc:
                    self.emit("action_failed", lease=lease.id, kind="claim", error=str(exc))
                    continue
            try:
                outcome = self.durable.run(CloseLease(lease))
            except TransactionReverted as exc:  # e.g. a claim was posted meanwhile
                self.emit("action_failed", lease=lease.id, kind="close_lease", error=str(exc))
                continue
            self.store.update_lease(lease.id, phase="closed")
            self.emit("lease_closed", lease=lease.id, refund=outcome.result.get("refund", 0))
        if self.store.leases("closed") and self.client.withdrawable(self.lab.address) > 0:
            outcome = self.durable.run(Withdraw())
            self.emit("refund_withdrawn", amount=outcome.result.get("amount", 0))

    def done(self) -> bool:
        """Every job settled: its bid can no longer fill, its leases are closed, nothing is
        pending, and the lab's credit is withdrawn."""
        if self.open_bids():
            return False
        leases = self.store.leases()
        for job in self.store.jobs():
            if not any(r.job_idx == job.idx for r in leases) and job.idx not in self._unmatched:
                self._unmatched.add(job.idx)
                self.emit("job_unmatched", job=job.idx)
        if any(r.phase != "closed" for r in leases):
            return False
        if self.store.actions("pending") or self.durable.log.open_intents():
            return False
        return self.client.withdrawable(self.lab.address) == 0


def _impossible(lease: Lease, receipt: Receipt) -> bool:
    """Whether a receipt reports usage no lease could produce (as ``slashImpossibleUsage``
    judges, chain time aside)."""
    end = min(receipt.period_end, lease.end)
    return receipt.period_start < lease.start or receipt.gpu_seconds_cumulative > lease.gpus * max(
        0, end - lease.start
    )


__all__ = ["EVENT_CHUNK", "Emit", "Ledger"]
