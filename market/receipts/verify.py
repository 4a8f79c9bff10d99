"""Verifying a lease's chain of receipts offline, from the lease terms and the EIP-712 domain alone.

Receipt ``seq`` is accepted when, in this order:

1. its ``leaseId`` is the lease's id (else :class:`~market.errors.ReceiptWrongLease`);
2. the lease's ``receipt_key`` signed it: the key the offer named, else the provider's own, the
   only signature the contract accepts on a receipt
   (:class:`~market.errors.ReceiptSignatureInvalid`);
3. ``seq`` is 0 or follows the last accepted receipt, and ``prevHash`` is that receipt's hash, zero
   for ``seq`` 0 (:class:`~market.errors.ReceiptChainBroken`);
4. its period is non-empty, starts where the previous one ended (the first one anywhere from the
   lease start, since a job may begin after the lease opens) and ends by the lease's end
   (:class:`~market.errors.ReceiptPeriodInvalid`);
5. ``gpuSecondsCumulative`` has not decreased (:class:`~market.errors.ReceiptUsageDecreased`) and is
   at most the GPU time reserved so far, ``gpus x (periodEnd - lease.start)``
   (:func:`reserved_gpu_seconds`; :class:`~market.errors.ReceiptUsageImpossible`);
6. when the period's output chunks are given, their Merkle root is ``outputRoot``
   (:class:`~market.errors.ReceiptOutputMismatch`).

Every error is a :class:`~market.errors.ReceiptError` carrying the receipt's ``seq`` and the values
behind the broken rule. A lab signs a voucher for a receipt only once it is accepted.

The same rules serve both billing modes (:class:`~market.protocol.types.Billing`): a ``RENTAL``
lease's receipts bill the reserved time, so their usage sits on rule 5's bound; a ``METERED``
lease's bill busy GPU time, at or below it. Usage under the bound is the provider's loss, never
the lab's, so neither mode needs a rule of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from market.errors import (
    InvalidArgument,
    InvalidSignature,
    ReceiptChainBroken,
    ReceiptOutputMismatch,
    ReceiptPeriodInvalid,
    ReceiptSignatureInvalid,
    ReceiptUsageDecreased,
    ReceiptUsageImpossible,
    ReceiptWrongLease,
)
from market.protocol.eip712 import Domain, receipt_hash
from market.protocol.signing import verify_receipt
from market.protocol.types import ZERO_HASH, Lease, Receipt, ReceiptHash, Signed
from market.receipts.merkle import output_root, verify_chunk


def reserved_gpu_seconds(lease: Lease, until: int, end: int | None = None) -> int:
    """The GPU time reserved to the lab from the lease's start until ``until`` (chain time), never
    past ``end`` (the lease's current end, earlier than the scheduled ``lease.end`` when the lab
    terminated it; the scheduled one by default): ``gpus x (min(until, end) - start)``, and 0
    before the start.

    What a ``RENTAL`` lease bills by ``until``, and the most any receipt ending then may claim."""
    stop = min(until, lease.end if end is None else end)
    return lease.gpus * max(0, stop - lease.start)


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The last accepted receipt, as far as the next one is concerned."""

    seq: int
    hash: ReceiptHash
    period_end: int
    gpu_seconds: int

    @classmethod
    def of(cls, domain: Domain, receipt: Receipt) -> ChainHead:
        return cls(
            receipt.seq,
            receipt_hash(domain, receipt),
            receipt.period_end,
            receipt.gpu_seconds_cumulative,
        )


