"""Providers' free stake as the relay last read it, refreshed when the registry says it changed.

The order book asks :meth:`StakeCache.stake_of` synchronously while matching, so it must never
wait on the chain: the relay reads a provider's record (:meth:`ensure`) before its first offer
enters the book, and again (:meth:`refresh`) whenever a registry event names the provider.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from market.chain.client import MarketClient


class StakeCache:
    def __init__(self, client: MarketClient, min_stake: int) -> None:
        self.client = client
        self.min_stake = min_stake
        self._free: dict[str, int | None] = {}

    def stake_of(self, provider: str) -> int | None:
        """Free stake, or None when not registered (or not read yet)."""
        return self._free.get(provider)

    def known(self) -> list[str]:
        """Every provider read so far."""
        return list(self._free)

    def set(self, provider: str, free_stake: int | None) -> None:
        """What a revert just told: the provider's free stake (None: not registered)."""
        self._free[provider] = free_stake

    async def ensure(self, providers: Iterable[str]) -> None:
        """Read the providers not read yet. Raises RpcUnavailable when the chain does not answer."""
        await self.refresh(p for p in set(providers) if p not in self._free)

    async def refresh(self, providers: Iterable[str]) -> None:
        """Read these providers' records again."""
        wanted = sorted(set(providers))
        if not wanted:
            return
        infos = await asyncio.to_thread(self.client.provider_infos, wanted)
        for provider in wanted:
            info = infos[provider]
            self._free[provider] = info.free_stake if info.registered else None


__all__ = ["StakeCache"]
