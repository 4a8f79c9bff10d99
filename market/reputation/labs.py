"""A lab's dispute record: figures anyone can recompute from the chain, as providers' reputation.

A dispute costs its lab a bond (``docs/decisions/0013-stake-and-disputes.md``), and its outcome is
public, so a provider can see whether a lab disputes what it owes:

* ``disputes_opened``: claims the lab disputed (``ClaimDisputed``);
* ``disputes_won``: settled for the lab: its lease's arbiter ruled for it (``DisputeRuled`` with
  ``for_provider`` false), or a proof of cheating slashed the provider of a lease with a dispute
  not otherwise settled (``LeaseSlashed``);
* ``disputes_lost``: settled for the provider: ruled for it, or paid at the ruling deadline with
  the bond (``ClaimFinalized`` carrying a bond);
* ``bonds_lost``: the bonds those lost disputes paid the providers;
* ``leases_opened``: the lab's leases (``LeaseOpened``).

A dispute neither won nor lost is still open. ``lost_share`` is the reference measure a provider
may refuse labs by.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from market.errors import InvalidField
from market.protocol.types import checksum_address

_COUNTS = ("leases_opened", "disputes_opened", "disputes_won", "disputes_lost", "bonds_lost")


@dataclass(frozen=True, slots=True)
class LabRecord:
    """What the chain says about one lab's disputes (see the module docstring)."""

    lab: str
    leases_opened: int = 0
    disputes_opened: int = 0
    disputes_won: int = 0
    disputes_lost: int = 0
    bonds_lost: int = 0

    def __post_init__(self) -> None:
        try:
            valid = checksum_address(self.lab) == self.lab
        except (ValueError, TypeError):
            valid = False
        if not valid:
            raise InvalidField("LabRecord", "lab", f"must be an EIP-55 address, got {self.lab!r}")
        for name in _COUNTS:
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise InvalidField("LabRecord", name, f"must be an int >= 0, got {value!r}")
        if self.disputes_won + self.disputes_lost > self.disputes_opened:
            raise InvalidField(
                "LabRecord",
                "disputes_opened",
                f"{self.disputes_opened} is fewer than the {self.disputes_won} won and "
                f"{self.disputes_lost} lost",
            )

    @property
    def disputes_open(self) -> int:
        """Disputes not settled yet."""
        return self.disputes_opened - self.disputes_won - self.disputes_lost

    def lost_share(self) -> Fraction:
        """Of its leases, the share whose dispute it lost, pulled towards 0 when there are few
        (``lost / (leases + 2)``): 0 for a lab that never lost one."""
        return Fraction(self.disputes_lost, self.leases_opened + 2)


__all__ = ["LabRecord"]
