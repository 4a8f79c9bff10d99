"""`gpumarket relay` as a real process: readiness line, orders over a real socket, SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from market.matching import Submission
from market.protocol.eip712 import order_hash
from nodes.wire import BookSnapshot, OrderResult, OrderStatus, RelayClient
from tests.integration.conftest import MarketEnv
from tests.integration.relay_harness import MODEL, bid, fund_market, offer, ready_line
from tests.waiting import wait_until

pytestmark = pytest.mark.integration
READY_DEADLINE_S = 30.0


async def _talk(
    url: str, orders: list[Submission]
) -> tuple[tuple[OrderResult, ...], BookSnapshot, str]:
    async with RelayClient(url) as client:
        results = await client.submit(orders)
        return results, await client.book(MODEL), await client.text("/healthz")


@pytest.mark.parametrize("configured_by", ["flags", "file"])
def test_relay_process_matches_orders_and_exits_zero_on_sigterm(
    env: MarketEnv, tmp_path: Path, configured_by: str
) -> None:
    fund_market(env)
    deployment = tmp_path / "deployment.json"
    env.contracts.deployment.save(deployment)
    db = tmp_path / "relay.sqlite"
    key = "0x" + bytes(env.devnet.accounts[7].key).hex()
    command = ["relay", "--deployment", str(deployment), "--db", str(db), "--port", "0"]
    if configured_by == "file":  # the same settings from a TOML file (db_path relative to it)
        (tmp_path / "relay.toml").write_text('db_path = "relay.sqlite"\nport = 0\n')
        command = [
            "relay",
            "--deployment",
            str(deployment),
            "--config",
            str(tmp_path / "relay.toml"),
        ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "nodes.cli", *command, "--matcher-key-env", "RELAY_TEST_KEY"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "RELAY_TEST_KEY": key},
    )
    try:
        line = ready_line(proc, READY_DEADLINE_S)
        fields = dict(part.split("=", 1) for part in line.split()[2:])
        o, b = offer(env), bid(env)
        results, _, health = asyncio.run(_talk(fields["url"], [Submission(o), Submission(b)]))
        assert [r.status for r in results] == [OrderStatus.ACCEPTED] * 2
        assert health == f"ok relay={fields['relay']}\n"
        reader = env.client()
        oh = order_hash(reader.domain, o.message)
        wait_until(lambda: reader.order_state(o.message.provider, oh).filled == 4, 20, "the lease")
        _, snapshot, _ = asyncio.run(_talk(fields["url"], []))
        assert [(e.order.signed, e.remaining) for e in snapshot.offers] == [(o, 4)]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "relay_ready" in err
    assert "lease_opened" in err
    assert "relay_stopped" in err
    assert db.exists()  # the state where the flags or the file put it
