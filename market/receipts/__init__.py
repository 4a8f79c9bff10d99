"""Verifiable job receipts: the provider's signed, hash-chained account of metered work, and the
lab's checks on it.

* :mod:`~market.receipts.issue`: the provider's :class:`ReceiptChain` and what a receipt is worth;
* :mod:`~market.receipts.verify`: the lab's offline chain verifier;
* :mod:`~market.receipts.equivocation`: two receipts for one period, slashable evidence;
* :mod:`~market.receipts.merkle`: commitments to output chunks, checkable by OpenZeppelin 5;
* :mod:`~market.receipts.sampling`, :mod:`~market.receipts.audit`: re-executing a sample the
  provider cannot predict, and the stake that makes cheating unprofitable;
* :mod:`~market.receipts.freivalds`: checking matrix products in O(n^2);
* :mod:`~market.receipts.challenge`: a timed hardware challenge.

The Receipt message itself lives with the other messages in market.protocol.
"""

from market.receipts.audit import DEFAULT_SAMPLES, AuditReport, ReexecutionAuditor, min_stake
from market.receipts.challenge import Challenge, check_answer, solve
from market.receipts.equivocation import detect_equivocation
from market.receipts.freivalds import freivalds_exact, freivalds_float
from market.receipts.issue import ReceiptChain, voucher_amount
from market.receipts.merkle import MerkleTree, output_root
from market.receipts.sampling import audit_seed, sample_indices, samples_needed
from market.receipts.verify import (
    ChainHead,
    ReceiptVerifier,
    check_chunk,
    reserved_gpu_seconds,
    verify_chain,
)

__all__ = [
    "DEFAULT_SAMPLES",
    "AuditReport",
    "ChainHead",
    "Challenge",
    "MerkleTree",
    "ReceiptChain",
    "ReceiptVerifier",
    "ReexecutionAuditor",
    "audit_seed",
    "check_answer",
    "check_chunk",
    "detect_equivocation",
    "freivalds_exact",
    "freivalds_float",
    "min_stake",
    "output_root",
    "reserved_gpu_seconds",
    "sample_indices",
    "samples_needed",
    "solve",
    "verify_chain",
    "voucher_amount",
]
