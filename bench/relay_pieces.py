"""The relay's per-order pieces alone, in this process: CPU microseconds per order.

python -m bench.relay_pieces     (prints; writes nothing)

One ``SubmitOrders`` frame of 500 signed orders (offers and bids in turn, 32 signers), then the
best of 7 ``time.process_time`` runs of: decoding it as the relay does (``decode``); decoding it
and encoding each order again as its own one-order frame, as the relay's store does
(``decode_and_store``); ``order_hash`` of each order (``order_hash``). Run it alternately on two
trees (``PYTHONPATH``) to compare them under the same load; ``python -m bench.relay`` gives the
end-to-end figures.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from market.matching import Submission
from market.protocol.eip712 import Domain, order_hash
from market.protocol.signing import SigningKey
from market.protocol.types import Bid, Offer, Signed
from nodes.wire import SubmitOrders, decode_as, encode

ORDERS = 500
REPEAT = 7


def _frame() -> tuple[Domain, bytes]:
    domain = Domain(31337, "0x" + "11" * 20)
    keys = [SigningKey(bytes([i + 1]) * 32) for i in range(32)]
    rng = random.Random(1)
    orders: list[Signed[Offer] | Signed[Bid]] = []
    for i in range(ORDERS):
        key = keys[i % len(keys)]
        if i % 2 == 0:
            offer = Offer(
                key.address, "H100", rng.randint(1, 8), 80, rng.randint(1_001, 2_000), 60,
                86_400, 2**40, i + 1,
            )  # fmt: skip
            orders.append(key.sign(domain, offer))
        else:
            bid = Bid(
                key.address, "H100", rng.randint(1, 4), rng.randint(1, 1_000), 3600, 2**40, i + 1
            )
            orders.append(key.sign(domain, bid))
    return domain, encode(SubmitOrders(tuple(Submission(o) for o in orders)))


def _us_per_order(fn: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(REPEAT):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return round(best / ORDERS * 1e6, 1)


def main() -> None:
    domain, frame = _frame()
    message = decode_as(frame, SubmitOrders)

    def decode() -> SubmitOrders:
        return decode_as(frame, SubmitOrders)

    def decode_and_store() -> list[bytes]:
        return [encode(SubmitOrders((sub,))) for sub in decode().orders]

    def hashes() -> list[bytes]:
        return [order_hash(domain, sub.signed.message) for sub in message.orders]

    for name, fn in (
        ("decode", decode),
        ("decode_and_store", decode_and_store),
        ("order_hash", hashes),
    ):
        print(f"{name + '_us_per_order':32} {_us_per_order(fn)}")


if __name__ == "__main__":
    main()
