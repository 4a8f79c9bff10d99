"""Following the market's events: the relay's book stays in step with what the chain did.

Each poll reads the head block (its timestamp is the relay's clock, the one ``openLease`` checks
expiry against), then every Market event (the registry's included) from the block after the last one
read. ``LeaseOpened`` fills orders (by any matcher), ``OrderCancelled`` and ``NonceFloorRaised``
cancel them, registry events refresh a provider's stake. The events and the new cursor are stored
in one transaction before the book changes, so a crash at any point replays at most a range the
store already ignores.

The hash of each poll's last block goes into the store with it (the last :data:`WINDOW`). Each poll
first checks that the newest is still the chain's (``market.chain.forks``); when the chain replaced
it (a reorganisation deeper than ``confirmations``), the watch logs ``reorg_detected``, forgets the
leases of the replaced blocks, gives the resting orders the chain's state at the fork (filled GPUs,
cancellation; their fills in flight stay pending), reads every provider's stake again and follows
again from the fork. Deeper than the window, it follows again from the deployment's block, the
orders' state read afresh. Orders the replaced blocks had removed from the book (filled, cancelled)
are not brought back: their rows were deleted when they left.

In a relay cluster only the matcher lease's holder follows the chain, and it tells the other
instances what it read (``publish``, :mod:`nodes.relay.cluster.node`) *before* storing it: a
leader that dies between the two leaves the range to its successor, which reads and publishes it
again (the stream stores a message id once; the books count a lease id once). A
reorganisation is told the same way (``rewound``), before the store forgets the replaced blocks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from market.chain.client import MarketClient
from market.chain.events import ChainEvent
from market.chain.forks import WINDOW, Reorg, detect_reorg
from market.errors import MarketError, RpcUnavailable
from market.protocol.types import Lease, OrderState
from nodes.daemon.health import ChainHealth
from nodes.errors import StoreUnavailable, StreamUnavailable
from nodes.logs import EventLogger
from nodes.relay.book import RelayBook
from nodes.relay.stakes import StakeCache
from nodes.relay.store import ChainLease, Store
from nodes.relay.stream import Hub
from nodes.wire import LeaseOpened

_REGISTRY_EVENTS = frozenset(
    {
        "ProviderRegistered",
        "ProviderUpdated",
        "StakeAdded",
        "UnstakeRequested",
        "StakeWithdrawn",
        "LeaseSlashed",  # a slash takes the lease's lock out of the stake
        "StakeReleased",  # and its lock comes back after its proof window
    }
)


@dataclass
class Batch:
    """What a range of blocks means for the book."""

    leases: list[tuple[ChainLease, Lease]] = field(default_factory=list)
    cancelled: list[bytes] = field(default_factory=list)
    floors: list[tuple[str, int]] = field(default_factory=list)
    providers: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, events: list[ChainEvent]) -> Batch:
        batch = cls()
        for e in events:
            if e.name == "LeaseOpened":
                a = e.args
                lease = ChainLease(
                    a["lease_id"], a["offer_hash"], a["bid_hash"], a["lease"].gpus, e.block_number
                )
                batch.leases.append((lease, a["lease"]))
                batch.providers.add(a["provider"])  # the lease locked part of its stake
            elif e.name == "OrderCancelled":
                batch.cancelled.append(e.args["order_hash"])
            elif e.name == "NonceFloorRaised":
                batch.floors.append((e.args["signer"], e.args["min_nonce"]))
            elif e.name in _REGISTRY_EVENTS:
                batch.providers.add(e.args["provider"])
        return batch


class ChainWatch:
    def __init__(
        self,
        client: MarketClient,
        store: Store,
        book: RelayBook,
        stakes: StakeCache,
        hub: Hub,
        log: EventLogger,
        *,
        poll_s: float,
        confirmations: int = 0,
        window: int = WINDOW,
        health: ChainHealth | None = None,
        publish: Callable[[Batch, int], Awaitable[None]] | None = None,
    ) -> None:
        self.client = client
        self.publish = publish
        self.rewound: Callable[[int], Awaitable[None]] | None = None
        """A cluster's leader: tells the other instances the chain replaced the blocks from a
        fork on, before the store forgets them; StreamUnavailable leaves it to the next poll."""
        """A cluster's leader: tells the other instances a range's events (and its last block)
        before they are stored; StreamUnavailable leaves the range to the next poll."""
        self.health = health or ChainHealth()
        """Marked after each poll: the relay's ``/healthz`` (:mod:`nodes.daemon.health`)."""
        self.store = store
        self.book = book
        self.stakes = stakes
        self.hub = hub
        self.log = log
        self.poll_s = poll_s
        self.confirmations = confirmations
        self.window = window
        self.reorgs = 0  # reorganisations noticed since start
        self._stale: set[str] = set()  # providers whose registry record changed, to read again
        stored = store.next_block()
        self.next_block = stored if stored is not None else client.contracts.deployment.deploy_block

    async def read_clock(self) -> int:
        """Read the head block's timestamp into the book's clock; returns the head's number."""
        head = await asyncio.to_thread(self.client.head)
        self.book.chain_time = max(self.book.chain_time, head.timestamp)
        return head.number

    async def poll(self) -> int:
        """Apply every event up to the head (less ``confirmations`` blocks); returns how many
        there were."""
        head = await self.read_clock() - self.confirmations
        await self.check_reorg()
        count = 0
        if head >= self.next_block:
            start = self.next_block
            # The hash before the events: a reorganisation between the two reads leaves a hash
            # the next poll finds replaced, so those events are read again.
            hashes = await asyncio.to_thread(self.client.block_hashes, [head])
            applied = hashes.get(head)
            if applied is None:  # the chain got shorter since the head was read
                return 0
            events = await asyncio.to_thread(self.client.events, start, head)
            batch = Batch.of(events)
            if self.publish is not None and (batch.leases or batch.cancelled or batch.floors):
                await self.publish(batch, head)
            fresh = self.store.apply_chain(
                (lease for lease, _ in batch.leases),
                batch.cancelled,
                batch.floors,
                head + 1,
                (head, applied),
                self.window,
            )
            self.next_block = head + 1
            self.book.apply_chain(fresh, batch.cancelled, batch.floors)
            fresh_ids = {lease.lease_id for lease in fresh}
            for lease, terms in batch.leases:
                if lease.lease_id in fresh_ids:
                    self.hub.publish(
                        LeaseOpened(
                            lease.lease_id, lease.offer_hash, lease.bid_hash, terms, lease.block
                        )
                    )
            self._stale |= batch.providers
            count = len(events)
            if count:
                self.log.info("chain_events", first_block=start, last_block=head, events=count)
        if self._stale:  # read again until it succeeds: matching depends on it
            await self.stakes.refresh(self._stale)
            self._stale.clear()
            self.book.rematch()
        self.book.expire()
        return count

    async def check_reorg(self) -> Reorg | None:
        """Whether the chain replaced the newest block applied; if so, bring the book back to the
        chain's state at the fork and follow again from there. Returns what was found."""
        reorg = await asyncio.to_thread(detect_reorg, self.client, self.store.applied_blocks())
        if reorg is None:
            return None
        deployed = self.client.contracts.deployment.deploy_block
        fork = reorg.fork if reorg.fork is not None else deployed
        resting = self.book.resting()
        # Read before anything changes: an unavailable endpoint leaves the reorganisation to be
        # found again by the next poll.
        chain = await self._orders_at(fork, resting)
        self.log.warning(
            "reorg_detected",
            depth=reorg.depth,
            fork=fork,
            beyond_window=reorg.fork is None,
            resting=len(resting),
        )
        if self.rewound is not None:  # a cluster's leader: the others first (may raise)
            await self.rewound(fork)
        self.reorgs += 1
        self.store.rewind(fork)
        self.next_block = fork
        filled = self.store.filled_by_order()
        if chain is None:  # the leases the store kept say the same, for orders it has seen fill
            chain = {h: OrderState(filled=filled.get(h, 0), cancelled=False) for _, h in resting}
        self.book.resync(filled, chain)
        self._stale |= set(self.stakes.known())  # locks and slashes of replaced blocks undone
        return reorg

    async def _orders_at(
        self, fork: int, resting: list[tuple[str, bytes]]
    ) -> dict[bytes, OrderState] | None:
        """The resting orders' state once the last block kept was applied (the block before
        ``fork``); None when the node no longer holds that block's state (a pruned node keeps
        about 128 blocks). Raises RpcUnavailable when the endpoint does not answer."""
        if fork <= self.client.contracts.deployment.deploy_block:  # before the market existed
            return {h: OrderState(filled=0, cancelled=False) for _, h in resting}
        try:
            return await asyncio.to_thread(self.client.order_states, resting, fork - 1)
        except RpcUnavailable:
            raise
        except MarketError as exc:
            self.log.warning("reorg_state_unavailable", block=fork - 1, error=str(exc))
            return None

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; an unavailable RPC endpoint is logged and retried."""
        while not stop.is_set():
            try:
                await self.poll()
                self.health.reached()
            except RpcUnavailable as exc:
                self.health.unreachable(f"{exc.url}: {exc.reason}")
                self.log.warning("chain_unavailable", url=exc.url, reason=exc.reason)
            except StoreUnavailable as exc:  # PostgreSQL restarting: nothing was stored
                self.log.warning("chain_events_unstored", url=exc.url, reason=exc.reason)
            except StreamUnavailable as exc:  # a cluster's leader: the range is read again
                self.log.warning("chain_events_unpublished", url=exc.url, reason=exc.reason)
            try:
                await asyncio.wait_for(stop.wait(), self.poll_s)
            except TimeoutError:
                continue


__all__ = ["Batch", "ChainWatch"]
