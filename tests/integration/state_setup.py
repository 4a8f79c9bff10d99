"""A registered provider, a lab and an open lease with a voucher: the ground the durable-state tests
crash and restart on."""

from __future__ import annotations

from dataclasses import dataclass

from market.protocol.types import Lease, Signed, Voucher
from market.roles import Lab, Provider
from tests.integration.conftest import MIN_STAKE, MarketEnv

PROVIDER, LAB, THIRD = 1, 2, 3
PRICE, GPUS, DURATION = 7, 2, 1000
PAID = 5_000  # what the voucher owes: below the escrow of 7 x 2 x 1000


@dataclass
class Leased:
    provider: Provider
    lab: Lab
    lease: Lease
    voucher: Signed[Voucher]


def open_lease(env: MarketEnv) -> Leased:
    provider, lab = env.provider(PROVIDER), env.lab(LAB)
    provider.register(stake=MIN_STAKE, endpoint="http://127.0.0.1:7001")
    offer = provider.offer(
        "H100-80GB",
        gpus=GPUS,
        memory_gib=80,
        price_per_gpu_second=PRICE,
        min_duration=1,
        max_duration=DURATION,
    )
    bid = lab.bid("H100-80GB", gpus=GPUS, max_price_per_gpu_second=PRICE, duration=DURATION)
    lease = lab.open(offer, bid, GPUS)
    return Leased(provider, lab, lease, lab.pay(lease, PAID))


def claims_of(env: MarketEnv, lease: Lease) -> list[int]:
    """The amount of every Claimed event of ``lease`` since the deployment."""
    events = env.client().events()
    return [
        int(e.args["amount"])
        for e in events
        if e.name == "Claimed" and bytes(e.args["lease_id"]) == lease.id
    ]
