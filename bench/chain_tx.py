"""CPU of the relay matcher's chain work: one ``openLeaseBatch`` transaction, and its reads.

python -m bench.chain_tx                 -> bench/results/chain_tx.json
python -m bench.chain_tx --txs 100 --matches 2 --out /tmp/chain_tx.json

An anvil devnet with the market deployed as ``bench.relay`` deploys it (16 providers registered,
16 labs funded); a matcher account sends ``--txs`` transactions of ``MarketClient.open_lease_batch``
with ``--matches`` matches each (a fresh offer and bid per match, signed before timing), sent and
waited for one after the other as the relay's matcher does. Figures are CPU time of this process
(``time.process_time``: every thread) per call, in microseconds: ``open_lease_batch_cpu_us``
(calldata, estimate, fees, signing, send, receipt, the ``LeaseOpened`` events decoded),
``head_cpu_us`` and ``provider_info_cpu_us`` (the chain watcher's and the stake cache's reads).

The baseline in the same run is ``make_request_cpu_us``: one bare ``eth_blockNumber`` through the
web3 provider's ``make_request`` (no method stack, no middleware: ``requests`` and the JSON), so the
``*_in_make_requests`` ratios say how many such requests each call costs, whatever the machine's
speed. The bench uses only what main had before the lean path, so running this file against
another tree (``PYTHONPATH=/other/tree python bench/chain_tx.py --out ...``) measures that tree.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from bench.relay import LABS, PROVIDERS, open_market
from bench.results_file import write
from market.chain.client import BatchMatch, MarketClient
from market.chain.devnet import Devnet
from market.protocol.types import Bid, Offer

MODEL = "H100-80GB"
ASK = 1_000
"""Price per GPU-second of every offer; bids offer twice that, so each pair crosses."""
REPEATS = 5
"""Each figure is the median of this many timed passes (a shared machine is noisy)."""


def _cpu_us(fn: Callable[[], object], calls: int) -> float:
    """Median over :data:`REPEATS` passes of the CPU time per call of ``fn``, in microseconds."""
    fn()  # warm: connections open, caches filled
    passes = []
    for _ in range(REPEATS):
        start = time.process_time()
        for _ in range(calls):
            fn()
        passes.append((time.process_time() - start) / calls * 1e6)
    return statistics.median(passes)


def run(txs: int, matches: int) -> dict[str, float | int | str]:
    with Devnet.start(accounts=2 + PROVIDERS + LABS) as dev:
        market = open_market(dev)
        w3 = dev.web3()
        matcher = MarketClient(w3, market.contracts, dev.accounts[1])
        reader = MarketClient(w3, market.contracts)
        expiry = market.chain_time + 86_400
        batches: list[list[BatchMatch]] = []
        nonce = 0
        for _ in range(txs * REPEATS + 1):
            batch = []
            for m in range(matches):
                nonce += 1
                provider = market.providers[(nonce + m) % PROVIDERS]
                lab = market.labs[(nonce + m) % LABS]
                offer = Offer(provider.address, MODEL, 8, 80, ASK, 60, 86_400, expiry, nonce)
                bid = Bid(lab.address, MODEL, 1, 2 * ASK, 3600, expiry, nonce)
                batch.append(
                    BatchMatch(provider.sign(market.domain, offer), lab.sign(market.domain, bid), 1)
                )
            batches.append(batch)
        pending = iter(batches)
        opened: list[int] = []

        def open_batch() -> None:
            opened.append(len(matcher.open_lease_batch(next(pending))))

        provider_address = market.providers[0].address
        figures: dict[str, float | int | str] = {
            "txs": txs,
            "matches_per_tx": matches,
            "open_lease_batch_cpu_us": _cpu_us(open_batch, txs),
            "head_cpu_us": _cpu_us(reader.head, txs),
            "provider_info_cpu_us": _cpu_us(lambda: reader.provider_info(provider_address), txs),
            "make_request_cpu_us": _cpu_us(lambda: dev.rpc("eth_blockNumber"), txs),
        }
        if opened != [matches] * len(opened):
            raise SystemExit(f"a batch opened other than {matches} leases: {set(opened)}")
    base = float(figures["make_request_cpu_us"])
    for name in ("open_lease_batch", "head", "provider_info"):
        figures[f"{name}_in_make_requests"] = round(float(figures[f"{name}_cpu_us"]) / base, 2)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--txs", type=int, default=100, help="transactions per timed pass")
    parser.add_argument("--matches", type=int, default=2, help="matches per transaction")
    parser.add_argument("--out", type=Path, help="write here instead of bench/results/")
    args = parser.parse_args()
    figures = run(args.txs, args.matches)
    for name, value in figures.items():
        print(f"{name:32} {value}")
    if args.out is None:
        print(write("chain_tx", figures))
    else:
        args.out.write_text(repr(figures) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
