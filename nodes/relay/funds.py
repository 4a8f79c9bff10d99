"""Labs' funds as the relay last read them, for admitting bids.

A bid may cost its lab up to ``maxPricePerGpuSecond x gpuCount x duration`` (a lease takes the
offer's price, at most the bid's); ``openLease`` pulls that escrow from the lab, so a bid whose lab
holds less, or allows the Market less, cannot open and does not enter the book (``lab_unfunded``).
Balances and allowances are read in JSON-RPC batches (``MarketClient.lab_funds``) and kept for
``ttl_s`` seconds; a read that fails raises RpcUnavailable, which refuses the whole request (503),
so no bid is ever admitted unchecked. Funds may still move after admission: the matcher learns
that from the chain's revert, as before.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from market.chain.client import LabFunds, MarketClient
from market.protocol.types import Bid

_PRUNE_AT = 10_000


def bid_cost(bid: Bid) -> int:
    """The most a lease from ``bid`` can pull from its lab into escrow."""
    return bid.max_price_per_gpu_second * bid.gpu_count * bid.duration


class FundsCache:
    def __init__(
        self,
        client: MarketClient,
        ttl_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self.clock = clock
        self._funds: dict[str, tuple[LabFunds, float]] = {}  # lab -> (funds, read at)

    def funds_of(self, lab: str) -> LabFunds | None:
        """What the lab had when last read (None: not read)."""
        known = self._funds.get(lab)
        return None if known is None else known[0]

    async def ensure(self, labs: Iterable[str]) -> None:
        """Read the labs not read within ``ttl_s``. Raises RpcUnavailable when the chain does
        not answer (nothing is kept from a failed read)."""
        now = self.clock()
        stale = sorted({lab for lab in labs if not self._fresh(lab, now)})
        if not stale:
            return
        funds = await asyncio.to_thread(self.client.lab_funds, stale)
        read_at = self.clock()
        for lab, f in funds.items():
            self._funds[lab] = (f, read_at)
        if len(self._funds) > _PRUNE_AT:
            self._funds = {k: v for k, v in self._funds.items() if self._fresh(k, read_at)}

    def _fresh(self, lab: str, now: float) -> bool:
        known = self._funds.get(lab)
        return known is not None and now - known[1] < self.ttl_s


__all__ = ["FundsCache", "bid_cost"]
