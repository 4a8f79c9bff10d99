"""Serving provider reputations and labs' dispute records: a ReputationBook brought up to date
from the chain on request.

The relay's chain watch does not feed this book. Each query reads the head block and, when it
moved, folds the new blocks' events (``market.chain.history``) into the book, so the book only
ever reads a range once. The list of every provider's figures is computed once per head and
cached. Queries are served one at a time, off the event loop; one that arrives during a refresh
waits for it. ``confirmations`` keeps the newest blocks out until they are that deep, for chains
that reorganise (a reorganisation deeper than that is not undone).
"""

from __future__ import annotations

import asyncio

from market.chain.client import MarketClient
from market.chain.history import head_block, read_history
from market.reputation import Reputation, ReputationBook
from nodes.wire import ZERO_ADDRESS, ReputationQuery, ReputationReport


class ReputationService:
    def __init__(self, client: MarketClient, *, max_page: int, confirmations: int = 0) -> None:
        self.client = client
        self.max_page = max_page
        self.confirmations = confirmations
        self.book = ReputationBook()
        self.from_block = client.contracts.deployment.deploy_block
        self.to_block = self.from_block - 1
        """The last block folded into the book."""
        self._everyone: tuple[int, list[Reputation]] | None = None
        self._lock = asyncio.Lock()

    async def answer(self, query: ReputationQuery) -> ReputationReport:
        """The page of reputations ``query`` asks for, as of the newest block folded."""
        async with self._lock:
            return await asyncio.to_thread(self._answer, query)

    def _answer(self, query: ReputationQuery) -> ReputationReport:
        self._catch_up()
        after = query.after.lower()
        if query.providers:
            named = sorted({p.lower(): p for p in query.providers}.items())
            chosen = [self.book.reputation(p) for low, p in named if low > after]
        else:
            chosen = [r for r in self._all() if r.provider.lower() > after]
        if query.labs and not query.providers:
            chosen = []  # a query for labs alone names no provider
        limit = min(query.limit, self.max_page)
        page = chosen[:limit]
        next_after = page[-1].provider if len(chosen) > limit else ZERO_ADDRESS
        labs = sorted({lab.lower(): lab for lab in query.labs}.items())[: self.max_page]
        records = tuple(self.book.lab_record(lab) for _, lab in labs)
        return ReputationReport(self.from_block, self.to_block, tuple(page), next_after, records)

    def _catch_up(self) -> None:
        head = head_block(self.client) - self.confirmations
        if head <= self.to_block:
            return
        read_history(self.client, self.to_block + 1, head).fold_into(self.book)
        self.to_block = head

    def _all(self) -> list[Reputation]:
        if self._everyone is None or self._everyone[0] != self.to_block:
            self._everyone = (self.to_block, self.book.reputations())
        return self._everyone[1]


__all__ = ["ReputationService"]
