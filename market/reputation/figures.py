"""A provider's reputation: figures anyone can recompute from the chain, and one reference score.

Every figure is a count or a sum over the Market's events (see
:mod:`market.reputation.book` for how each event counts). A lease's *outcome* is one of:

    slashed      a proof of cheating slashed its provider (``LeaseSlashed``), whatever else happened
    terminated   the lab ended it early (``LeaseTerminated``) and it was not slashed
    completed    it closed (``LeaseClosed``), neither terminated nor slashed, with a payment
    unpaid       it closed, neither terminated nor slashed, with nothing paid
    running      none of these yet (active, or past its end and not closed)

so ``leases_opened`` is the sum of the five. The score is a documented formula over these
figures, not a verdict: a lab's selection policy may use it, weigh the figures its own way, or
ignore it.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Final

from market.errors import InvalidField
from market.protocol.types import checksum_address

SLASH_WEIGHT: Final = 4
"""How many disputed claims one slash weighs in :meth:`Reputation.score`."""

_COUNTS: Final = (
    "leases_opened",
    "leases_completed",
    "leases_terminated",
    "leases_slashed",
    "leases_unpaid",
    "gpu_seconds_delivered",
    "tokens_earned",
    "claims_posted",
    "claims_finalized",
    "claims_disputed",
    "slashes",
    "stake_slashed",
)


@dataclass(frozen=True, slots=True)
class Reputation:
    """What the chain says about one provider.

    * ``leases_opened``: leases opened with this provider (``LeaseOpened``); the next four count
      their outcomes (see the module docstring).
    * ``gpu_seconds_delivered``: per lease, what the lab paid divided by the lease's price per
      GPU-second (rounded down), summed; a lease at price zero counts zero. Payment is the one
      on-chain measure of delivered work a lab agreed to (a voucher, or a posted receipt it did not
      dispute in time).
    * ``tokens_earned``: what its leases paid, protocol fee included (the chain credits the fee
      per payment, not per lease), in the settlement token's smallest unit.
    * ``claims_posted`` / ``claims_finalized`` / ``claims_disputed``: optimistic claims from posted
      receipts (``ReceiptPosted``), those paid after the challenge window (``ClaimFinalized``) and
      those the lab refused within it (``ClaimDisputed``).
    * ``slashes`` / ``stake_slashed``: proofs of cheating against it and the stake they took
      (``LeaseSlashed``, which names the provider even when its lease's opening is not in the
      history read).
    * ``median_first_claim_s``: over its leases with any, the lower median of the seconds from the
      lease's start to the block of its first payment (``Claimed``) or posted receipt
      (``ReceiptPosted``); None when no lease has one.
    """

    provider: str
    leases_opened: int = 0
    leases_completed: int = 0
    leases_terminated: int = 0
    leases_slashed: int = 0
    leases_unpaid: int = 0
    gpu_seconds_delivered: int = 0
    tokens_earned: int = 0
    claims_posted: int = 0
    claims_finalized: int = 0
    claims_disputed: int = 0
    slashes: int = 0
    stake_slashed: int = 0
    median_first_claim_s: int | None = None

    def __post_init__(self) -> None:
        try:
            valid = checksum_address(self.provider) == self.provider
        except (ValueError, TypeError):
            valid = False
        if not valid:
            raise InvalidField(
                "Reputation", "provider", f"must be an EIP-55 address, got {self.provider!r}"
            )
        for name in _COUNTS:
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise InvalidField("Reputation", name, f"must be an int >= 0, got {value!r}")
        delay = self.median_first_claim_s
        if delay is not None and (type(delay) is not int or delay < 0):
            raise InvalidField(
                "Reputation", "median_first_claim_s", f"must be None or an int >= 0, got {delay!r}"
            )
        if self.leases_ended > self.leases_opened:
            raise InvalidField(
                "Reputation",
                "leases_opened",
                f"{self.leases_opened} is fewer than the {self.leases_ended} leases that ended",
            )

    @property
    def leases_ended(self) -> int:
        """Leases with an outcome: completed, terminated, slashed or unpaid."""
        return (
            self.leases_completed
            + self.leases_terminated
            + self.leases_slashed
            + self.leases_unpaid
        )

    @property
    def leases_running(self) -> int:
        """Leases opened that have no outcome yet."""
        return self.leases_opened - self.leases_ended

    def score(self) -> Fraction:
        """The reference score, in (0, 1), exact (a Fraction, so equal figures tie exactly)::

            (completed + 1) / (ended + 2) / (1 + claims_disputed + SLASH_WEIGHT * slashes)

        The first factor is Laplace's rule of succession on ended leases: the share that
        completed, pulled towards 1/2 when there are few, so a provider without history scores
        1/2 and one good lease is not a perfect record. The divisor discounts every claim a lab
        disputed and, four times as much, every slash. It falls with each dispute, each slash and
        each lease that ends without completing, and rises with each completed one; running
        leases do not count until they end.
        """
        success = Fraction(self.leases_completed + 1, self.leases_ended + 2)
        return success / (1 + self.claims_disputed + SLASH_WEIGHT * self.slashes)


__all__ = ["SLASH_WEIGHT", "Reputation"]
