"""The explorer as a person sees it: a devnet, a relay, a provider and two labs (one lease opened,
one bid left resting below the asks), then Debian's ``chromium`` headless against the live relay.
The overview, a lease page and an account page are rendered by the real browser (its JavaScript
fetching the relay's JSON reads), their DOM checked for the model, prices per GPU-hour with the
token's symbol, the lease id and the depth chart's SVG, and screenshots kept (under the test's
tmp dir and ``build/screenshots/``). The explorer's JSON reads are checked as ``curl`` sees them.
Then, in a page left open (driven over the DevTools protocol), a new bid arriving on the relay's
WebSocket stream redraws the depth chart and the book's table without a reload."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from market.chain.devnet import Devnet
from market.chain.leases import opened_leases
from nodes.localnet import LocalMarket, command_job
from tests.waiting import wait_until

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "build" / "screenshots"
MODEL = "Q1-80GB"
PRICE = 500  # base units per GPU-second: 1.80 tUSD per GPU-hour
LOW = 100  # the resting bid's limit: 0.36 tUSD per GPU-hour, below every ask
LATE = 200  # a bid arriving while the page is open: 0.72 tUSD per GPU-hour, still below the asks
BROWSER_TIMEOUT_S = 90


def chromium() -> str:
    """Debian's chromium; a missing browser fails the test (``make setup`` installs it)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail(
            "chromium is not installed: run 'make chromium' as root "
            "(apt-get install -y chromium) to test the explorer in a browser"
        )
    return found


@pytest.fixture
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMarket]:
    with Devnet.start(accounts=12, block_time=1) as dev:
        market = LocalMarket(dev, tmp_path_factory.mktemp("explorer"))
        try:
            yield market
        finally:
            market.stop_all()


def get_json(url: str) -> Any:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("application/json")
        frame = json.loads(response.read())
    return frame["body"]


