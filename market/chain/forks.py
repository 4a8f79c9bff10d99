"""Noticing that the chain replaced blocks a follower already applied (a reorganisation).

A follower of the market's events keeps the hashes of the last blocks it applied (a bounded window,
each poll's last block). Before it reads further it asks the chain for the newest one's hash (one
``eth_getBlockByNumber``); when that differs, :func:`find_fork` compares the whole window (one
batch) and names the first block to read again: one past the newest applied block the chain still
has. A reorganisation deeper than the window names none: the follower resyncs from scratch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

WINDOW = 128
"""Applied blocks whose hashes a follower keeps."""


class BlockHashes(Protocol):
    """What :func:`detect_reorg` reads: ``MarketClient.block_hashes``."""

    def block_hashes(self, numbers: list[int]) -> dict[int, bytes | None]: ...


@dataclass(frozen=True, slots=True)
class Reorg:
    """Applied blocks the chain replaced: read again from ``fork`` (None: the window holds no
    block the chain still has, so resync from contract state); ``depth`` applied blocks at least
    were replaced (from the fork, or the window's oldest, to the newest applied)."""

    fork: int | None
    depth: int


def find_fork(applied: Mapping[int, bytes], chain: Mapping[int, bytes | None]) -> int | None:
    """The first block to read again: one past the newest block of ``applied`` whose hash
    ``chain`` still has (a block missing from ``chain``, or None there, was replaced); None when
    none is left. ``applied`` empty: nothing to check, None."""
    for number in sorted(applied, reverse=True):
        if chain.get(number) == applied[number]:
            return number + 1
    return None


def detect_reorg(client: BlockHashes, applied: Mapping[int, bytes]) -> Reorg | None:
    """None when the newest applied block is still the chain's (one request), else where the
    chain forked from what was applied (one batch request over the window)."""
    if not applied:
        return None
    newest = max(applied)
    if client.block_hashes([newest]).get(newest) == applied[newest]:
        return None
    fork = find_fork(applied, client.block_hashes(sorted(applied)))
    oldest = fork if fork is not None else min(applied)
    return Reorg(fork, newest - oldest + 1)


__all__ = ["WINDOW", "BlockHashes", "Reorg", "detect_reorg", "find_fork"]
