"""Which segments an audit re-executes, and how many it takes to catch a cheat.

The sample's seed is ``keccak256(receiptHash || secret)``: the receipt hash commits the provider to
its outputs, and the lab's ``secret`` (at least 16 random bytes, a fresh one per lease or job)
keeps the provider from predicting the sample before it signs. Once the receipt is signed the
sample is fixed: the lab cannot pick another after seeing the outputs. If the lab published
``keccak256(secret)`` beforehand (in the job spec, say), anyone can check the sample once the
secret is revealed.

The sample is a partial Fisher-Yates shuffle driven by ``keccak256(seed || uint256 j)``, so any
language (or a contract) can reproduce it without numpy. Each draw takes a 256-bit value modulo the
remaining population; the bias, below ``population / 2**256``, is negligible.
"""

from __future__ import annotations

import math

from market.errors import InvalidArgument
from market.protocol.keccak import keccak

MIN_SECRET_BYTES = 16


def audit_seed(receipt_hash: bytes, secret: bytes) -> bytes:
    """The 32-byte seed of the audit of the receipt whose hash is ``receipt_hash``."""
    if len(receipt_hash) != 32:
        raise InvalidArgument("receipt_hash", receipt_hash, "a receipt hash is 32 bytes")
    if len(secret) < MIN_SECRET_BYTES:
        raise InvalidArgument(
            "secret",
            len(secret),
            f"the lab's secret must be at least {MIN_SECRET_BYTES} random bytes",
        )
    return keccak(receipt_hash + secret)


def sample_indices(seed: bytes, population: int, count: int) -> tuple[int, ...]:
    """``min(count, population)`` distinct indices below ``population``, in draw order."""
    if population < 0 or count < 0:
        raise InvalidArgument(
            "population, count", (population, count), "population and count must not be negative"
        )
    swapped: dict[int, int] = {}  # the sparse part of a Fisher-Yates permutation
    drawn = []
    for j in range(min(count, population)):
        word = int.from_bytes(keccak(seed + j.to_bytes(32, "big")), "big")
        k = j + word % (population - j)
        drawn.append(swapped.get(k, k))
        swapped[k] = swapped.get(j, j)
    return tuple(drawn)


def samples_needed(fraction: float, miss_probability: float) -> int:
    """Samples that catch a provider faking ``fraction`` of segments with probability at least
    ``1 - miss_probability``: ``ceil(ln d / ln(1 - f))`` (44 for f = 0.1, d = 0.01).

    Each sample, drawn with replacement, misses the fakes with probability ``1 - f``; drawing
    without replacement, as :func:`sample_indices` does, misses them even less often.
    """
    if not 0 < fraction < 1 or not 0 < miss_probability < 1:
        raise InvalidArgument(
            "fraction, miss_probability",
            (fraction, miss_probability),
            "fraction and miss_probability must be strictly between 0 and 1",
        )
    ratio = math.log(miss_probability) / math.log1p(-fraction)
    return math.ceil(ratio * (1 - 1e-12))  # so that float noise cannot push 2.0 up to 3


__all__ = ["MIN_SECRET_BYTES", "audit_seed", "sample_indices", "samples_needed"]
