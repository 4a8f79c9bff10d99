"""The lab client daemon: bids, follows its leases, verifies and pays, proves fraud, settles.

    agent = LabAgent(config, deployment, key, out=sys.stdout)
    await agent.start()                      # prints "lab ready address=0x... metrics=http://..."
    code = await agent.run(exit_when_done=True)
    await agent.stop()

The agent composes three parts: the tick (:mod:`nodes.lab.ticks`: every ``poll_interval_s`` the
chain's events, the bids, each live lease's step, the chain actions, settlement), the
verification and payment of each period (:mod:`nodes.lab.verify`), and the HTTP endpoint for
``/metrics`` (:mod:`nodes.lab.server`). It owns their lifecycle and the progress events.

Outages (chain, provider, relay) are logged and retried next tick; any other error ends the
process (crash-only: its state is durable and a restart reconciles it).

State is the lab's SQLite (:mod:`nodes.lab.store`), written before each act, so a SIGKILL at any
point loses nothing and pays nothing twice. All database and chain work runs on one worker thread
(:class:`~nodes.lab.ledger.Ledger`); HTTP and checks stay off it. SIGTERM ends the tick in
progress, then stops.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TextIO, TypeVar

import aiohttp

from market.chain.deploy import Deployment
from market.errors import ChainError
from nodes.daemon.preflight import raise_first_failure
from nodes.daemon.startup import ready_line
from nodes.lab.config import LabConfig
from nodes.lab.ledger import Ledger
from nodes.lab.metrics import LabMetrics
from nodes.lab.preflight import bid_escrow, lab_checks
from nodes.lab.server import LabServer
from nodes.lab.store import JobRecord
from nodes.lab.ticks import LabTicks
from nodes.lab.verify import PeriodVerifier
from nodes.logs import get_logger

T = TypeVar("T")


class LabAgent:
    """One lab account's daemon over ``config``'s jobs."""

    def __init__(
        self,
        config: LabConfig,
        deployment: Deployment,
        key: bytes,
        *,
        voucher_key: bytes | None = None,
        out: TextIO | None = None,
    ) -> None:
        self.config = config
        self.deployment = deployment
        self.key = key
        self.voucher_key = voucher_key
        self.out = out
        self.log = get_logger("gpumarket.lab")
        self.metrics = LabMetrics()
        self.server = LabServer(self.metrics)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lab-ledger")
        self._ledger: Ledger | None = None
        self._ticks: LabTicks | None = None
        self._verifier: PeriodVerifier | None = None
        self._jobs: dict[int, JobRecord] = {}
        self._stop = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._outputs = config.state.parent / "outputs"  # streamed periods' files

    # --- lifecycle -----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def metrics_url(self) -> str:
        return f"http://{self.config.lab.host}:{self.port}/metrics"

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            raise RuntimeError("start the agent first")
        return self._ledger

    @property
    def ticks(self) -> LabTicks:
        if self._ticks is None:
            raise RuntimeError("start the agent first")
        return self._ticks

    async def _w(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn`` on the ledger's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def start(self) -> None:
        """Open the state, catch up with the chain, sign and fund the bids, serve /metrics;
        prints the ready line once it is all up."""
        cfg = self.config
        self._ledger = await self._w(
            lambda: Ledger.open(
                cfg.state, self.deployment, self.key, self.emit, cfg.chain.confirmations,
                voucher_key=self.voucher_key, wallet=cfg.wallet,
                observe=self.metrics.observe_chain_action,
            )
        )  # fmt: skip
        try:
            keys = await self._w(self.ledger.store.sealing_key)
            token = await self._w(self.ledger.client.token_metadata)
            jobs = await self._w(self.ledger.prepare_jobs, cfg.jobs(token), cfg.lab.bid_ttl_s)
            self._jobs = {j.idx: j for j in jobs}
            block = await self._w(self.ledger.poll_events)
            # Each problem is one line with its fix, before anything is approved or posted: a
            # lab without the tokens would have its bids matched and every fill fail.
            await self._w(self._preflight)
            funded = await self._w(self.ledger.fund, cfg.lab.allowance_units(token))
            self.log.info("lab_funded", address=self.ledger.lab.address, allowance=funded)
            self._session = aiohttp.ClientSession()
            self._verifier = PeriodVerifier(
                cfg, self.ledger, self._w, self.emit, self.metrics, keys, self._jobs,
                self._outputs,
            )  # fmt: skip
            self._ticks = LabTicks(
                cfg, self.ledger, self._w, self.emit, self.log, self.metrics, self._session,
                self._jobs, self._verifier, block=block,
            )  # fmt: skip
            await self._serve()
        except BaseException:
            await self._close()
            raise
        lab = self.ledger.lab
        self._line(ready_line("lab", address=lab.address, metrics=self.metrics_url))
        self.log.info(
            "lab_ready", address=lab.address, owner=lab.key.address, wallet=lab.wallet is not None,
            voucher_key=self.ledger.voucher_key.address, metrics=self.metrics_url, jobs=len(jobs),
        )  # fmt: skip

    def _preflight(self) -> None:
        """Gas, tokens and allowance for the open bids' escrow (:mod:`nodes.lab.preflight`)."""
        client = self.ledger.client
        needed = self.config.lab.allowance_units(client.token_metadata())
        if needed is None:
            needed = sum(bid_escrow(j.bid) for j in self.ledger.open_bids())
        raise_first_failure(lab_checks(client, needed, client.account.address))

    async def run(self, *, exit_when_done: bool = False) -> int:
        """Tick until :meth:`request_stop` (or, with ``exit_when_done``, until every job is
        settled); returns the exit status (0)."""
        while not self._stop.is_set():
            await self.tick()
            if exit_when_done and await self._settled():
                self.emit("lab_done")
                return 0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.config.lab.poll_interval_s)
        return 0

    async def tick(self) -> None:
        """One round (:meth:`nodes.lab.ticks.LabTicks.tick`)."""
        await self.ticks.tick()

    async def _settled(self) -> bool:
        try:
            return await self._w(self.ledger.done)
        except ChainError as exc:  # it reads the chain: an outage means "not yet known"
            self.log.warning("chain_unavailable", error=str(exc))
            return False

    def request_stop(self) -> None:
        """Stop after the tick in progress (the SIGTERM handler)."""
        self._stop.set()

    async def stop(self) -> None:
        await self._close()
        self.log.info("lab_stopped")

    async def _close(self) -> None:
        if self._verifier is not None:
            self._verifier.stop_reruns()
        await self.server.close()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._ledger is not None:
            await self._w(self._ledger.close)
            self._ledger = None
        self._pool.shutdown(wait=True)

    async def _serve(self) -> None:
        ticks = self.ticks
        self.metrics.gauge(
            "gpumarket_lab_leases", "The lab's leases, by phase.",
            lambda: [((("phase", p),), n) for p, n in sorted(ticks.phases.items())],
        )  # fmt: skip
        lab = self.ledger.lab
        account = (("address", lab.address), ("owner", lab.key.address),
                   ("voucher_key", self.ledger.voucher_key.address))  # fmt: skip
        self.metrics.gauge(
            "gpumarket_lab_account",
            "The account the lab is (address: a contract wallet or the key's own), the key that "
            "signs its orders (owner) and the one that signs its vouchers; always 1.",
            lambda: [(account, 1)],
        )
        self.metrics.gauge(
            "gpumarket_lab_chain_block", "The last block whose events the lab applied.",
            lambda: [((), ticks.block)],
        )  # fmt: skip
        await self.server.start(self.config.lab.host, self.config.lab.port)

    # --- progress ------------------------------------------------------------------------------

    def emit(self, event: str, **fields: object) -> None:
        """A progress event: logged (once: stdout carries only the ready line) and counted."""
        self.log.info(event, **fields)
        self.metrics.events.inc(event=event)

    def _line(self, text: str) -> None:
        if self.out is not None:
            print(text, file=self.out, flush=True)


__all__ = ["LabAgent"]
