"""``gpumarket price`` against a live relay on a devnet: the quote reads the relay's book and the
lease the chain opened (its model read from the opening transaction), and says what it rests on;
``price record`` writes what ``price backtest`` replays."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from market.chain.devnet import Devnet
from market.chain.leases import opened_leases
from market.pricing import BookSample, Recording
from nodes.localnet import LocalMarket, command_job
from tests.waiting import wait_until

pytestmark = pytest.mark.integration
MODEL = "Q1-80GB"
CHEAP, DEAR = 500, 700  # base units per GPU-second: 1.80 and 2.52 tUSD per GPU-hour


@pytest.fixture
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMarket]:
    with Devnet.start(accounts=12, block_time=1) as dev:
        market = LocalMarket(dev, tmp_path_factory.mktemp("price"))
        try:
            yield market
        finally:
            market.stop_all()


def _price(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nodes.cli", "price", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_price_suggest_quotes_from_the_live_book_and_the_leases_the_chain_opened(
    net: LocalMarket, tmp_path: Path
) -> None:
    relay = net.start_relay()
    net.start_provider(0, [relay.url], model=MODEL, price=CHEAP)
    net.start_provider(1, [relay.url], model=MODEL, price=DEAR)
    job = command_job(MODEL, ["python", "-c", "print(1)"], gpus=2, duration=30, max_price=600)
    lab = net.start_lab(0, [relay.url], [job])
    wait_until(lambda: len(opened_leases(net.faucet).leases) == 1, 90, "the lab's lease to open")
    (lease,) = opened_leases(net.faucet).leases
    assert (lease.model, lease.memory_gib, lease.gpus, lease.price_per_gpu_second) == (
        MODEL, 80, 2, CHEAP,
    )  # fmt: skip
    where = ["--relay", relay.url, "--deployment", str(net.deployment_file)]
    hardware = ["--model", MODEL, "--gpus", "4", "--memory-gib", "80"]

    def quoted() -> dict[str, object]:
        done = _price("suggest", *where, *hardware, "--json")
        assert done.returncode == 0, done.stderr
        doc = json.loads(done.stdout)
        assert doc["token"] == {"symbol": "tUSD", "decimals": 6}
        (quote,) = doc["quotes"]
        return dict(quote)

    # Both providers' offers rest in the book once each has re-signed after the fill.
    wait_until(lambda: quoted()["asks"] == 2, 60, "both offers in the relay's book")
    quote = quoted()
    assert (quote["leases"], quote["cleared_median"], quote["leases_unread"]) == (1, CHEAP, 0)
    assert (quote["cheapest_ask"], quote["ask_at_percentile"]) == (CHEAP, CHEAP)
    assert (quote["price_per_gpu_second"], quote["price_per_gpu_hour"]) == (CHEAP, CHEAP * 3600)
    assert quote["basis"] == "asks+leases"

    text = _price("suggest", *where, *hardware)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == f"{MODEL} x4 (80 GiB): suggest 1.80 tUSD/GPU-hour"
    assert lines[1] == "  asks      2 resting: cheapest 1.80 tUSD, 25th percentile 1.80 tUSD"
    assert lines[3].startswith("  leases    1 opened in the last ")
    assert lines[3].endswith("blocks: 25th 1.80 tUSD, median 1.80 tUSD, 75th 1.80 tUSD")
    assert (
        lines[-1]
        == '  config    [pricing] policy = "fixed", params = { price_per_gpu_hour = "1.8" }'
    )
    assert lab.wait(120) == 0

    out = tmp_path / "market.jsonl"
    recorded = _price("record", *where, "--model", MODEL, "--samples", "2", "--interval", "0",
                      "--out", str(out))  # fmt: skip
    assert recorded.returncode == 0, recorded.stderr
    recording = Recording.load(out)
    assert recording.header.source == relay.url
    books = [e for e in recording.events if isinstance(e, BookSample)]
    assert len(books) == 2
    # Each provider's prices: an offer past its 30 s expiry may still rest beside the one its
    # provider signed again, until the relay's next read of the chain's clock.
    assert sorted({a.price for a in books[0].asks}) == [CHEAP, DEAR]

    params = '{ price_per_gpu_hour = "1.44" }'
    backtest = _price("backtest", str(out), "--policy", "fixed", "--params", params, *hardware,
                      "--json")  # fmt: skip
    assert backtest.returncode == 0, backtest.stderr
    (result,) = json.loads(backtest.stdout)["results"]
    assert result["earned"] >= 0
    assert 0 <= result["match_rate"] <= 1
