"""Signing and bulk verification of orders: the fast path against eth-account, same process.

python -m bench.verify      -> bench/results/verify.json

``verify_per_s`` is :func:`market.matching.verify_orders` over a batch (EIP-712 hashing with
precomputed type hashes, coincurve recovery, malleability check); the baseline is eth-account's
``Account.recover_message(encode_typed_data(full_message=...))`` on the same orders, which is what
a library user would otherwise write. ``verify_ratio_vs_eth_account`` is their ratio (goal >= 12)
with the batch spread over one thread per CPU (libsecp256k1 releases the GIL);
``verify_ratio_one_thread_vs_eth_account`` is the same on one thread.
"""

from __future__ import annotations

import os
import random
import time

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.address import to_checksum_address

from bench.results_file import write
from market.matching import verify_orders
from market.protocol.eip712 import Domain, typed_data
from market.protocol.signing import SigningKey, sign_with_eth_account
from market.protocol.types import Bid, Offer, Signed

DOMAIN = Domain(31337, to_checksum_address("0x" + "5f" * 20))
BATCH = 5_000
BASELINE = 500


def make_orders(count: int, seed: int = 1) -> list[Offer | Bid]:
    rng = random.Random(seed)
    keys = [SigningKey(bytes([i + 1]) * 32) for i in range(16)]
    orders: list[Offer | Bid] = []
    for i in range(count):
        key = keys[i % len(keys)]
        if i % 2:
            orders.append(
                Offer(key.address, "H100-80GB", rng.randint(1, 8), 80, rng.randint(1, 10**6),
                      60, 86_400, 2_000_000_000, i)
            )  # fmt: skip
        else:
            orders.append(
                Bid(key.address, "H100-80GB", rng.randint(1, 8), rng.randint(1, 10**6),
                    3600, 2_000_000_000, i)
            )  # fmt: skip
    return orders


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1)


def main() -> None:
    keys = {k.address: k for k in (SigningKey(bytes([i + 1]) * 32) for i in range(16))}
    orders = make_orders(BATCH)

    def signer(o: Offer | Bid) -> SigningKey:
        return keys[o.provider if isinstance(o, Offer) else o.lab]

    t0 = time.perf_counter()
    signed: list[Signed[Offer] | Signed[Bid]] = [signer(o).sign(DOMAIN, o) for o in orders]
    sign_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    valid, rejected = verify_orders(DOMAIN, signed)
    verify_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    verify_orders(DOMAIN, signed, threads=1)
    one_thread_s = time.perf_counter() - t0
    assert len(valid) == BATCH
    assert not rejected

    sample = signed[:BASELINE]
    t0 = time.perf_counter()
    for s in sample:
        encoded = encode_typed_data(full_message=typed_data(DOMAIN, s.message))
        recovered = Account.recover_message(encoded, signature=s.signature)
        assert recovered == signer(s.message).address
    baseline_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    for o in orders[:BASELINE]:
        sign_with_eth_account(DOMAIN, o, signer(o)._key.secret)
    baseline_sign_s = time.perf_counter() - t0

    verify_per_s = BATCH / verify_s
    baseline_per_s = BASELINE / baseline_s
    figures: dict[str, float | int | str] = {
        "orders": BATCH,
        "sign_per_s": _rate(BATCH, sign_s),
        "verify_per_s": round(verify_per_s, 1),
        "eth_account_verify_per_s": round(baseline_per_s, 1),
        "verify_ratio_vs_eth_account": round(verify_per_s / baseline_per_s, 2),
        "verify_threads": min(os.cpu_count() or 1, 8),
        "verify_per_s_one_thread": _rate(BATCH, one_thread_s),
        "verify_ratio_one_thread_vs_eth_account": round((BATCH / one_thread_s) / baseline_per_s, 2),
        "eth_account_sign_per_s": _rate(BASELINE, baseline_sign_s),
        "sign_ratio_vs_eth_account": round((BATCH / sign_s) / (BASELINE / baseline_sign_s), 2),
    }
    path = write("verify", figures)
    for key, value in figures.items():
        print(f"{key:32} {value}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
