"""What became of the lab's bids, as the relay tells it (``GET /v1/bids?lab=``), logged once per
change:

    bid_matched     job=0 bid=0x.. leases=0x..              (the lease's own events follow)
    no_match        job=0 order=0x.. reasons=price_not_crossed changes=max_price_per_gpu_second:1->3
    bid_fill_failed job=0 bid=0x.. error=ERC20InsufficientAllowance(...)   (warning: act on it)

A bid resting with nothing in its way (a fill on its way) logs nothing. The reasons and changes
are the relay's explanation (``nodes/daemon/explain.py`` names them as every daemon does); a fill
that reverted is the chain's error, which the lab would otherwise never hear of: the relay drops
such a bid from its book.
"""

from __future__ import annotations

from collections.abc import Sequence

import aiohttp

from market.errors import MarketError
from nodes.daemon.explain import explanation_fields
from nodes.lab.store import JobRecord
from nodes.logs import EventLogger
from nodes.wire.frames import decode_read
from nodes.wire.reads import BidList, BidView

TIMEOUT_S = 10.0


class BidFates:
    """The last fate logged per job, and the relay reads that update it."""

    def __init__(self, session: aiohttp.ClientSession, log: EventLogger) -> None:
        self._session = session
        self.log = log
        self.logged: dict[int, str] = {}

    def seen(self, job: int, fate: str) -> None:
        """``fate`` was logged for ``job`` elsewhere (the explain at submission)."""
        self.logged[job] = fate

    async def follow(self, relays: Sequence[str], jobs: Sequence[JobRecord]) -> None:
        """Ask the relays, in order, for the lab's bids until one knows them; log each change."""
        if not jobs:
            return
        lab = jobs[0].bid.message.lab
        for url in relays:
            answer = await self._read(url, lab)
            if answer is None:
                continue
            views = {v.order_hash: v for v in answer.bids}
            if not any(job.bid_hash in views for job in jobs):
                continue
            for job in jobs:
                view = views.get(job.bid_hash)
                if view is not None:
                    self.update(job, view)
            return

    def update(self, job: JobRecord, view: BidView) -> None:
        """Log ``view``'s fate for ``job`` if it changed."""
        if self.logged.get(job.idx) == view.fate:
            return
        self.logged[job.idx] = view.fate
        log = self.log.bind(job=job.idx)
        if view.lease_ids and view.fate in ("matched", "resting"):
            leases = ",".join("0x" + lease.hex() for lease in view.lease_ids)
            log.info("bid_matched", bid=job.bid_hash, leases=leases, remaining=view.remaining)
        elif view.fate == "unmatched" and view.explanation is not None:
            log.info("no_match", order=job.bid_hash, **explanation_fields(view.explanation))
        elif view.fate == "fill_failed":
            log.warning("bid_fill_failed", bid=job.bid_hash, error=view.error)

    async def _read(self, url: str, lab: str) -> BidList | None:
        try:
            async with self._session.get(
                f"{url.rstrip('/')}/v1/bids",
                params={"lab": lab},
                headers={"Accept": "application/msgpack"},
                timeout=aiohttp.ClientTimeout(total=TIMEOUT_S),
            ) as response:
                if response.status != 200:
                    self.log.debug("bid_fates_unavailable", relay=url, status=response.status)
                    return None
                return decode_read(await response.read(), BidList)
        except (TimeoutError, aiohttp.ClientError, MarketError) as exc:
            self.log.debug("bid_fates_unavailable", relay=url, error=str(exc))
            return None


__all__ = ["BidFates"]
