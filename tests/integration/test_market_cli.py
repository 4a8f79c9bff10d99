"""The market in the CLI against a real relay on the session's anvil: ``gpumarket models``,
``offers``, ``bids``, ``explain`` and ``lease`` run as subprocesses, their JSON checked; the read
routes answer JSON to ``Accept: application/json``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from market.protocol.eip712 import order_hash
from nodes.wire import OrderStatus
from tests.integration.conftest import MarketEnv
from tests.integration.relay_harness import (
    LAB,
    MODEL,
    RelayHandle,
    Relays,
    admit_then_revoke,
    bid,
    fund_market,
    offer,
    open_relays,
    statuses,
)
from tests.waiting import wait_until

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def relays(env: MarketEnv, tmp_path: Path) -> Iterator[Relays]:
    with open_relays(env, tmp_path) as started:
        yield started


@pytest.fixture
def market(env: MarketEnv) -> MarketEnv:
    return fund_market(env)


def gpumarket(relay: RelayHandle, *args: str) -> Any:
    """``python -m nodes.cli ARGS --json --relay URL``: its JSON output."""
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    env.pop("GPUMARKET_RELAY", None)
    done = subprocess.run(
        [sys.executable, "-m", "nodes.cli", *args, "--json", "--relay", relay.relay.url],
        capture_output=True, text=True, timeout=60, env=env, cwd=ROOT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def text(relay: RelayHandle, *args: str) -> str:
    """``python -m nodes.cli ARGS --relay URL``: what it prints for a person."""
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "nodes.cli", *args, "--relay", relay.relay.url],
        capture_output=True, text=True, timeout=60, env=env, cwd=ROOT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def get_json(relay: RelayHandle, path: str) -> tuple[int, Any]:
    request = urllib.request.Request(relay.relay.url + path, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("application/json")
        return response.status, json.loads(response.read())


def test_models_offers_and_an_unmatched_bid_with_its_reason(
    market: MarketEnv, relays: Relays
) -> None:
    relay = relays.start()  # no matcher: the orders rest
    dear, cheap = offer(market, price_per_gpu_second=6, gpus=2), offer(market, gpus=8)
    low = bid(market, max_price_per_gpu_second=1)
    assert statuses(relay.submit(dear, cheap, low)) == [OrderStatus.ACCEPTED] * 3

    models = gpumarket(relay, "models")
    assert models["models"] == [
        {"model": MODEL, "offers": 2, "bids": 1, "gpusOffered": 10, "gpusWanted": 4,
         "bestAsk": 3, "bestBid": 1},
    ]  # fmt: skip

    offers = gpumarket(relay, "offers", "--model", MODEL)["offers"]
    assert [(o["pricePerGpuSecond"], o["remaining"]) for o in offers] == [(3, 8), (6, 2)]
    assert offers[0]["provider"] == cheap.message.provider
    assert offers[0]["reputation"]["provider"].lower() == cheap.message.provider.lower()
    decimals = models["token"]["decimals"]
    per_hour = str(Decimal(5 * 3600) / 10**decimals)  # 5 base units a GPU-second, in tokens
    assert [o["pricePerGpuSecond"] for o in gpumarket(relay, "offers", "--max-price", per_hour)[
        "offers"
    ]] == [3]  # fmt: skip
    table = text(relay, "offers", "--model", MODEL)
    symbol = models["token"]["symbol"]
    assert table.splitlines()[0].split()[:3] == ["PRICE", "MODEL", "LEFT"]
    assert f"{symbol}/GPU-hour" in table.splitlines()[1]
    assert gpumarket(relay, "offers", "--gpus", "4")["offers"][0]["remaining"] == 8
    assert len(gpumarket(relay, "offers", "--gpus", "4")["offers"]) == 1

    lab = market.lab(LAB).address
    bids = gpumarket(relay, "bids", "--lab", lab)
    assert bids["lab"] == lab
    (view,) = bids["bids"]
    assert view["orderHash"] == "0x" + order_hash(market.client().domain, low.message).hex()
    assert view["fate"] == "unmatched"
    assert [r["code"] for r in view["explanation"]["reasons"]] == ["price_not_crossed"]
    assert any(c["suggested"] == 3 for c in view["explanation"]["changes"])
    explained = gpumarket(relay, "explain", view["orderHash"], "--lab", lab)
    assert explained["bids"] == [view]
    told = text(relay, "explain", view["orderHash"], "--lab", lab)
    assert "reason: price_not_crossed" in told
    change = next(line for line in told.splitlines() if "would match with" in line)
    assert change.split("->")[1].strip() == f"{Decimal(3 * 3600) / 10**decimals} {symbol}/GPU-hour"

    dear_hash = "0x" + order_hash(market.client().domain, dear.message).hex()
    pair = gpumarket(relay, "explain", "--offer", dear_hash, "--bid", view["orderHash"])
    assert pair["explanation"]["matchable"] is False
    reasons = [r["code"] for r in pair["explanation"]["reasons"]]
    assert reasons == ["price_not_crossed", "not_enough_gpus"]  # 2 GPUs at 6 for 4 at 1
    cheap_hash = offers[0]["orderHash"]
    pair = gpumarket(relay, "explain", "--offer", cheap_hash, "--bid", view["orderHash"])
    assert [r["code"] for r in pair["explanation"]["reasons"]] == ["price_not_crossed"]
    assert [c["suggested"] for c in pair["explanation"]["changes"]] == [3]

    status, listed = get_json(relay, "/v1/book")
    assert (status, listed["type"], listed["body"]) == (200, "ModelList", models)
    status, as_json = get_json(relay, "/v1/offers?maxPrice=5")
    assert as_json["type"] == "OfferList"
    assert [o["pricePerGpuSecond"] for o in as_json["body"]["offers"]] == [3]


def test_a_matched_bid_names_its_lease_and_the_lease_reads_from_the_chain(
    market: MarketEnv, relays: Relays
) -> None:
    relay = relays.start(matcher_key=relays.matcher_key())
    lab = market.lab(LAB).address
    b = bid(market)
    assert statuses(relay.submit(b)) == [OrderStatus.ACCEPTED]
    assert gpumarket(relay, "bids", "--lab", lab)["bids"][0]["fate"] == "unmatched"
    relay.submit(offer(market))

    def matched() -> bool:
        views = gpumarket(relay, "bids", "--lab", lab)["bids"]
        return bool(views) and views[0]["fate"] == "matched"

    wait_until(matched, 30, "the bid matched")
    (view,) = gpumarket(relay, "bids", "--lab", lab)["bids"]
    (lease_id,) = view["leaseIds"]
    lease = gpumarket(relay, "lease", lease_id)
    assert lease["leaseId"] == lease_id
    assert lease["bidHash"] == view["orderHash"]
    assert (lease["terms"]["gpus"], lease["terms"]["pricePerGpuSecond"]) == (4, 3)
    assert lease["terms"]["lab"] == lab
    assert lease["status"] == "active"
    assert lease["events"][0]["name"] == "LeaseOpened"


def test_a_bid_whose_fill_reverted_shows_the_chains_error(
    market: MarketEnv, relays: Relays
) -> None:
    relay = relays.start(matcher_key=relays.matcher_key())
    unfunded = 6
    broke = bid(market, lab=unfunded, gpus=2)
    assert statuses(admit_then_revoke(relay, market, unfunded, broke)) == [OrderStatus.ACCEPTED]
    lab = market.lab(unfunded).address
    assert gpumarket(relay, "bids", "--lab", lab)["bids"][0]["fate"] == "unmatched"
    relay.submit(offer(market))

    def failed() -> bool:
        views = gpumarket(relay, "bids", "--lab", lab)["bids"]
        return bool(views) and views[0]["fate"] == "fill_failed"

    wait_until(failed, 30, "the failed fill")
    (view,) = gpumarket(relay, "bids", "--lab", lab)["bids"]
    assert "Allowance" in view["error"]
    assert view["leaseIds"] == []


def test_an_unknown_lease_is_one_error_line_after_its_progress_line(
    market: MarketEnv, relays: Relays
) -> None:
    relay = relays.start()
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    lease_id = "0x" + "ab" * 32
    done = subprocess.run(
        [sys.executable, "-m", "nodes.cli", "lease", lease_id, "--relay", relay.relay.url],
        capture_output=True, text=True, timeout=60, env=env, cwd=ROOT, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stdout == ""
    waited, error = done.stderr.splitlines()  # what it waited for, then the one error line
    assert waited == (
        f"lease {lease_id}: waiting for the relay at {relay.relay.url} (it reads the lease's "
        "events on chain)…"
    )
    assert error.startswith("error: ")
    assert "no lease " + lease_id in error
