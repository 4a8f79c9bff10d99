"""`gpumarket relay --store postgresql://...` as a real process on anvil and a real PostgreSQL: the
orders it accepted outlive a SIGKILL, and the restarted relay serves and matches them."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from market.matching import Submission
from market.protocol.eip712 import order_hash
from nodes.wire import BookSnapshot, OrderResult, OrderStatus, RelayClient
from tests.integration.conftest import MarketEnv
from tests.integration.relay_harness import MODEL, bid, fund_market, offer, ready_line
from tests.waiting import wait_until

pytestmark = pytest.mark.integration
READY_DEADLINE_S = 30.0
KEY_ENV = "RELAY_TEST_KEY"


async def _talk(url: str, orders: list[Submission]) -> tuple[tuple[OrderResult, ...], BookSnapshot]:
    async with RelayClient(url) as client:
        results = await client.submit(orders) if orders else ()
        return results, await client.book(MODEL)


class RelayProcess:
    """``python -m nodes.cli relay --store URL`` with its stderr in a file."""

    def __init__(self, env: MarketEnv, tmp_path: Path, store: str) -> None:
        self.deployment = tmp_path / "deployment.json"
        env.contracts.deployment.save(self.deployment)
        self.key = "0x" + bytes(env.devnet.accounts[7].key).hex()
        self.tmp_path = tmp_path
        self.store = store
        self.runs: list[subprocess.Popen[str]] = []

    def start(self) -> tuple[subprocess.Popen[str], dict[str, str]]:
        log = (self.tmp_path / f"relay-{len(self.runs)}.log").open("w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "nodes.cli", "relay", "--deployment", str(self.deployment),
             "--store", self.store, "--port", "0", "--matcher-key-env", KEY_ENV],
            stdout=subprocess.PIPE, stderr=log, text=True, env={**os.environ, KEY_ENV: self.key},
        )  # fmt: skip
        log.close()
        self.runs.append(proc)
        line = ready_line(proc, READY_DEADLINE_S)
        return proc, dict(part.split("=", 1) for part in line.split()[2:])

    def log(self, run: int) -> str:
        return (self.tmp_path / f"relay-{run}.log").read_text()

    def kill_all(self) -> None:
        for proc in self.runs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
            if proc.stdout is not None:
                proc.stdout.close()


@pytest.fixture
def relays(env: MarketEnv, tmp_path: Path, pg_url: str) -> Iterator[RelayProcess]:
    fund_market(env)
    runs = RelayProcess(env, tmp_path, pg_url)
    try:
        yield runs
    finally:
        runs.kill_all()


@pytest.fixture
def postgres_down_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    return f"postgresql://relay:hunter2@127.0.0.1:{port}/relay"


def test_relay_on_postgres_serves_its_orders_after_a_sigkill_and_matches_them(
    env: MarketEnv, relays: RelayProcess, pg_url: str
) -> None:
    proc, first = relays.start()
    o, low = offer(env), bid(env, max_price_per_gpu_second=2)  # below the offer's price: rests
    results, _ = asyncio.run(_talk(first["url"], [Submission(o), Submission(low)]))
    assert [r.status for r in results] == [OrderStatus.ACCEPTED] * 2

    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL

    proc, second = relays.start()  # the same database
    assert second["relay"] == first["relay"]  # its id is kept in the database too
    _, book = asyncio.run(_talk(second["url"], []))
    assert [(e.order.signed, e.remaining) for e in book.offers] == [(o, 8)]
    assert [(e.order.signed, e.remaining) for e in book.bids] == [(low, 4)]

    high = bid(env, gpus=2)  # crosses the offer that outlived the kill
    results, _ = asyncio.run(_talk(second["url"], [Submission(high)]))
    assert [r.status for r in results] == [OrderStatus.ACCEPTED]
    reader = env.client()
    oh = order_hash(reader.domain, o.message)
    wait_until(lambda: reader.order_state(o.message.provider, oh).filled == 2, 20, "the lease")

    def fills() -> list[tuple[int, str, int]]:
        with psycopg.connect(pg_url) as conn:  # the fill's intent and outcome: PostgreSQL's rows
            return conn.execute("SELECT gpus, state, term FROM fills").fetchall()

    # The chain shows the lease a moment before the matcher has its receipt and writes the
    # outcome over the intent.
    wait_until(lambda: fills() != [(2, "intent", 0)], 20, "the fill's outcome")
    assert fills() == [(2, "opened", 0)]

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, relays.log(1)
    assert "lease_opened" in relays.log(1)


def test_relay_with_its_postgres_down_says_so_in_one_line(
    env: MarketEnv, tmp_path: Path, postgres_down_url: str
) -> None:
    deployment = tmp_path / "deployment.json"
    env.contracts.deployment.save(deployment)
    done = subprocess.run(
        [sys.executable, "-m", "nodes.cli", "relay", "--deployment", str(deployment),
         "--store", postgres_down_url, "--port", "0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("error:")]
    assert "cannot connect" in line
    assert "is the server running" in line
    assert "hunter2" not in done.stderr
