"""Token buckets per key (a client address, an order signer), checked before anything changes."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from nodes.errors import RateLimited

_PRUNE_AT = 10_000


class RateLimiter:
    """``rate`` tokens per second up to ``burst`` per key. :meth:`take` takes all the tokens a
    request needs or none of them."""

    def __init__(
        self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a rate limit needs a positive rate and a burst of at least 1")
        self.rate = rate
        self.burst = float(burst)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, as of)

    def _level(self, key: str, now: float) -> float:
        tokens, since = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - since) * self.rate)

    def check(self, costs: Mapping[str, float]) -> None:
        """Raise RateLimited for the first key that lacks ``costs[key]`` tokens now, taking
        nothing (a request checks every limit before it takes from any)."""
        self._levels(costs, self.clock())

    def allows(self, costs: Mapping[str, float]) -> bool:
        """Whether every key has ``costs[key]`` tokens now (:meth:`check` without raising)."""
        now = self.clock()
        return all(cost <= self._level(key, now) for key, cost in costs.items())

    def take(self, costs: Mapping[str, float]) -> None:
        """Take ``costs[key]`` tokens from each key, or raise RateLimited for the first key that
        lacks them (taking nothing)."""
        now = self.clock()
        levels = self._levels(costs, now)
        for key, cost in costs.items():
            self._buckets[key] = (levels[key] - cost, now)
        if len(self._buckets) > _PRUNE_AT:
            self._prune(now)

    def _levels(self, costs: Mapping[str, float], now: float) -> dict[str, float]:
        levels = {key: self._level(key, now) for key in costs}
        for key, cost in costs.items():
            if cost > levels[key]:
                wait = (cost - levels[key]) / self.rate if cost <= self.burst else float("inf")
                raise RateLimited(key, wait)
        return levels

    def _prune(self, now: float) -> None:
        full = [k for k in self._buckets if self._level(k, now) >= self.burst]
        for key in full:
            del self._buckets[key]


__all__ = ["RateLimiter"]
