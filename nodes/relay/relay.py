"""A relay: the parts put together, started in order and stopped gracefully.

Start: open the store, connect to the chain, read the clock and the stakes of resting offers'
providers, rebuild the book, catch up with the chain's events, then listen; :meth:`Relay.start`
returns once the relay accepts connections (its readiness). Stop: refuse new requests, finish the
ones in flight and close streams, stop following the chain and clearing auctions, send the fills
and gossip already queued (up to the grace period), then cancel what is left and close the store.

One instance of a relay cluster (``config.cluster``) starts the same way, except that it takes
the cluster stream's position before it loads the shared book, reads no chain events itself and
matches nothing until it holds the matcher lease (:mod:`nodes.relay.cluster.node`); on stop it
sends its queued fills and gives the lease up for the next instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Iterable

import aiohttp

from market.chain.client import MarketClient
from market.chain.deploy import Deployment
from market.chain.erc1271 import Erc1271Checker
from market.matching.pool import VerifierPool
from market.protocol.types import Offer
from nodes.daemon.startup import Listener, listen
from nodes.logs import EventLogger, get_logger
from nodes.relay.admission import Admission
from nodes.relay.auctioneer import Auctioneer
from nodes.relay.book import RelayBook
from nodes.relay.capacity import Capacity
from nodes.relay.chainwatch import ChainWatch
from nodes.relay.cluster.node import ClusterNode, Parts
from nodes.relay.config import ClusterConfig, RelayConfig
from nodes.relay.funds import FundsCache
from nodes.relay.gossip import Gossiper
from nodes.relay.matcher import Matcher
from nodes.relay.metrics import RelayMetrics
from nodes.relay.ratelimit import RateLimiter
from nodes.relay.reputations import ReputationService
from nodes.relay.server import RelayServer
from nodes.relay.stakes import StakeCache
from nodes.relay.store import open_store
from nodes.relay.stream import Hub


class Relay:
    def __init__(
        self, config: RelayConfig, deployment: Deployment, *, log: EventLogger | None = None
    ) -> None:
        self.config = config
        self.deployment = deployment
        self.log = log or get_logger("gpumarket.relay")
        self.metrics = RelayMetrics()
        self.port = 0
        self.matcher: Matcher | None = None
        workers = config.verify_workers
        self.pool = VerifierPool(workers) if workers != 0 else None
        """Started on the first large batch of orders (each worker imports the library)."""
        self.auctioneer: Auctioneer | None = None
        self.session: aiohttp.ClientSession | None = None
        self.listener: Listener | None = None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.cluster: ClusterNode | None = None

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    async def start(self) -> None:
        """Start every part; returns once the relay accepts connections. On failure what was
        opened is closed again and the error propagates."""
        self.store = open_store(self.config)
        try:
            await self._start()
        except BaseException:
            await self._close()
            raise

    async def _start(self) -> None:
        cfg = self.config
        if cfg.cluster is not None:  # the cluster gossips as one relay
            self.relay_id = cfg.relay_id or f"cluster-{cfg.cluster.name}"
        else:
            self.relay_id = cfg.relay_id or self._stored_id()
        self.log = self.log.bind(relay=self.relay_id)
        readers = await asyncio.gather(*(self._connect(None) for _ in range(4)))
        for admission_reader in (readers[1], readers[3]):  # a silent chain: 503 soon
            admission_reader.rpc_deadline_s = cfg.chain_read_deadline_s
        self.chain = readers[0]
        d = self.deployment
        deployed = await asyncio.to_thread(self.chain.block_hash, d.deploy_block)
        self.store.bind_chain(f"{d.chain_id}:{self.chain.market.address}:0x{deployed.hex()}")
        min_stake = await asyncio.to_thread(self.chain.min_stake)
        self.stakes = StakeCache(readers[1], min_stake)
        self.hub = Hub(cfg.limits.stream_queue)
        matching = cfg.matching if cfg.matcher_key is not None else "off"
        lim = cfg.limits
        self.book = RelayBook(
            self.chain.domain,
            self.store,
            self.stakes,
            self.hub,
            matching=matching == "continuous" and cfg.cluster is None,
            capacity=Capacity(lim.max_book_orders, lim.max_signer_orders),
        )
        self.watch = ChainWatch(
            self.chain,
            self.store,
            self.book,
            self.stakes,
            self.hub,
            self.log,
            poll_s=cfg.chain_poll_s,
            confirmations=cfg.confirmations,
            health=self.metrics.chain,
        )
        await self.watch.read_clock()
        if cfg.cluster is not None:
            await self._join(cfg.cluster, matching)  # before the book is read from the store
        await self.stakes.ensure(
            _providers(sub.signed.message for _, sub in self.store.resting_orders())
        )
        resting = self.book.load()
        if self.cluster is None:
            await self.watch.poll()  # catch up with what the chain did while the relay was away
        if cfg.matcher_key is not None and self.cluster is None:
            self.matcher = Matcher(
                await self._connect(cfg.matcher_key),
                self.book,
                self.store,
                self.metrics,
                self.log,
                max_batch=cfg.max_batch,
                fill_window_s=cfg.fill_window_s,
            )
            self.matcher.reconcile()
        self.session = aiohttp.ClientSession()
        self.gossiper = Gossiper(
            self.relay_id,
            cfg.peers,
            self.session,
            self.metrics,
            self.log,
            timeout_s=cfg.peer_timeout_s,
            attempts=cfg.gossip_attempts,
            max_hops=cfg.max_gossip_hops,
        )
        self.server = RelayServer(
            self.relay_id,
            self.chain.domain,
            self.book,
            self.hub,
            self.gossiper,
            self.metrics,
            cfg.limits,
            self.log,
            ReputationService(
                readers[2],
                max_page=cfg.limits.max_reputations,
                confirmations=cfg.reputation_confirmations,
            ),
            Admission(
                self.book,
                self.chain.domain,
                FundsCache(readers[3], lim.funds_ttl_s),
                signer_limit=RateLimiter(lim.signer_rate_per_s, lim.signer_burst),
                peer_limit=RateLimiter(lim.peer_rate_per_s, lim.peer_burst),
                checker=self._signature_checker(),
                pool=self.pool,
                replicate=self.cluster.publish_accepted if self.cluster is not None else None,
            ),
        )
        self._register_gauges()
        self.listener = await listen(
            self.server.app(), cfg.host, cfg.port, shutdown_timeout=cfg.shutdown_grace_s
        )
        self.port = self.listener.port
        if self.cluster is not None:
            self.cluster.start(self._stop)
        else:
            self._start_tasks(matching)
        self.gossiper.start()
        self.log.info(
            "relay_ready",
            url=self.url,
            orders=resting,
            block=self.watch.next_block - 1,
            peers=len(cfg.peers),
            matching=matching,
            cluster=cfg.cluster.name if cfg.cluster is not None else None,
        )

    async def _join(self, cluster: ClusterConfig, matching: str) -> None:
        cfg = self.config
        assert cfg.store is not None  # RelayConfig requires it for a cluster
        key = cfg.matcher_key
        self.cluster = ClusterNode(
            cluster,
            cfg.store,
            Parts(
                self.book,
                self.store,
                self.watch,
                self.metrics,
                (lambda: MarketClient.connect(self.deployment, key)) if key is not None else None,
                cfg.max_batch,
                cfg.auction_interval_s if matching == "auction" else None,
                cfg.fill_window_s,
            ),
            self.log,
        )
        await self.cluster.connect()

    def _start_tasks(self, matching: str) -> None:
        cfg = self.config
        self._tasks.append(asyncio.create_task(self.watch.run(self._stop), name="chainwatch"))
        if matching == "auction":
            self.auctioneer = Auctioneer(self.book, cfg.auction_interval_s, self.log)
            self._tasks.append(asyncio.create_task(self.auctioneer.run(self._stop), name="auction"))
        if self.matcher is not None:
            self._tasks.append(asyncio.create_task(self.matcher.run(), name="matcher"))

    async def stop(self) -> None:
        """Drain, then cancel: refuse new requests and finish in-flight ones, stop following the
        chain (no new fills), send queued fills and gossip within the grace period, then cancel
        what is left and close the store."""
        grace = self.config.shutdown_grace_s
        self.server.stopping = True
        if self.listener is not None:
            await self.listener.close()
            self.listener = None
        self._stop.set()
        # The chain watch and the auction: nothing new to match from here on.
        await _cancel([t for t in self._tasks if t.get_name() != "matcher"])
        if self.cluster is not None:
            fills_sent = await self.cluster.drain(grace)
        else:
            fills_sent = await self.matcher.drain(grace) if self.matcher is not None else True
        gossip_sent = await self.gossiper.drain(grace)
        await self.gossiper.stop()
        await self._close()
        self.log.info("relay_stopped", fills_drained=fills_sent, gossip_drained=gossip_sent)

    async def _close(self) -> None:
        await _cancel(self._tasks)
        if self.cluster is not None:
            await self.cluster.close()
        if self.listener is not None:
            await self.listener.close()
        if self.session is not None:
            await self.session.close()
        if self.pool is not None:
            await asyncio.to_thread(self.pool.close)
        self.store.close()

    async def _connect(self, key: str | None) -> MarketClient:
        return await asyncio.to_thread(MarketClient.connect, self.deployment, key)

    def _signature_checker(self) -> Erc1271Checker | None:
        """The ERC-1271 checker for contract signers' orders, over its own connection to the
        chain (its requests time out sooner than the chain client's); None if disabled."""
        gas = self.config.limits.contract_signature_gas
        return Erc1271Checker.connect(self.deployment.rpc_url, gas=gas) if gas > 0 else None

    def _stored_id(self) -> str:
        stored = self.store.get_meta("relay_id")
        if stored is None:
            stored = secrets.token_hex(8)
            self.store.set_meta("relay_id", stored)
        return stored

    def _register_gauges(self) -> None:
        m = self.metrics
        m.gauge(
            "gpumarket_relay_book_orders",
            "Orders resting in the book, by side.",
            lambda: [((("side", s.value),), n) for s, n in self.book.sizes().items()],
        )
        m.gauge(
            "gpumarket_relay_chain_block",
            "The last block whose events the relay applied.",
            lambda: [((), self.watch.next_block - 1)],
        )
        m.gauge(
            "gpumarket_relay_chain_reorgs",
            "Reorganisations deeper than the confirmations noticed since start.",
            lambda: [((), self.watch.reorgs)],
        )
        if self.cluster is not None:
            node = self.cluster
            m.gauge(
                "gpumarket_relay_cluster_leader",
                "1 while this instance holds the cluster's matcher lease (matches, follows the "
                "chain), else 0.",
                lambda: [((), 1 if node.leading else 0)],
            )
            m.gauge(
                "gpumarket_relay_cluster_position",
                "The last cluster stream sequence this instance applied.",
                lambda: [((), node.applied())],
            )
        m.gauge(
            "gpumarket_relay_stream_subscribers",
            "Open event streams.",
            lambda: [((), len(self.hub.subscribers))],
        )


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _providers(messages: Iterable[object]) -> set[str]:
    return {m.provider for m in messages if isinstance(m, Offer)}


__all__ = ["Relay"]
