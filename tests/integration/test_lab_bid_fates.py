"""A lab daemon hears what became of its bid from the relay: a bid whose fill reverts (its
allowance taken back after the bid was admitted) is logged ``bid_fill_failed`` with the chain's
error, and ``gpumarket bids --config`` shows the same; ``gpumarket cancel`` signs with the lab's
keystore."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from market.chain.devnet import Devnet
from market.chain.tx import Transactor
from market.matching import Submission
from market.roles import Provider
from nodes.localnet import PASSWORD, PASSWORD_ENV, LocalMarket, command_job
from nodes.wire import OrderStatus, RelayClient
from tests.waiting import wait_until

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
MODEL = "F1-80GB"


@pytest.fixture
def net(tmp_path: Path) -> Iterator[LocalMarket]:
    with Devnet.start(accounts=12, block_time=1) as dev:
        market = LocalMarket(dev, tmp_path)
        try:
            yield market
        finally:
            market.stop_all()


def test_a_lab_hears_that_its_bids_fill_reverted(net: LocalMarket) -> None:
    relay = net.start_relay("relay")
    job = command_job(MODEL, ["/bin/true"], gpus=2, duration=600, max_price=100)
    lab = net.start_lab(0, [relay.url], [job], exit_when_done=False)
    wait_until(lambda: " bid_submitted " in lab.log.read_text(encoding="utf-8"), 60, "the bid")

    lab_account, market = net.lab_account(0), net.contracts.market.address
    token = net.contracts.token
    cut = token.encode_abi("approve", args=[market, 0])
    Transactor(net.dev.web3(), lab_account).send(token.address, cut, what="cut")

    provider_account = net.provider_account(0)
    net.fund(provider_account)
    provider = Provider.connect(net.contracts.deployment, provider_account.key)
    provider.register(provider.client.min_stake(), "http://p0")
    offer = provider.offer(MODEL, gpus=8, memory_gib=80, price_per_gpu_second=50,
                           min_duration=60, max_duration=3600)  # fmt: skip

    async def submit() -> list[OrderStatus]:
        async with RelayClient(relay.url) as client:
            return [r.status for r in await client.submit([Submission(offer)])]

    assert asyncio.run(submit()) == [OrderStatus.ACCEPTED]
    wait_until(
        lambda: " bid_fill_failed " in lab.log.read_text(encoding="utf-8"), 60, "bid_fill_failed"
    )
    line = next(
        line
        for line in lab.log.read_text(encoding="utf-8").splitlines()
        if " bid_fill_failed " in line
    )
    assert "warning" in line
    assert "Allowance" in line

    config = str(net.folder / f"{lab.name}.toml")
    (view,) = gpumarket("bids", "--json", "--config", config)["bids"]
    assert view["fate"] == "fill_failed"
    assert view["lab"] == lab_account.address

    reader = provider.client
    assert reader.min_nonce(lab_account.address) == 0
    cancelled = gpumarket("cancel", view["orderHash"], "--all", "--json", "--config", config)
    assert cancelled["account"] == lab_account.address
    assert cancelled["cancelled"][1] == view["orderHash"]
    assert reader.min_nonce(lab_account.address) > 0
    assert reader.order_state(lab_account.address, bytes.fromhex(view["orderHash"][2:])).cancelled


def gpumarket(*args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "nodes.cli", *args],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT), PASSWORD_ENV: PASSWORD},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    if args[0] == "cancel":
        assert "waiting for the transaction" in done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result
