"""The provider agent (``gpumarket provider --config provider.toml``).

    agent = ProviderAgent(config, key, deployment)
    await agent.start()        # registers (stake + sealing key + endpoint) if needed, serves labs
    ...                        # offers, leases, jobs, receipts, claims run in the background
    await agent.stop()         # SIGTERM: stop serving, stop the jobs (reported "stopped")

Two worker threads, each with its own connection to the agent's SQLite file (a StateDB belongs
to one thread): the **chain** thread runs :class:`~nodes.provider.work.LeaseWork` (events, jobs,
metering, claims: everything that touches the chain or a job process) every ``TICK_S``; the
**service** thread answers the labs' HTTP requests (``ProviderService``).
The event loop itself only moves frames: the HTTP server, and offers to the relays.

Offers: for each GPU group, a new offer is signed once the previous one for that model expired
(chain time), for the GPUs not held by leases whose work is running, at the pricing policy's
price, valid ``offer_ttl_s``, signing the group's memory, bandwidth and attributes
(``[inventory]``) and accepting the billing modes the config names (``[agent] billing``, a
rental by default); so GPUs are never offered twice at once. Each is stored before it
is sent (the agent must know an offer's model when its lease opens) and submitted to every relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from market.chain.client import MarketClient
from market.chain.deploy import Deployment
from market.errors import ChainError, MarketError
from market.matching import Submission
from market.matching.constraints import feature_bit
from market.protocol.eip712 import order_hash
from market.protocol.signing import SigningKey
from market.protocol.types import Offer, Signed, billing_modes
from market.sealing import public_key_of
from nodes.daemon.explain import log_no_match
from nodes.daemon.preflight import raise_first_failure
from nodes.daemon.startup import Listener, listen, stop_signals
from nodes.logs import get_logger
from nodes.provider.config import JobLimits, ProviderConfig
from nodes.provider.confinement import Confinement
from nodes.provider.decisions import log_skip, plan_offers
from nodes.provider.inventory import Inventory, detect
from nodes.provider.preflight import provider_checks
from nodes.provider.pricing import Checked, load_policy
from nodes.provider.service import ProviderService
from nodes.provider.store import AgentStore
from nodes.provider.work import LeaseWork, ProviderMetrics
from nodes.state import DurableChain
from nodes.state.records import Records
from nodes.wire.relay_client import RelayClient

TICK_S = 0.25
T = TypeVar("T")
_log = get_logger("gpumarket.provider")


def job_features(jobs: JobLimits) -> int:
    """The features every offer signs for what the agent's jobs may do: ``job-network`` when
    jobs may reach the network, which a bid for a job asking for it requires, so only a
    provider that allows it can be matched to such a job."""
    return feature_bit("capabilities", "job-network") if jobs.allow_network else 0


class ProviderAgent:
    def __init__(self, config: ProviderConfig, key: bytes, deployment: Deployment) -> None:
        self.config = config
        self.key = SigningKey(key)
        self.hex_key = "0x" + key.hex()
        self.deployment = deployment
        self.inventory: Inventory = detect(config.inventory)
        self.policy: Checked  # built at start, once the token's decimals are read
        self._job_features = job_features(config.jobs)
        self.chain_pool = ThreadPoolExecutor(1, thread_name_prefix="provider-chain")
        self.service_pool = ThreadPoolExecutor(1, thread_name_prefix="provider-service")
        self.metrics = ProviderMetrics()
        self.metrics.gauge(
            "gpumarket_provider_jobs_running", "Jobs running now.",
            lambda: [((), float(len(self._work.running) if self._work else 0))],
        )  # fmt: skip
        self.url = ""
        self._work: LeaseWork | None = None
        self._listener: Listener | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._relays = [RelayClient(u) for u in config.relays]
        self._skipped: dict[str, str] = {}

    @property
    def address(self) -> str:
        return self.key.address

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        """The agent's background loop (empty before :meth:`start`)."""
        return list(self._tasks)

    async def _on(self, pool: ThreadPoolExecutor, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(pool, fn)

    # --- start and stop ----------------------------------------------------------------------

    async def start(self) -> None:
        self._work = await self._on(self.chain_pool, self._open_chain_side)
        token = await self._on(self.chain_pool, self._work.client.token_metadata)
        self.policy = load_policy(self.config.pricing, token)
        await self._on(self.chain_pool, self._work.recover)
        service = await self._on(self.service_pool, self._open_service)
        agent = self.config.agent
        self._listener = await listen(service.app(), agent.host, agent.port)
        self.url = self._listener.url
        await self._on(self.chain_pool, self._register)
        self._tasks = [asyncio.create_task(self._loop())]
        _log.info("provider_ready", address=self.address, url=self.url,
                  gpus=self.inventory.total, source=self.inventory.source)  # fmt: skip

    def _open_chain_side(self) -> LeaseWork:
        client = MarketClient.connect(self.deployment, self.hex_key)
        store = AgentStore.open(self.config.state)
        records = Records(store.db, client.domain)
        workdir = self.config.state.parent / "jobs"
        # The cgroups are named for this agent's state, so agents on one host never sweep
        # each other's; a sandbox that does not work stops the agent here.
        tag = hashlib.sha256(str(self.config.state.resolve()).encode()).hexdigest()[:12]
        confinement = Confinement.prepare(self.config.jobs, tag=tag, log=_log)
        return LeaseWork(
            self.config, self.key, client, store, records,
            DurableChain(store.db, client, observe=self.metrics.observe_chain_action),
            client.domain, workdir, _log, self.inventory, confinement, self.metrics,
        )  # fmt: skip

    def _open_service(self) -> ProviderService:
        store = AgentStore.open(self.config.state)
        assert self._work is not None
        return ProviderService(
            domain=self._work.domain,
            store=store,
            records=Records(store.db, self._work.domain),
            sealing_key=store.sealing_private_key(),
            pool=self.service_pool,
            log=_log,
            metrics=self.metrics,
            workdir=self.config.state.parent / "jobs",
        )

    def _register(self) -> None:
        """Register with stake, endpoint and sealing key unless registered already."""
        assert self._work is not None
        client = self._work.client
        info = client.provider_info(self.address)
        sealing = public_key_of(self._work.store.sealing_private_key())
        endpoint = self.config.agent.public_url or self.url
        if info.registered:
            if info.endpoint != endpoint or info.encryption_key != sealing:
                # A restart on another port (or a new public URL) must not leave labs calling
                # the old address: the registered endpoint is kept true (issue 14, bug D).
                client.update_profile(endpoint, sealing, info.attributes_hash)
                _log.warning("registration_updated", registered_endpoint=info.endpoint,
                             endpoint=endpoint)  # fmt: skip
            return
        # Each problem is one line with its fix, before anything is staked (a stake below the
        # minimum would be bonded, and then no offer of it ever matched).
        raise_first_failure(provider_checks(self.config, client))
        wanted = self.config.agent.stake
        stake = (wanted and wanted.units(client.token_metadata())) or client.min_stake()
        client.register(stake, endpoint, sealing)
        _log.info("registered", stake=stake, endpoint=endpoint)

    async def stop(self) -> None:
        """Stop serving, stop the jobs (their leases are metered on after a restart), then the
        threads."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
        if self._work is not None:
            await self._on(self.chain_pool, self._work.stop_all)
            self._work.confinement.close()
        for relay in self._relays:
            await relay.close()
        self.chain_pool.shutdown(wait=True)
        self.service_pool.shutdown(wait=True)
        _log.info("provider_stopped", address=self.address)

    # --- the loop ----------------------------------------------------------------------------

    async def _loop(self) -> None:
        assert self._work is not None
        work = self._work
        while True:
            offers: list[Signed[Offer]] = []
            try:
                await self._on(self.chain_pool, work.tick)
                offers = await self._on(self.chain_pool, self._plan_offers)
            except ChainError as exc:
                _log.warning("chain_unavailable", error=str(exc))
            if offers:
                await self._submit(offers)
            await asyncio.sleep(TICK_S)

    def _plan_offers(self) -> list[Signed[Offer]]:
        """Sign (and store) an offer per GPU group whose previous offer expired."""
        assert self._work is not None
        client, store = self._work.client, self._work.store
        now = client.chain_time()
        if all(now < store.latest_offer_expiry(g.model) for g in self.inventory.groups):
            return []
        info = client.provider_info(self.address)
        plans, skips = plan_offers(
            self.inventory,
            store.leased_gpus(),
            self.policy,
            now,
            free_stake=info.free_stake if info.registered else None,
            min_stake=client.min_stake(),
            stake_ratio_bps=client.stake_ratio_bps(),
            max_duration=self.config.agent.max_duration_s,
        )
        for skip in skips:  # offer_skipped with the matcher's reason code, once per change
            if self._skipped.get(skip.model) != str(skip.reason):
                log_skip(_log, skip)
        self._skipped = {skip.model: str(skip.reason) for skip in skips}
        agent = self.config.agent
        signed: list[Signed[Offer]] = []
        for plan in plans:
            if now < store.latest_offer_expiry(plan.model):
                continue
            if plan.gpus < plan.gpus_free:  # the free stake cannot back every free GPU
                _log.info("offer_reduced", model=plan.model, gpus=plan.gpus,
                          gpus_free=plan.gpus_free, free_stake=info.free_stake,
                          lock_per_gpu=plan.lock_per_gpu)  # fmt: skip
            offer = Offer(
                provider=self.key.address,
                gpu_model=plan.model,
                gpu_count=plan.gpus,
                memory_gib=plan.memory_gib,
                price_per_gpu_second=plan.price,
                min_duration=agent.min_duration_s,
                max_duration=agent.max_duration_s,
                expiry=now + agent.offer_ttl_s,
                nonce=now * 10**9 + len(signed),
                billing_modes=billing_modes(*agent.billing),
                bandwidth_gbps=plan.bandwidth_gbps,
                features=plan.features | self._job_features,
            )
            one = self.key.sign(self._work.domain, offer)
            store.add_offer(order_hash(self._work.domain, offer), plan.model, plan.gpus,
                            offer.expiry)  # fmt: skip
            signed.append(one)
        return signed

    async def _submit(self, offers: list[Signed[Offer]]) -> None:
        subs = [Submission(o) for o in offers]
        for relay in self._relays:
            try:
                results = await relay.submit(subs)
            except (MarketError, OSError) as exc:
                _log.warning("relay_unreachable", relay=relay.url, error=str(exc))
                continue
            for offer, result in zip(offers, results, strict=True):
                m = offer.message
                if result.accepted:
                    _log.info("offered", relay=relay.url, model=m.gpu_model, gpus=m.gpu_count,
                              price=m.price_per_gpu_second, expiry=m.expiry)  # fmt: skip
                    await self._explain(relay, offer)
                else:
                    _log.warning("offer_refused", relay=relay.url, status=result.status.value,
                                 message=result.message)  # fmt: skip

    async def _explain(self, relay: RelayClient, offer: Signed[Offer]) -> None:
        """Log ``no_match`` with the matcher's reason codes (and what would change them) for an
        offer the relay's book cannot fill now: why this provider's GPUs sit idle."""
        try:
            explanation = await relay.explain(offer.message)
        except (MarketError, OSError) as exc:
            _log.warning("explain_unavailable", relay=relay.url, error=str(exc))
            return
        assert self._work is not None
        log_no_match(_log, order_hash(self._work.domain, offer.message), explanation)


def run_agent(
    config: ProviderConfig,
    key: bytes,
    deployment: Deployment,
    *,
    on_ready: Callable[[ProviderAgent], None],
) -> None:
    """Run until SIGTERM or SIGINT, then stop gracefully. Chain outages are retried; any other
    error in the agent's loop ends the run with that error (crash-only: the state is durable, a
    restart reconciles it)."""

    async def main() -> None:
        stop = asyncio.Event()
        with stop_signals(stop.set):
            agent = ProviderAgent(config, key, deployment)
            await agent.start()
            stopping = asyncio.create_task(stop.wait())
            try:
                on_ready(agent)
                done, _ = await asyncio.wait(
                    [stopping, *agent.tasks], return_when=asyncio.FIRST_COMPLETED
                )
                for task in done - {stopping}:
                    task.result()  # the loop failed: raise it, so the process ends and says why
            finally:
                stopping.cancel()
                await agent.stop()

    asyncio.run(main())


__all__ = ["ProviderAgent", "job_features", "run_agent"]