def browse(url: str, shot: Path, profile: Path) -> str:
    """The DOM ``chromium`` renders at ``url`` once its scripts ran; a screenshot to ``shot``
    (and a copy in ``build/screenshots/``)."""
    browser = chromium()
    common = [
        browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
        "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}",
        "--virtual-time-budget=8000", "--window-size=1280,900",
    ]  # fmt: skip
    dump = subprocess.run(
        [*common, "--dump-dom", url],
        capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert dump.returncode == 0, dump.stderr[-2000:]
    snap = subprocess.run(
        [*common, f"--screenshot={shot}", url],
        capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert snap.returncode == 0, snap.stderr[-2000:]
    assert shot.read_bytes().startswith(b"\x89PNG"), f"{shot} is not a PNG"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, SCREENSHOTS / shot.name)
    return dump.stdout


class DevTools:
    """One chromium tab driven over the DevTools protocol (JSON messages on a WebSocket)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0

    async def call(self, method: str, **params: Any) -> Any:
        self.next_id += 1
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params})
        while True:  # events (none enabled) and answers share the socket
            message = await self.ws.receive_json(timeout=BROWSER_TIMEOUT_S)
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                return message["result"]

    async def js(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    async def until(self, expression: str, what: str, timeout_s: float = 30) -> None:
        """Poll ``expression`` in the page until it is true (a deadline, never a fixed sleep)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not await self.js(expression):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
            await asyncio.sleep(0.05)


async def watch_live_redraw(
    url: str, profile: Path, arrive: Callable[[], None]
) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    """Open ``url`` in a chromium left running, wait until it drew the book and its stream is
    live, mark the document, call ``arrive`` (which puts a new order on the book), and wait for
    the depth chart to redraw. Returns what the page showed before and after, with the mark, and
    its screenshot (PNG) once redrawn."""
    browser = await asyncio.create_subprocess_exec(
        chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
        "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}",
        "--remote-debugging-port=0", "--window-size=1280,900", url,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    shown = """({
        bids: [...document.querySelectorAll("main table")][0]?.rows[1]?.cells[4]?.textContent,
        bestBid: [...document.querySelectorAll("main table")][0]?.rows[1]?.cells[6]?.textContent,
        depth: document.querySelector("svg.depth path.bids")?.getAttribute("d"),
        feed: document.getElementById("feed")?.textContent,
        mark: window.unreloaded === true,
    })"""
    try:
        active = profile / "DevToolsActivePort"  # chromium writes its port there once listening
        wait_until(lambda: active.is_file() and bool(active.read_text().strip()), 30,
                   "chromium's DevTools port")  # fmt: skip
        port = int(active.read_text().split()[0])
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as listed:
                targets = await listed.json()
            (tab,) = [t for t in targets if t["type"] == "page"]
            async with http.ws_connect(tab["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                page = DevTools(ws)
                await page.until(
                    'document.querySelector("svg.depth path.bids") !== null'
                    ' && document.getElementById("live").textContent === "live"',
                    "the overview drawn and its stream live",
                )
                await page.js("window.unreloaded = true")
                before = await page.js(shown)
                await asyncio.to_thread(arrive)
                await page.until(
                    'document.querySelector("svg.depth path.bids")?.getAttribute("d") !== '
                    + json.dumps(before["depth"]),
                    "the depth chart redrawn from the stream",
                )
                after = await page.js(shown)
                png = await page.call("Page.captureScreenshot", format="png")
    finally:
        browser.terminate()
        await browser.wait()
    return before, after, base64.b64decode(png["data"])


def test_the_explorer_shows_the_live_market_in_a_real_browser(
    net: LocalMarket, tmp_path: Path
) -> None:
    chromium()  # fail first, before a devnet is spent, when there is no browser
    relay = net.start_relay()
    net.start_provider(0, [relay.url], model=MODEL, price=PRICE)
    job = command_job(MODEL, ["python", "-c", "print(1)"], gpus=2, duration=300, max_price=600)
    net.start_lab(0, [relay.url], [job])
    wait_until(lambda: len(opened_leases(net.faucet).leases) == 1, 90, "the lab's lease to open")
    (lease,) = opened_leases(net.faucet).leases
    lease_id = "0x" + lease.lease_id.hex()
    low = command_job(MODEL, ["python", "-c", "print(1)"], gpus=1, duration=60, max_price=LOW)
    net.start_lab(1, [relay.url], [low])

    def depth() -> Any:
        return get_json(f"{relay.url}/v1/depth/{MODEL}")

    wait_until(lambda: bool(depth()["asks"]) and bool(depth()["bids"]), 60, "an ask and a bid")

    # The reads, as curl sees them.
    book = depth()
    assert book["asks"][0]["pricePerGpuSecond"] == PRICE
    assert book["bids"][0] == {"pricePerGpuSecond": LOW, "gpus": 1, "orders": 1}
    leases = get_json(f"{relay.url}/v1/leases?recent=5")
    assert [row["leaseId"] for row in leases["leases"]] == [lease_id]
    assert leases["token"] == {"symbol": "tUSD", "decimals": 6}
    # The job ran in seconds: the lab ended its lease early, as the chain says.
    wait_until(
        lambda: get_json(f"{relay.url}/v1/leases")["leases"][0]["state"] == "terminated",
        60,
        "the lease's termination",
    )
    provider = net.provider_account(0).address
    assert leases["leases"][0]["provider"] == provider
    history = get_json(f"{relay.url}/v1/prices/{MODEL}")
    assert [(p["leaseId"], p["pricePerGpuSecond"]) for p in history["leases"]] == [
        (lease_id, PRICE)
    ]
    (listed,) = get_json(f"{relay.url}/v1/providers")["providers"]
    assert (listed["provider"], listed["registered"]) == (provider, True)
    assert listed["stake"] == 1000 * 10**6
    assert listed["reputation"]["leasesOpened"] == 1
    lab = net.lab_account(0).address
    account = get_json(f"{relay.url}/v1/accounts/{lab}")
    assert [row["leaseId"] for row in account["leases"]] == [lease_id]
    assert account["balance"] == net.balance(lab)
    for bad in ("/v1/accounts/0x12", "/v1/leases?recent=x", "/v1/depth/" + "X" * 33):
        with pytest.raises(urllib.error.HTTPError) as refused:
            get_json(relay.url + bad)
        assert refused.value.code == 400
        assert json.loads(refused.value.read())["body"]["code"] == "malformed_frame"

    # The pages, as a person sees them.
    profile = tmp_path / "chromium-profile"
    overview = browse(f"{relay.url}/#/", tmp_path / "explorer-overview.png", profile)
    assert MODEL in overview
    assert "1.80 tUSD/GPU-hour" in overview  # the best ask, and the lease's price
    assert "0.36 tUSD/GPU-hour" in overview  # the resting bid
    assert lease_id in overview
    assert '<span class="badge ">terminated</span>' in overview
    assert re.search(r'<svg class="depth"[^>]*>', overview)
    assert re.search(r'<path class="asks" d="M[^"]+"', overview)
    assert re.search(r'<path class="bids" d="M[^"]+"', overview)
    assert re.search(r'<span id="live" class="live"[^>]*>live</span>', overview)  # stream open

    prices = browse(f"{relay.url}/#/prices/{MODEL}", tmp_path / "explorer-prices.png", profile)
    assert re.search(r'<svg class="prices"[^>]*>', prices)
    assert "1.8000 tUSD/GPU-hour at " in prices  # the lease's point, titled

    page = browse(f"{relay.url}/#/lease/{lease_id}", tmp_path / "explorer-lease.png", profile)
    assert f'Lease <span class="mono">{lease_id}</span>' in page
    assert '<dd class="price">1.80 tUSD/GPU-hour</dd>' in page
    assert "LeaseOpened" in page
    # The chain's numbers as a person reads them: amounts in tokens, times as dates.
    assert re.search(r"end=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC paid=[\d.,]+ tUSD", page)
    assert provider in page

    mine = browse(f"{relay.url}/#/account/{lab}", tmp_path / "explorer-account.png", profile)
    assert f'Account <span class="mono">{lab}</span>' in mine
    assert re.search(r'<dd class="balance">[\d,]+\.\d+ tUSD</dd>', mine)
    assert lease_id in mine

    providers = browse(f"{relay.url}/#/providers", tmp_path / "explorer-providers.png", profile)
    assert provider in providers
    assert "1,000.00 tUSD" in providers  # the provider's stake

    # A page left open redraws when the stream brings a new order: no reload, no refresh.
    def late_bid() -> None:
        bid = command_job(MODEL, ["python", "-c", "print(1)"], gpus=3, duration=60, max_price=LATE)
        net.start_lab(2, [relay.url], [bid])
        wait_until(lambda: len(depth()["bids"]) == 2, 60, "the late bid resting on the book")

    before, after, png = asyncio.run(
        watch_live_redraw(f"{relay.url}/#/", tmp_path / "chromium-live", late_bid)
    )
    shot = tmp_path / "explorer-live-redraw.png"
    shot.write_bytes(png)
    shutil.copy(shot, SCREENSHOTS / shot.name)
    assert png.startswith(b"\x89PNG")
    assert (before["bids"], before["bestBid"]) == ("1 ", "0.36 tUSD/GPU-hour")
    assert (after["bids"], after["bestBid"]) == ("2 ", "0.72 tUSD/GPU-hour")
    assert after["depth"] != before["depth"]
    assert f"{MODEL} bid" not in before["feed"]
    assert f"{MODEL} bid" in after["feed"]  # the stream's BookChange, in the live feed
    assert "has 3 GPUs left" in after["feed"]
    assert after["mark"] is True  # the same document: redrawn in place, never reloaded
