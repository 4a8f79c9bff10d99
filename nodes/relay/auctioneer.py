"""The call auction's clock: in ``auction`` mode the relay clears its book every interval.

Orders rest without matching between rounds; each round clears every GPU model at its uniform
price (:func:`market.matching.run_auction`, through :meth:`RelayBook.auction`), and each
clearing's fills go to the matcher, which opens them with ``openLeaseAuction`` at that price (in
several transactions at the same price when there are many, an all-or-none cluster never split).
Fills whose transaction fails give their GPUs back for the next round.
"""

from __future__ import annotations

import asyncio

from nodes.logs import EventLogger
from nodes.relay.book import RelayBook


class Auctioneer:
    def __init__(self, book: RelayBook, interval_s: float, log: EventLogger) -> None:
        self.book = book
        self.interval_s = interval_s
        self.log = log
        self.rounds = 0

    def clear(self) -> int:
        """One round now; returns how many fills it sent."""
        self.rounds += 1
        sent = 0
        for clearing in self.book.auction():
            if clearing.fills:
                sent += len(clearing.fills)
                self.log.info(
                    "auction_cleared",
                    round=self.rounds,
                    model=clearing.model,
                    price=clearing.price,
                    fills=len(clearing.fills),
                    gpus=clearing.filled,
                    demand=clearing.demand,
                    supply=clearing.supply,
                )
        return sent

    async def run(self, stop: asyncio.Event) -> None:
        """A round every ``interval_s`` until ``stop`` is set."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self.interval_s)
            except TimeoutError:
                self.clear()


__all__ = ["Auctioneer"]
