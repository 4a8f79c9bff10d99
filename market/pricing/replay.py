"""Replaying a recorded market through a pricing policy: what it would have earned, how often
it would have matched.

    result = replay(recording, policy, Hardware("H100-80GB", gpus=8, memory_gib=80))
    result.earned, result.match_rate, result.capacity_misses

The provider is one more seller in the recorded market, with ``hardware``'s GPUs. Every demand
of its model is an **opportunity**: a bid the first time a book sample shows it, and a lease the
chain opened for a bid no sample showed (a bid filled before any sample saw it rests nowhere).
At each opportunity the policy is asked its price (``policy.price(model, gpus_free, gpus_total,
time)``, base units per GPU-second; None: no offer) and the provider takes the demand when

* its price is at most the bid's maximum, and below every competing ask in the same sample that
  could fill it (enough GPUs and memory): a tie goes to the ask that was there; for a recorded
  lease, below the price it cleared at (the winner's ask);
* the bid's memory requirement is met and its GPUs are free now.

A taken demand pays ``price x gpus x duration`` (a rental of the whole duration) and holds its
GPUs until ``time + duration``. The replay is pure and deterministic: the recording and the
policy are all it reads. Its model is simple on purpose (a bid is taken whole or not at all, no
partial fills across sellers, other sellers do not react): a comparison of policies on the same
history, not a forecast.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Protocol

from market.errors import InvalidArgument
from market.pricing.record import BookSample, LeaseSample, Recording


class Policy(Protocol):
    def price(self, model: str, gpus_free: int, gpus_total: int, now: int) -> float | None:
        """Base units per GPU-second to ask now (an int; None or inf: no offer)."""
        ...


@dataclass(frozen=True, slots=True)
class Hardware:
    """The GPUs a provider sells: ``gpus`` of ``model`` with ``memory_gib`` each."""

    model: str
    gpus: int
    memory_gib: int

    def __post_init__(self) -> None:
        if self.gpus < 1 or self.memory_gib < 0:
            raise InvalidArgument("hardware", self, "need at least one GPU and memory >= 0")


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What a policy would have done over a recording (amounts in base units)."""

    opportunities: int
    """Demands of the model the hardware could serve (memory), taken or not."""
    matched: int
    earned: int
    gpu_seconds: int
    """GPU-seconds sold."""
    priced_out: int
    """Opportunities with GPUs free lost on price (no offer, above the bid, or not below a
    competitor)."""
    capacity_misses: int
    """Opportunities that found fewer GPUs free than they asked for (the policy not asked)."""
    span_s: int
    """From the first event to the last."""

    @property
    def match_rate(self) -> float:
        """Taken opportunities over all of them (0 when there were none)."""
        return self.matched / self.opportunities if self.opportunities else 0.0

    @property
    def average_price(self) -> int:
        """Earned per GPU-second sold, rounded down (0 when nothing sold)."""
        return self.earned // self.gpu_seconds if self.gpu_seconds else 0


@dataclass(frozen=True, slots=True)
class _Demand:
    time: int
    gpus: int
    duration: int
    ceiling: int
    """The most the demand pays per GPU-second."""
    rival: float
    """The cheapest competing price: the provider must be strictly below it."""


def demands(recording: Recording, hardware: Hardware) -> list[_Demand]:
    """The recording's opportunities for ``hardware``, in time order."""
    seen: set[str] = set()
    out: list[_Demand] = []
    for event in recording.events:
        if event.model != hardware.model:
            continue
        if isinstance(event, BookSample):
            for bid in event.bids:
                if bid.id in seen:
                    continue
                seen.add(bid.id)
                if bid.min_memory_gib > hardware.memory_gib:
                    continue
                rivals = [
                    a.price
                    for a in event.asks
                    if a.gpus >= bid.gpus and a.memory_gib >= bid.min_memory_gib
                ]
                rival = min(rivals, default=float("inf"))
                out.append(_Demand(event.time, bid.gpus, bid.duration, bid.price, rival))
        elif isinstance(event, LeaseSample):
            if event.bid and event.bid in seen:
                continue  # the same demand, already an opportunity as a resting bid
            if event.bid:
                seen.add(event.bid)
            if event.memory_gib > hardware.memory_gib:
                continue  # the lab may have needed the memory: do not count it as ours
            out.append(_Demand(event.time, event.gpus, event.duration, event.price, event.price))
    return out


def replay(recording: Recording, policy: Policy, hardware: Hardware) -> ReplayResult:
    """Run ``policy`` over ``recording`` as a seller of ``hardware``."""
    busy: list[tuple[int, int]] = []  # (free again at, gpus), a heap
    used = matched = earned = gpu_seconds = priced_out = capacity_misses = 0
    times = [e.time for e in recording.events]
    wanted = demands(recording, hardware)
    for d in wanted:
        while busy and busy[0][0] <= d.time:
            used -= heapq.heappop(busy)[1]
        free = hardware.gpus - used
        if d.gpus > free:
            capacity_misses += 1
            continue
        price = policy.price(hardware.model, free, hardware.gpus, d.time)
        if price is None or not 1 <= price <= d.ceiling or not price < d.rival:
            priced_out += 1
            continue
        if price != int(price):
            raise InvalidArgument("price", price, f"a policy priced {price}: prices are integers")
        matched += 1
        earned += int(price) * d.gpus * d.duration
        gpu_seconds += d.gpus * d.duration
        used += d.gpus
        heapq.heappush(busy, (d.time + d.duration, d.gpus))
    span = max(times) - min(times) if times else 0
    return ReplayResult(
        len(wanted), matched, earned, gpu_seconds, priced_out, capacity_misses, span
    )


__all__ = ["Hardware", "Policy", "ReplayResult", "demands", "replay"]
