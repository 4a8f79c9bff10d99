"""Issue 14's outside probe of ``/v1/gossip``, replayed against a relay with default limits.

python -m bench.gossip_probe      -> bench/results/gossip_probe.json

An anvil devnet with the contracts deployed and one lab funded and approved; a relay started
in-process (default ``Limits``). Bids are signed before timing. Then, as the probe did, over
loopback HTTP from one peer address: (1) the funded lab's 5,000 bids gossiped in batches of 1,000;
(2) 40 fresh keys without tokens gossip 1,000 bids each. Figures: bids accepted and wall time of
each phase, the growth of this process's resident memory over phase 2 (the relay runs in it), the
relay's database size after it stopped. Before issue 14's fix the relay accepted all 5,000 and
all 40,000 (about +44 MB resident, 32 MB of database on the project's machines).
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.results_file import write
from market.chain.client import MarketClient
from market.chain.deploy import MarketParams, deploy
from market.chain.devnet import Devnet
from market.matching import Submission
from market.protocol.eip712 import Domain
from market.protocol.signing import SigningKey
from market.protocol.types import Bid
from market.roles import Lab
from nodes.relay import Relay, RelayConfig
from nodes.wire import ErrorResponse, Gossip, OrdersAccepted, OrderStatus, decode, encode

BATCH = 1000
ONE_SIGNER_BIDS = 5000
FRESH_KEYS = 40


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _bids(domain: Domain, key: SigningKey, count: int, expiry: int) -> list[Submission]:
    return [
        Submission(
            key.sign(
                domain,
                Bid(
                    lab=key.address,
                    gpu_model="H100-80GB",
                    gpu_count=1,
                    max_price_per_gpu_second=5,
                    duration=3600,
                    expiry=expiry,
                    nonce=n,
                ),
            )
        )
        for n in range(count)
    ]


async def _gossip(url: str, orders: list[Submission]) -> tuple[int, set[str]]:
    """Gossip ``orders`` in batches; how many were accepted, and every answer's codes."""
    accepted, codes = 0, set()
    async with aiohttp.ClientSession() as session:
        for start in range(0, len(orders), BATCH):
            frame = encode(Gossip("probe", "probe", 1, tuple(orders[start : start + BATCH])))
            async with session.post(url + "/v1/gossip", data=frame) as response:
                answer = decode(await response.read())
            if isinstance(answer, OrdersAccepted):
                accepted += sum(r.status is OrderStatus.ACCEPTED for r in answer.results)
                codes |= {r.status.value for r in answer.results}
            elif isinstance(answer, ErrorResponse):
                codes.add(answer.code.value)
    return accepted, codes


async def _probe(dev: Devnet, folder: Path) -> dict[str, float | int | str]:
    w3 = dev.web3()
    contracts = deploy(w3, dev.accounts[0], rpc_url=dev.rpc_url, params=MarketParams())
    acct = dev.accounts[2]
    MarketClient(w3, contracts, dev.accounts[0]).mint_test_usd(acct.address, 10**12)
    lab = SigningKey(bytes(acct.key))
    Lab(MarketClient(w3, contracts, acct), lab).fund(2**200)
    reader = MarketClient(w3, contracts)
    domain, expiry = reader.domain, reader.chain_time() + 3600
    one = _bids(domain, lab, ONE_SIGNER_BIDS, expiry)
    fresh = [
        b
        for _ in range(FRESH_KEYS)
        for b in _bids(domain, SigningKey(secrets.token_bytes(32)), BATCH, expiry)
    ]
    relay = Relay(RelayConfig(db_path=folder / "relay.sqlite"), contracts.deployment)
    await relay.start()
    try:
        t0 = time.perf_counter()
        one_accepted, one_codes = await _gossip(relay.url, one)
        one_s = time.perf_counter() - t0
        rss = _rss_mib()
        t0 = time.perf_counter()
        fresh_accepted, fresh_codes = await _gossip(relay.url, fresh)
        fresh_s = time.perf_counter() - t0
        rss_growth = _rss_mib() - rss
    finally:
        await relay.stop()
    return {
        "one_signer_bids_sent": ONE_SIGNER_BIDS,
        "one_signer_bids_accepted": one_accepted,
        "one_signer_answers": ",".join(sorted(one_codes)),
        "one_signer_s": round(one_s, 2),
        "fresh_keys_bids_sent": len(fresh),
        "fresh_keys_bids_accepted": fresh_accepted,
        "fresh_keys_answers": ",".join(sorted(fresh_codes)),
        "fresh_keys_s": round(fresh_s, 2),
        "fresh_keys_rss_growth_mib": round(rss_growth, 1),
    }


def main() -> None:
    with Devnet.start(accounts=4) as dev, tempfile.TemporaryDirectory() as tmp:
        figures = asyncio.run(_probe(dev, Path(tmp)))
        db = sum(p.stat().st_size for p in Path(tmp).glob("relay.sqlite*"))
        figures["relay_db_mib_after"] = round(db / 2**20, 1)
    for name, value in figures.items():
        print(f"{name:30} {value}")
    print(f"wrote {write('gossip_probe', figures)}")


if __name__ == "__main__":
    main()
