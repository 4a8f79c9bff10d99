"""A price to ask, from what the market shows: resting asks, resting bids, cleared leases.

    quote = suggest(asks=[700, 720, 800], bids=[650], cleared=[690, 700], percentile=25)
    quote.price      # 690: base units per GPU-second (None when the market shows nothing)

The quote undercuts most competing asks and does not ask more than recent leases cleared at:
it is the lower of the ``percentile``-th ask (nearest rank: 25 asks less than three quarters of
the asks, so a bid reaches it before theirs) and the median cleared price. With neither, the
best resting bid is quoted (it would take the GPUs now); with nothing at all there is no quote.
Every figure behind it is kept so the CLI can explain it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from market.errors import InvalidArgument

Basis = Literal["asks", "leases", "asks+leases", "bids", "none"]


def nearest_rank(values: Sequence[int], percentile: float) -> int:
    """The ``percentile``-th (0-100) of ``values`` by nearest rank: always one of the values."""
    if not values:
        raise InvalidArgument("values", values, "no values to take a percentile of")
    if not 0 <= percentile <= 100:
        raise InvalidArgument("percentile", percentile, "a percentile is from 0 to 100")
    ordered = sorted(values)
    rank = max(1, math.ceil(percentile / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class Quote:
    """A suggested price per GPU-second (base units) and the figures it came from."""

    price: int | None
    basis: Basis
    percentile: float
    asks: int
    ask_at_percentile: int | None
    cheapest_ask: int | None
    bids: int
    best_bid: int | None
    leases: int
    cleared_low: int | None
    """The 25th percentile of cleared prices."""
    cleared_median: int | None
    cleared_high: int | None
    """The 75th percentile of cleared prices."""


def suggest(
    asks: Sequence[int], bids: Sequence[int], cleared: Sequence[int], percentile: float = 25
) -> Quote:
    """The quote for a seller facing ``asks`` (competing prices), ``bids`` (resting maxima) and
    ``cleared`` (recent lease prices), all per GPU-second."""
    if not 0 <= percentile <= 100:
        raise InvalidArgument("percentile", percentile, "a percentile is from 0 to 100")
    ask_at = nearest_rank(asks, percentile) if asks else None
    median = nearest_rank(cleared, 50) if cleared else None
    best_bid = max(bids, default=None)
    basis: Basis
    if ask_at is not None and median is not None:
        price, basis = min(ask_at, median), "asks+leases"
    elif ask_at is not None:
        price, basis = ask_at, "asks"
    elif median is not None:
        price, basis = median, "leases"
    elif best_bid is not None:
        price, basis = best_bid, "bids"
    else:
        price, basis = None, "none"
    return Quote(
        price=price,
        basis=basis,
        percentile=percentile,
        asks=len(asks),
        ask_at_percentile=ask_at,
        cheapest_ask=min(asks, default=None),
        bids=len(bids),
        best_bid=best_bid,
        leases=len(cleared),
        cleared_low=nearest_rank(cleared, 25) if cleared else None,
        cleared_median=median,
        cleared_high=nearest_rank(cleared, 75) if cleared else None,
    )


__all__ = ["Basis", "Quote", "nearest_rank", "suggest"]
