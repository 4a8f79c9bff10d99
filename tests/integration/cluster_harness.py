"""Relay cluster instances as real processes for the tests: ``gpumarket relay --store URL
--cluster NAME --nats URL --instance ID``, each with its stderr in a file, killed (SIGKILL) or
stopped (SIGTERM) one at a time, all of them always stopped at the end."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from market.matching import Submission
from market.protocol.eip712 import Domain, order_hash
from market.protocol.types import Bid, Offer, Signed
from nodes.wire import BookSnapshot, OrderResult, RelayClient
from tests.integration.conftest import MarketEnv
from tests.integration.relay_harness import MODEL, ready_line

READY_DEADLINE_S = 40.0
KEY_ENV = "RELAY_CLUSTER_TEST_KEY"
LEASE_TTL_S = 1.5
"""Short, so that a killed leader is replaced within seconds."""


@dataclass
class Instance:
    name: str
    proc: subprocess.Popen[str]
    url: str
    log: Path

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


class Cluster:
    """Instances of cluster ``name`` over the PostgreSQL at ``store`` and the NATS at ``nats``."""

    def __init__(self, env: MarketEnv, tmp_path: Path, store: str, nats: str) -> None:
        self.deployment = tmp_path / "deployment.json"
        env.contracts.deployment.save(self.deployment)
        self.key = "0x" + bytes(env.devnet.accounts[7].key).hex()
        self.tmp_path = tmp_path
        self.store = store
        self.nats = nats
        self.instances: dict[str, Instance] = {}
        self.runs: list[Instance] = []

    def start(self, *names: str) -> list[Instance]:
        """Start instances (all launched first, then each waited for)."""
        procs = [(name, self._launch(name)) for name in names]
        started = []
        for name, (proc, log) in procs:
            line = ready_line(proc, READY_DEADLINE_S)
            fields = dict(part.split("=", 1) for part in line.split()[2:])
            instance = Instance(name, proc, fields["url"], log)
            self.instances[name] = instance
            self.runs.append(instance)
            started.append(instance)
        return started

    def _launch(self, name: str) -> tuple[subprocess.Popen[str], Path]:
        log = self.tmp_path / f"{name}-{len(self.runs)}.log"
        with log.open("w") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "nodes.cli", "relay", "--deployment", str(self.deployment),
                 "--store", self.store, "--port", "0", "--matcher-key-env", KEY_ENV,
                 "--cluster", "test", "--nats", self.nats, "--instance", name,
                 "--lease-ttl", str(LEASE_TTL_S)],
                stdout=subprocess.PIPE, stderr=err, text=True,
                env={**os.environ, KEY_ENV: self.key},
            )  # fmt: skip
        return proc, log

    def live(self) -> list[Instance]:
        return [i for i in self.instances.values() if i.alive]

    def kill(self, name: str) -> None:
        """SIGKILL: no drain, no lease released."""
        proc = self.instances[name].proc
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL

    def leader(self) -> str | None:
        """The holder of the live matcher lease, as PostgreSQL has it."""
        with psycopg.connect(self.store, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT holder FROM matcher_lease WHERE expires > clock_timestamp()"
            ).fetchone()
        return None if row is None else str(row[0])

    def logs(self) -> str:
        return "\n".join(f"--- {i.log.name}\n{i.log.read_text()[-3000:]}" for i in self.runs)

    def stop_all(self) -> None:
        for instance in self.runs:
            if instance.proc.poll() is None:
                instance.proc.send_signal(signal.SIGTERM)
        for instance in self.runs:
            try:
                instance.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                instance.proc.kill()
                instance.proc.wait(timeout=30)
            if instance.proc.stdout is not None:
                instance.proc.stdout.close()


def submit(url: str, orders: Iterable[Signed[Offer] | Signed[Bid]]) -> tuple[OrderResult, ...]:
    async def go() -> tuple[OrderResult, ...]:
        async with RelayClient(url) as client:
            return await client.submit([Submission(o) for o in orders])

    return asyncio.run(go())


def book(url: str, depth: int = 1000) -> BookSnapshot:
    async def go() -> BookSnapshot:
        async with RelayClient(url) as client:
            return await client.book(MODEL, depth=depth)

    return asyncio.run(go())


def chain_block(url: str) -> int:
    """The last block whose events the instance at ``url`` applied (its metrics)."""

    async def go() -> str:
        async with RelayClient(url) as client:
            return await client.text("/metrics")

    for line in asyncio.run(go()).splitlines():
        if line.startswith("gpumarket_relay_chain_block "):
            return int(float(line.split()[-1]))
    raise AssertionError(f"{url} reports no gpumarket_relay_chain_block")


def booked(url: str, domain: Domain) -> dict[bytes, int]:
    """Every order in ``url``'s book of MODEL: its hash and the GPUs it has left."""
    snap = book(url)
    return {
        order_hash(domain, e.order.signed.message): e.remaining for e in (*snap.offers, *snap.bids)
    }


__all__ = ["LEASE_TTL_S", "Cluster", "Instance", "book", "booked", "chain_block", "submit"]
