"""Folding decoded chain events into per-provider reputations and per-lab dispute records, the
same way for anyone.

:class:`ReputationBook` keeps facts per lease and per provider; every update is a sum, a
maximum, a minimum or a flag, so the result does not depend on the order events are applied in
(within a block or across blocks, in one go or in chunks), and applying an event twice (same block
and log index) changes nothing. Figures are derived from the facts when asked for.

How each event counts (arguments as ``market.chain.events`` decodes them):

    LeaseOpened         the lease's terms: provider, price per GPU-second, start
    Claimed             paid so far (``cumulative_paid``); the lease's first payment time
    LeaseTerminated     the lease ended early; paid so far
    LeaseClosed         the lease closed; paid in total
    LeaseSlashed        the lease's provider was proved to cheat; a slash and the stake it took,
                        by provider (the event names the provider, so it counts even when the
                        lease's opening is not in the history read)
    ReceiptPosted       an optimistic claim; the lease's first receipt time
    ClaimFinalized      an optimistic claim paid after its window
    ClaimDisputed       an optimistic claim the lab disputed (the lab's record too)
    DisputeRuled        the lease's arbiter settled a dispute (won or lost, the lab's record)
    ProviderRegistered  the provider is listed (with zero figures until it leases)

``ClaimFinalized`` carrying a bond is a dispute the lab lost at its deadline, and a
``LeaseSlashed`` of a lease with an unsettled dispute one it won
(:class:`market.reputation.labs.LabRecord`).

Every other event is ignored. A lease event whose ``LeaseOpened`` the book has not seen is kept
and counts once the opening arrives (a history read from a later block leaves it uncounted).
``Claimed`` and ``ReceiptPosted`` need their block's timestamp (:data:`TIMED_EVENTS`); chain
events carry only the block number, so the caller passes it (``market.chain.history`` reads both).

    book = ReputationBook()
    book.apply_all(history.events, history.timestamps)
    book.reputation(provider).score()
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from market.errors import InvalidArgument
from market.protocol.types import Lease, checksum_address
from market.reputation.figures import Reputation
from market.reputation.labs import LabRecord

TIMED_EVENTS: Final = frozenset({"Claimed", "ReceiptPosted"})
"""Events the book needs the block timestamp of."""
LEASE_EVENTS: Final = frozenset(
    {
        "LeaseOpened",
        "Claimed",
        "LeaseTerminated",
        "LeaseClosed",
        "LeaseSlashed",
        "ReceiptPosted",
        "ClaimFinalized",
        "ClaimDisputed",
        "DisputeRuled",
    }
)
PROVIDER_EVENTS: Final = frozenset({"ProviderRegistered"})
READ_EVENTS: Final = LEASE_EVENTS | PROVIDER_EVENTS
"""Every event the book reads."""


class ChainLog(Protocol):
    """What the book reads of a decoded event; ``market.chain.events.ChainEvent`` is one."""

    @property
    def name(self) -> str: ...
    @property
    def args(self) -> Mapping[str, Any]: ...
    @property
    def block_number(self) -> int: ...
    @property
    def log_index(self) -> int: ...


@dataclass(slots=True)
class _LeaseFacts:
    terms: Lease | None = None
    paid: int = 0
    terminated: bool = False
    closed: bool = False
    slashed: bool = False
    posted: int = 0
    finalized: int = 0
    disputed: int = 0
    ruled_for_lab: int = 0
    lost: int = 0  # ruled for the provider, or paid with the bond at the deadline
    bonds_lost: int = 0
    first_claim_at: int | None = None

    def disputes_won(self) -> int:
        """Rulings for the lab, and a slash settling a dispute still open (a proof wins it)."""
        unsettled = self.disputed - self.ruled_for_lab - self.lost
        return self.ruled_for_lab + (1 if self.slashed and unsettled > 0 else 0)

    def claimed_at(self, timestamp: int) -> None:
        if self.first_claim_at is None or timestamp < self.first_claim_at:
            self.first_claim_at = timestamp


@dataclass(slots=True)
class _Tally:
    """The figures of one provider being summed up."""

    opened: int = 0
    completed: int = 0
    terminated: int = 0
    slashed: int = 0
    unpaid: int = 0
    gpu_seconds: int = 0
    earned: int = 0
    posted: int = 0
    finalized: int = 0
    disputed: int = 0

    def add(self, lease: _LeaseFacts, terms: Lease) -> None:
        self.opened += 1
        if lease.slashed:
            self.slashed += 1
        elif lease.terminated:
            self.terminated += 1
        elif lease.closed and lease.paid > 0:
            self.completed += 1
        elif lease.closed:
            self.unpaid += 1
        price = terms.price_per_gpu_second
        self.gpu_seconds += lease.paid // price if price else 0
        self.earned += lease.paid
        self.posted += lease.posted
        self.finalized += lease.finalized
        self.disputed += lease.disputed


class ReputationBook:
    """Reputations of every provider in the events applied so far."""

    def __init__(self) -> None:
        self._leases: dict[bytes, _LeaseFacts] = {}
        self._by_provider: dict[str, set[bytes]] = {}
        self._by_lab: dict[str, set[bytes]] = {}
        self._slashes: dict[str, tuple[int, int]] = {}
        self._providers: set[str] = set()
        self._seen: set[tuple[int, int]] = set()
        self.through_block = -1
        """The highest block of an event applied (-1 before any)."""

    def __len__(self) -> int:
        """How many distinct events were applied."""
        return len(self._seen)

    def apply(self, event: ChainLog, timestamp: int | None = None) -> bool:
        """Fold one event in; ``timestamp`` is its block's, required for :data:`TIMED_EVENTS`.
        Returns whether the event counted (False for an event read before or one ignored)."""
        name = event.name
        if name not in READ_EVENTS:
            return False
        at = _time_of(event, timestamp) if name in TIMED_EVENTS else 0
        position = (event.block_number, event.log_index)
        if position in self._seen:
            return False
        self._seen.add(position)
        self.through_block = max(self.through_block, event.block_number)
        args = event.args
        if name in PROVIDER_EVENTS:
            self._apply_provider(name, args)
            return True
        lease = self._leases.setdefault(bytes(args["lease_id"]), _LeaseFacts())
        if name == "LeaseOpened":
            terms: Lease = args["lease"]
            lease.terms = terms
            self._providers.add(terms.provider)
            self._by_provider.setdefault(terms.provider, set()).add(bytes(args["lease_id"]))
            self._by_lab.setdefault(terms.lab, set()).add(bytes(args["lease_id"]))
        elif name == "Claimed":
            lease.paid = max(lease.paid, int(args["cumulative_paid"]))
            lease.claimed_at(at)
        elif name == "LeaseTerminated":
            lease.terminated = True
            lease.paid = max(lease.paid, int(args["paid"]))
        elif name == "LeaseClosed":
            lease.closed = True
            lease.paid = max(lease.paid, int(args["paid"]))
        elif name == "LeaseSlashed":
            lease.slashed = True
            provider = checksum_address(args["provider"])
            self._providers.add(provider)
            count, amount = self._slashes.get(provider, (0, 0))
            self._slashes[provider] = (count + 1, amount + int(args["penalty"]))
        elif name == "ReceiptPosted":
            lease.posted += 1
            lease.claimed_at(at)
        elif name == "ClaimFinalized":
            lease.finalized += 1
            if int(args.get("bond", 0)) > 0:  # a dispute left without a ruling: lost
                lease.lost += 1
                lease.bonds_lost += int(args["bond"])
        elif name == "DisputeRuled":
            if args["for_provider"]:
                lease.lost += 1
                lease.bonds_lost += int(args["bond"])
            else:
                lease.ruled_for_lab += 1
        else:  # ClaimDisputed
            lease.disputed += 1
        return True

    def _apply_provider(self, name: str, args: Mapping[str, Any]) -> None:
        self._providers.add(checksum_address(args["provider"]))

    def apply_all(self, events: Iterable[ChainLog], timestamps: Mapping[int, int]) -> int:
        """Fold events in, with their blocks' timestamps; returns how many counted."""
        return sum(self.apply(e, timestamps.get(e.block_number)) for e in events)

    def providers(self) -> list[str]:
        """Every provider seen (registered, leasing or slashed), in address order."""
        return sorted(self._providers, key=str.lower)

    def reputation(self, provider: str) -> Reputation:
        """The figures of ``provider`` (all zero for one the events never named)."""
        provider = checksum_address(provider)
        tally = _Tally()
        delays: list[int] = []
        for lease_id in self._by_provider.get(provider, ()):
            lease = self._leases[lease_id]
            terms = lease.terms
            if terms is None:  # indexed by provider only once its terms are known
                continue
            tally.add(lease, terms)
            if lease.first_claim_at is not None:
                delays.append(max(0, lease.first_claim_at - terms.start))
        slashes, stake_slashed = self._slashes.get(provider, (0, 0))
        return Reputation(
            provider=provider,
            leases_opened=tally.opened,
            leases_completed=tally.completed,
            leases_terminated=tally.terminated,
            leases_slashed=tally.slashed,
            leases_unpaid=tally.unpaid,
            gpu_seconds_delivered=tally.gpu_seconds,
            tokens_earned=tally.earned,
            claims_posted=tally.posted,
            claims_finalized=tally.finalized,
            claims_disputed=tally.disputed,
            slashes=slashes,
            stake_slashed=stake_slashed,
            median_first_claim_s=statistics.median_low(delays) if delays else None,
        )

    def reputations(self) -> list[Reputation]:
        """The figures of every provider seen, in address order."""
        return [self.reputation(p) for p in self.providers()]

    def lab_record(self, lab: str) -> LabRecord:
        """The dispute record of ``lab`` (all zero for one the events never named)."""
        lab = checksum_address(lab)
        opened = disputed = won = lost = bonds = 0
        for lease_id in self._by_lab.get(lab, ()):
            lease = self._leases[lease_id]
            opened += 1
            disputed += lease.disputed
            won += lease.disputes_won()
            lost += lease.lost
            bonds += lease.bonds_lost
        return LabRecord(lab, opened, disputed, won, lost, bonds)


def _time_of(event: ChainLog, timestamp: int | None) -> int:
    if timestamp is None:
        raise InvalidArgument(
            "timestamp",
            timestamp,
            f"{event.name} at block {event.block_number} needs its block's timestamp",
        )
    return timestamp


__all__ = [
    "LEASE_EVENTS",
    "PROVIDER_EVENTS",
    "READ_EVENTS",
    "TIMED_EVENTS",
    "ChainLog",
    "ReputationBook",
]
