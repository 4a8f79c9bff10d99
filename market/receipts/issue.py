"""Issuing receipts: the provider agent's side of a lease's chain, and what each receipt is worth.

:class:`ReceiptChain` numbers and links receipts itself, and checks each one against the same
rules a lab applies (:class:`~market.receipts.verify.ReceiptVerifier`) *before* signing it, so the
provider never signs a receipt that a lab would refuse or that could be used to slash it.
"""

from __future__ import annotations

from market.errors import InvalidArgument
from market.protocol.eip712 import Domain
from market.protocol.signing import SigningKey
from market.protocol.types import ZERO_HASH, Lease, Receipt, Signed, TokenAmount
from market.receipts.verify import ChainHead, ReceiptVerifier


class ReceiptChain:
    """Signs a lease's receipts in order, each with the right ``seq`` and ``prevHash``.

    ``key`` is the lease's receipt key (the provider's own unless its offer named another);
    ``head`` resumes the chain after the provider's last signed receipt (from its store);
    ``lease_end`` is the effective end when the lease was terminated early.
    """

    __slots__ = ("_head", "_key", "_verifier")

    def __init__(
        self,
        key: SigningKey,
        domain: Domain,
        lease: Lease,
        *,
        head: Signed[Receipt] | None = None,
        lease_end: int | None = None,
    ) -> None:
        if key.address != lease.receipt_key:
            raise InvalidArgument(
                "key",
                key.address,
                f"{key.address} is not the lease's receipt key {lease.receipt_key}",
            )
        previous = None if head is None else ChainHead.of(domain, head.message)
        self._key = key
        self._verifier = ReceiptVerifier(domain, lease, lease_end=lease_end, head=previous)
        self._head = head

    @property
    def lease(self) -> Lease:
        return self._verifier.lease

    @property
    def head(self) -> Signed[Receipt] | None:
        """The last receipt signed, or None before the first."""
        return self._head

    @property
    def next_seq(self) -> int:
        head = self._verifier.head
        return 0 if head is None else head.seq + 1

    @property
    def next_period_start(self) -> int:
        """Where the next period starts: the last period's end, or the lease start."""
        head = self._verifier.head
        return self.lease.start if head is None else head.period_end

    def append(
        self,
        period_end: int,
        gpu_seconds_cumulative: int,
        *,
        output_root: bytes = ZERO_HASH,
        metrics_hash: bytes = ZERO_HASH,
        attestation_hash: bytes = ZERO_HASH,
        period_start: int | None = None,
    ) -> Signed[Receipt]:
        """Sign the next receipt, for the period ending at ``period_end``.

        ``period_start`` defaults to :attr:`next_period_start` (only the first receipt may start
        later, when the job began after the lease opened). Raises the
        :class:`~market.errors.ReceiptError` a lab would raise, and signs nothing, when the
        receipt would break a rule: usage that decreases or exceeds what the GPUs could have done,
        a period outside the lease.
        """
        head = self._verifier.head
        receipt = Receipt(
            lease_id=self._verifier.lease_id,
            seq=self.next_seq,
            prev_hash=ZERO_HASH if head is None else head.hash,
            period_start=self.next_period_start if period_start is None else period_start,
            period_end=period_end,
            gpu_seconds_cumulative=gpu_seconds_cumulative,
            output_root=output_root,
            metrics_hash=metrics_hash,
            attestation_hash=attestation_hash,
        )
        new_head = self._verifier.check(receipt)
        signed = self._key.sign(self._verifier.domain, receipt)
        self._verifier.head = new_head
        self._head = signed
        return signed


def voucher_amount(lease: Lease, receipt: Receipt) -> TokenAmount:
    """What the lab owes in total once it accepts ``receipt``: price x cumulative GPU-seconds,
    capped at the escrow (the contract never pays out more than was deposited)."""
    owed = lease.price_per_gpu_second * receipt.gpu_seconds_cumulative
    return TokenAmount(min(owed, lease.escrow))


__all__ = ["ReceiptChain", "voucher_amount"]
