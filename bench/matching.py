"""The order book and matcher: throughput, explain latency and memory, by resting book size.

python -m bench.matching                      -> bench/results/matching.json (10k and 100k)
python -m bench.matching --sizes 10000,100000,1000000

For each size N, a book of N resting orders (8 GPU models, offers priced above bids so the book
rests uncrossed, mixed durations and sizes) takes 10,000 incoming orders priced across the
spread; each incoming order is matched at once (continuous mode) and its fills are settled as the
chain would. ``matches_per_s`` is incoming orders matched per second, signatures excluded (they
are checked once on entry: see ``bench.verify``); ``baseline_dict_ops_per_s`` is plain dict
insert+lookup in the same run, so figures from noisy machines compare as ratios.
``explain_p99_ms`` is the 99th percentile of :func:`market.matching.explain` over 1,000 random
orders against the same book; ``book_bytes_per_order`` is traced memory per resting order
(the order objects themselves included).
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
import tracemalloc

from eth_utils.address import to_checksum_address

from bench.results_file import write
from market.matching import OrderBook, VerifiedOrder, explain
from market.protocol.eip712 import Domain, order_hash
from market.protocol.types import Bid, Offer, Signed

DOMAIN = Domain(31337, to_checksum_address("0x" + "5f" * 20))
MODELS = ("H100-80GB", "H200-141GB", "A100-80GB", "A100-40GB", "L40S", "RTX4090", "MI300X", "B200")
INCOMING = 10_000
NOW = 1_000_000
SIGNERS = [to_checksum_address(f"0x{i:040x}") for i in range(1, 201)]
FAKE_SIG = b"\x11" * 64 + b"\x1b"


def _order(rng: random.Random, nonce: int, *, resting: bool) -> VerifiedOrder:
    model = rng.choice(MODELS)
    signer = rng.choice(SIGNERS)
    is_offer = rng.random() < 0.5
    if is_offer:
        price = rng.randint(1_001, 2_000) if resting else rng.randint(800, 1_600)
        low = rng.choice((60, 600, 3600))
        message: Offer | Bid = Offer(
            signer, model, rng.randint(1, 8), 80, price, low, low * rng.choice((2, 24)),
            NOW + 10**6, nonce,
        )  # fmt: skip
    else:
        price = rng.randint(1, 1_000) if resting else rng.randint(400, 1_200)
        message = Bid(
            signer, model, rng.randint(1, 8), price, rng.choice((600, 3600, 7200)),
            NOW + 10**6, nonce,
        )  # fmt: skip
    signed: Signed[Offer] | Signed[Bid] = Signed(message, FAKE_SIG)  # type: ignore[arg-type]
    # Signatures are not what this measures; bench.verify does. See the method's docstring.
    return VerifiedOrder.unsafe_from_trusted_store(signed, order_hash(DOMAIN, message))


def _book(size: int, rng: random.Random) -> tuple[OrderBook, list[VerifiedOrder]]:
    book = OrderBook()
    resting = [_order(rng, i, resting=True) for i in range(size)]
    for order in resting:
        book.add(order, NOW)
    return book, resting


def _baseline(n: int = 200_000) -> float:
    d: dict[int, int] = {}
    t0 = time.perf_counter()
    for i in range(n):
        d[i] = i
        _ = d[i // 2]
    return n / (time.perf_counter() - t0)


def measure(size: int, seed: int = 7) -> dict[str, float | int]:
    rng = random.Random(seed)
    book, _ = _book(size, rng)
    incoming = [_order(rng, size + i, resting=False) for i in range(INCOMING)]
    gc.collect()
    fills = 0
    t0 = time.perf_counter()
    for order in incoming:
        for fill in book.submit(order, NOW):
            book.settle(fill)
            fills += 1
    match_s = time.perf_counter() - t0

    probes = [_order(rng, 10**9 + i, resting=False).signed.message for i in range(1_000)]
    latencies = _explain_latencies(book, probes)
    return {
        "resting": size,
        "incoming": INCOMING,
        "fills": fills,
        "matches_per_s": round(INCOMING / match_s, 1),
        "fills_per_s": round(fills / match_s, 1),
        "explain_p50_ms": round(statistics.median(latencies) * 1e3, 3),
        "explain_p99_ms": round(latencies[int(0.99 * len(latencies)) - 1] * 1e3, 3),
    }


def _explain_latencies(book: OrderBook, probes: list[Offer | Bid]) -> list[float]:
    latencies = []
    for probe in probes:
        t0 = time.perf_counter()
        explain(book, probe, NOW)
        latencies.append(time.perf_counter() - t0)
    return sorted(latencies)


def bytes_per_order(size: int = 20_000) -> float:
    rng = random.Random(3)
    orders = [_order(rng, i, resting=True) for i in range(size)]
    del orders
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    book, resting = _book(size, random.Random(3))
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(book) == len(resting)
    return round((after - before) / size, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    sizes = [int(s) for s in parser.parse_args().sizes.split(",")]
    baseline = _baseline()
    figures: dict[str, float | int | str] = {
        "baseline_dict_ops_per_s": round(baseline, 1),
        "book_bytes_per_order": bytes_per_order(),
    }
    for size in sizes:
        result = measure(size)
        tag = f"{size // 1000}k" if size < 1_000_000 else f"{size // 1_000_000}m"
        for key, value in result.items():
            figures[f"{key}_{tag}"] = value
        figures[f"matches_vs_dict_ops_{tag}"] = round(float(result["matches_per_s"]) / baseline, 4)
        if size == 100_000:  # the headline figures the issue names
            for key in ("matches_per_s", "explain_p99_ms", "fills_per_s"):
                figures[key] = result[key]
    path = write("matching", figures)
    for key, value in figures.items():
        print(f"{key:32} {value}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
