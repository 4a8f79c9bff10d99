"""Auditing deterministic work by re-executing a sample of it, and the stake that makes cheating
a losing bet.

A deterministic job runs as numbered segments; each segment's output is one chunk, and the
receipt's ``outputRoot`` commits to their hashes (market.receipts.merkle). After the receipt is
signed, the lab (or a verifier it pays) re-executes the segments drawn by
market.receipts.sampling from the receipt hash and its secret, and compares output hashes. A
provider that skipped or faked a fraction ``f`` of the segments survives ``s`` samples with
probability at most ``(1 - f) ** s``: 44 samples catch ``f = 10%`` with 99% confidence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from market.errors import InvalidArgument, ReceiptOutputMismatch, WorkMismatch
from market.protocol.eip712 import Domain, receipt_hash
from market.protocol.types import Receipt, TokenAmount
from market.receipts.merkle import MerkleTree, chunk_hash
from market.receipts.sampling import audit_seed, sample_indices, samples_needed

DEFAULT_SAMPLES = samples_needed(0.10, 0.01)
"""44: catches a provider faking 10% of the segments with probability at least 99%."""

Rerun = Callable[[int], bytes]
"""Re-executes segment ``i`` of the job from its inputs and returns that segment's output."""


@dataclass(frozen=True, slots=True)
class AuditReport:
    """Which segments were re-executed (in draw order) and which of them came out different."""

    receipt_hash: bytes
    sampled: tuple[int, ...]
    mismatched: tuple[int, ...]

    @property
    def passed(self) -> bool:
        return not self.mismatched

    def raise_for_mismatch(self) -> None:
        """Raise WorkMismatch when any sampled segment came out different."""
        if self.mismatched:
            raise WorkMismatch(self.receipt_hash, self.sampled, self.mismatched)


class ReexecutionAuditor:
    """Re-executes a sample of a receipt's segments through ``rerun`` and compares hashes."""

    __slots__ = ("domain", "rerun", "samples", "secret")

    def __init__(
        self, domain: Domain, rerun: Rerun, secret: bytes, *, samples: int = DEFAULT_SAMPLES
    ) -> None:
        if samples < 1:
            raise InvalidArgument(
                "samples", samples, f"an audit samples at least one segment, got {samples}"
            )
        self.domain = domain
        self.rerun = rerun
        self.secret = secret
        self.samples = samples

    def audit(self, receipt: Receipt, segment_hashes: Sequence[bytes]) -> AuditReport:
        """Audit the segments of ``receipt`` whose output hashes the provider sent.

        Raises ReceiptOutputMismatch when ``segment_hashes`` are not the ones ``outputRoot``
        commits to; otherwise returns the report (see :meth:`AuditReport.raise_for_mismatch`).
        """
        if not segment_hashes:
            raise InvalidArgument("segment_hashes", segment_hashes, "no segments to audit")
        root = MerkleTree(segment_hashes).root
        if root != receipt.output_root:
            raise ReceiptOutputMismatch(receipt.seq, receipt.output_root, root)
        digest = receipt_hash(self.domain, receipt)
        seed = audit_seed(digest, self.secret)
        sampled = sample_indices(seed, len(segment_hashes), self.samples)
        mismatched = tuple(
            sorted(i for i in sampled if chunk_hash(self.rerun(i)) != segment_hashes[i])
        )
        return AuditReport(digest, sampled, mismatched)


def min_stake(price: int, audit_rate: Fraction | float | str) -> TokenAmount:
    """The smallest stake at risk per job that makes cheating unprofitable: ``price x (1-p)/p``,
    rounded up, for audit probability ``p`` (9x the price at ``p = 10%``).

    Why: doing the job earns ``price - cost``. Faking it costs nothing, but with probability
    ``p`` the job is audited, the audit catches the fake (a re-executed segment or a Freivalds
    check fails) and the provider loses the payment and its ``stake``: it expects
    ``(1 - p) * price - p * stake``. Faking pays better only when ``p * stake < cost - p * price``,
    and since ``cost <= price`` (no provider works at a loss) that needs
    ``stake < price * (1 - p) / p``. With at least that much at risk, the work is the provider's
    best move whatever its costs.

    ``audit_rate`` is exact as a Fraction or a decimal string; a float is read as the decimal it
    prints as (0.1 is 1/10).
    """
    if price < 0:
        raise InvalidArgument("price", price, f"price must not be negative, got {price}")
    p = audit_rate if isinstance(audit_rate, Fraction) else Fraction(str(audit_rate))
    if not 0 < p <= 1:
        raise InvalidArgument(
            "audit_rate", audit_rate, f"audit rate must be in (0, 1], got {audit_rate}"
        )
    stake = price * (1 - p) / p
    return TokenAmount(-(-stake.numerator // stake.denominator))


__all__ = ["DEFAULT_SAMPLES", "AuditReport", "ReexecutionAuditor", "Rerun", "min_stake"]
