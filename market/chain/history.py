"""Reading what ``market.reputation`` folds: the market's events in a block range, and the
timestamps of the blocks that hold the events it times.

    history = read_history(client)                        # deployment block to the head
    book = ReputationBook()
    history.fold_into(book)
    newer = read_history(client, history.to_block + 1)   # the next range, into the same book
    newer.fold_into(book)

Logs are read in chunks of ``chunk_blocks`` (endpoints cap ``eth_getLogs`` ranges) and
timestamps in JSON-RPC batches; both retry transient failures like every other read.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from web3 import Web3

from market.chain.client import MarketClient
from market.chain.events import ChainEvent
from market.chain.retry import with_retries
from market.chain.tx import endpoint_of
from market.errors import InvalidArgument
from market.reputation import READ_EVENTS, TIMED_EVENTS, ReputationBook

DEFAULT_CHUNK_BLOCKS = 10_000
TIMESTAMP_BATCH = 200
"""Blocks per JSON-RPC batch when reading timestamps."""


@dataclass(frozen=True, slots=True)
class History:
    """The events reputation reads in blocks ``[from_block, to_block]`` (empty when
    ``to_block < from_block``), in chain order, with the timestamps of the blocks that need one."""

    from_block: int
    to_block: int
    events: tuple[ChainEvent, ...]
    timestamps: Mapping[int, int]

    def fold_into(self, book: ReputationBook) -> int:
        """Apply the events to ``book``; returns how many counted."""
        return book.apply_all(self.events, self.timestamps)


def head_block(client: MarketClient) -> int:
    """The chain's latest block number."""
    return with_retries(
        lambda: client.w3.eth.block_number,
        endpoint=endpoint_of(client.w3),
        deadline_s=client.rpc_deadline_s,
    )


def read_history(
    client: MarketClient,
    from_block: int | None = None,
    to_block: int | None = None,
    *,
    chunk_blocks: int = DEFAULT_CHUNK_BLOCKS,
) -> History:
    """The history in ``[from_block, to_block]``; by default from the deployment block to the
    head block, read once at the start so the range is fixed."""
    if chunk_blocks < 1:
        raise InvalidArgument(
            "chunk_blocks", chunk_blocks, f"chunk_blocks must be at least 1, got {chunk_blocks}"
        )
    start = client.contracts.deployment.deploy_block if from_block is None else from_block
    end = head_block(client) if to_block is None else to_block
    events: list[ChainEvent] = []
    for low in range(start, end + 1, chunk_blocks):
        chunk = client.event_reader.events(low, min(low + chunk_blocks - 1, end))
        events.extend(e for e in chunk if e.name in READ_EVENTS)
    timed = {e.block_number for e in events if e.name in TIMED_EVENTS}
    timestamps = block_timestamps(client.w3, timed, deadline_s=client.rpc_deadline_s)
    return History(start, end, tuple(events), timestamps)


def block_timestamps(
    w3: Web3, blocks: Iterable[int], *, deadline_s: float = 10.0
) -> dict[int, int]:
    """The timestamp of each block in ``blocks``, read in batches."""
    wanted = sorted(set(blocks))
    endpoint = endpoint_of(w3)
    found: dict[int, int] = {}
    for i in range(0, len(wanted), TIMESTAMP_BATCH):
        chunk = wanted[i : i + TIMESTAMP_BATCH]
        blocks_read = with_retries(
            functools.partial(_read_blocks, w3, chunk), endpoint=endpoint, deadline_s=deadline_s
        )
        for number, block in zip(chunk, blocks_read, strict=True):
            found[number] = int(block["timestamp"])
    return found


def _read_blocks(w3: Web3, numbers: list[int]) -> list[Any]:
    with w3.batch_requests() as batch:
        for number in numbers:
            batch.add(w3.eth.get_block(number))
        return list(batch.execute())


__all__ = ["DEFAULT_CHUNK_BLOCKS", "History", "block_timestamps", "head_block", "read_history"]
