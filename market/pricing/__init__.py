"""Pricing help, pure: a quote from the market's figures, and the replay of a recorded market
through a pricing policy.

* :mod:`~market.pricing.quote`: ``suggest`` — a price per GPU-second from resting asks and bids
  and recently cleared leases, with the figures behind it;
* :mod:`~market.pricing.record`: the recorded market (JSON lines: a header, book samples, opened
  leases), read and written;
* :mod:`~market.pricing.replay`: ``replay`` — what a policy would have earned over a recording
  and how often it would have matched.

Prices here are base units per GPU-second, as orders sign them; :mod:`market.units` shows them
per GPU-hour. Reading a live relay and chain into these is ``nodes.pricing``'s job.
"""

from market.pricing.quote import Basis, Quote, nearest_rank, suggest
from market.pricing.record import (
    FORMAT_VERSION,
    Ask,
    BidEntry,
    BookSample,
    Event,
    Header,
    LeaseSample,
    Recording,
    TokenInfo,
    read_recording,
)
from market.pricing.replay import Hardware, Policy, ReplayResult, demands, replay

__all__ = [
    "FORMAT_VERSION",
    "Ask",
    "Basis",
    "BidEntry",
    "BookSample",
    "Event",
    "Hardware",
    "Header",
    "LeaseSample",
    "Policy",
    "Quote",
    "Recording",
    "ReplayResult",
    "TokenInfo",
    "demands",
    "nearest_rank",
    "read_recording",
    "replay",
    "suggest",
]