class ReceiptVerifier:
    """Accepts one lease's receipts in order; the lab's side of the chain.

    ``lease_end`` is the lease's effective end when a termination brought it forward (it defaults
    to the scheduled ``lease.end``). ``head`` resumes after a receipt already accepted.
    """

    __slots__ = ("domain", "head", "lease", "lease_end", "lease_id")

    def __init__(
        self,
        domain: Domain,
        lease: Lease,
        *,
        lease_end: int | None = None,
        head: ChainHead | None = None,
    ) -> None:
        end = lease.end if lease_end is None else lease_end
        if not lease.start <= end <= lease.end:
            raise InvalidArgument(
                "lease_end", end, f"lease end {end} is outside [{lease.start}, {lease.end}]"
            )
        self.domain = domain
        self.lease = lease
        self.lease_end = end
        self.head = head
        self.lease_id = lease.id

    def accept(self, signed: Signed[Receipt], chunks: Sequence[bytes] | None = None) -> ChainHead:
        """Verify ``signed`` as the next receipt (and ``chunks`` as its outputs), then advance."""
        receipt = signed.message
        self._check_lease(receipt)
        try:
            verify_receipt(self.domain, signed, self.lease.receipt_key)
        except InvalidSignature as exc:
            raise ReceiptSignatureInvalid(
                receipt.seq, exc.digest, exc.expected, exc.recovered, exc.reason
            ) from exc
        self.head = self.check(receipt, chunks)
        return self.head

    def check(self, receipt: Receipt, chunks: Sequence[bytes] | None = None) -> ChainHead:
        """Every rule but the signature, without advancing; the head ``receipt`` would make."""
        self._check_lease(receipt)
        head = self.head
        seq = receipt.seq
        expected_seq = 0 if head is None else head.seq + 1
        expected_prev = ZERO_HASH if head is None else head.hash
        if seq != expected_seq or receipt.prev_hash != expected_prev:
            raise ReceiptChainBroken(seq, expected_seq, receipt.prev_hash, expected_prev)
        self._check_period(receipt, None if head is None else head.period_end)
        used = receipt.gpu_seconds_cumulative
        if head is not None and used < head.gpu_seconds:
            raise ReceiptUsageDecreased(seq, head.gpu_seconds, used)
        if used > reserved_gpu_seconds(self.lease, receipt.period_end):
            elapsed = receipt.period_end - self.lease.start
            raise ReceiptUsageImpossible(seq, used, self.lease.gpus, elapsed)
        if chunks is not None:
            computed = output_root(chunks)
            if computed != receipt.output_root:
                raise ReceiptOutputMismatch(seq, receipt.output_root, computed)
        return ChainHead.of(self.domain, receipt)

    def _check_lease(self, receipt: Receipt) -> None:
        if receipt.lease_id != self.lease_id:
            raise ReceiptWrongLease(receipt.seq, self.lease_id, receipt.lease_id)

    def _check_period(self, receipt: Receipt, expected_start: int | None) -> None:
        start, end = receipt.period_start, receipt.period_end
        if start >= end:
            reason = "is empty or reversed: a period ends after it starts"
        elif expected_start is None and start < self.lease.start:
            reason = f"starts before the lease, which starts at {self.lease.start}"
        elif expected_start is not None and start != expected_start:
            reason = f"does not start where receipt {receipt.seq - 1} ended, at {expected_start}"
        elif end > self.lease_end:
            reason = f"ends after the lease, which ends at {self.lease_end}"
        else:
            return
        raise ReceiptPeriodInvalid(receipt.seq, start, end, expected_start, self.lease_end, reason)


def verify_chain(
    domain: Domain,
    lease: Lease,
    receipts: Iterable[Signed[Receipt]],
    *,
    outputs: Mapping[int, Sequence[bytes]] | None = None,
    lease_end: int | None = None,
) -> ChainHead | None:
    """Verify a whole chain from ``seq`` 0; return its head (None for no receipts).

    ``outputs`` maps a receipt's ``seq`` to its period's output chunks, checked against its
    ``outputRoot``; receipts without an entry are not checked for outputs.
    """
    verifier = ReceiptVerifier(domain, lease, lease_end=lease_end)
    for signed in receipts:
        chunks = None if outputs is None else outputs.get(signed.message.seq)
        verifier.accept(signed, chunks)
    return verifier.head


def check_chunk(receipt: Receipt, index: int, data: bytes, proof: Sequence[bytes]) -> None:
    """Raise ReceiptOutputMismatch unless ``data`` is chunk ``index`` under the receipt's root.

    For outputs that arrive one chunk at a time, each with its Merkle proof.
    """
    if not verify_chunk(receipt.output_root, index, data, proof):
        raise ReceiptOutputMismatch(receipt.seq, receipt.output_root, None, index)


__all__ = ["ChainHead", "ReceiptVerifier", "check_chunk", "reserved_gpu_seconds", "verify_chain"]
