"""Fills from the matcher are valid openLease calls: a few hundred random orders with random
signed terms (attributes, bandwidth, billing, all-or-none), no revert. An all-or-none bid's fills
open together in one ``openLeaseBatch``, as the contract requires."""

from __future__ import annotations

import random

import pytest

from market.chain.client import BatchMatch
from market.errors import OrderExpired, ProviderNotEligible
from market.matching import (
    Constraint,
    Fill,
    OrderBook,
    Requirements,
    Submission,
    explain,
    run_auction,
    unfit,
    verify_orders,
)
from market.protocol.types import Bid, Billing, Lease, Offer, Signed
from tests.integration.conftest import MIN_STAKE, MarketEnv

pytestmark = pytest.mark.integration

PROVIDERS = (1, 2, 3)
LABS = (4, 5, 6)
MATCHER = 7  # anyone may open a lease from a crossing pair
MODELS = ("H100-80GB", "A100-80GB")
ATTRIBUTES = (
    {"interconnect": "nvlink", "region": "eu-west", "capabilities": ("ecc",)},
    {"interconnect": "pcie", "region": "us-east"},
    {"interconnect": "nvswitch", "region": "eu-central", "capabilities": ("ecc", "mig")},
)
REQUIREMENTS = (
    (),
    (Constraint("region", "in", ("eu-west", "eu-central")),),
    (Constraint("capabilities", "has", "ecc"), Constraint("bandwidth_gbps", "ge", 200)),
    (Constraint("interconnect", "eq", "pcie"),),
)


def _random_orders(env: MarketEnv, rng: random.Random, count: int) -> list[Submission]:
    out: list[Submission] = []
    for _ in range(count):
        model = rng.choice(MODELS)
        if rng.random() < 0.45:
            provider = env.provider(rng.choice(PROVIDERS))
            low = rng.choice((60, 600, 3600))
            signed: Signed[Offer] | Signed[Bid] = provider.offer(
                model,
                gpus=rng.randint(1, 8),
                memory_gib=80,
                price_per_gpu_second=rng.randint(1, 20),
                min_duration=low,
                max_duration=low * rng.choice((1, 2, 10)),
                ttl_s=rng.choice((-100, 10**6, 10**6, 10**6)),  # some already expired
                attributes=rng.choice(ATTRIBUTES),
                bandwidth_gbps=rng.choice((100, 400)),
                billing=rng.choice(((Billing.RENTAL,), (Billing.METERED,), tuple(Billing))),
            )
            out.append(Submission(signed))
        else:
            lab = env.lab(rng.choice(LABS))
            signed = lab.bid(
                model,
                gpus=rng.randint(1, 12),
                max_price_per_gpu_second=rng.randint(1, 20),
                duration=rng.choice((60, 600, 3600, 7200)),
                ttl_s=10**6,
                requirements=Requirements(
                    min_memory_gib=rng.choice((0, 80)),
                    constraints=rng.choice(REQUIREMENTS),
                    all_or_none=rng.random() < 0.2,
                    billing=rng.choice((Billing.RENTAL, Billing.RENTAL, Billing.METERED)),
                ),
            )
            out.append(Submission(signed))
    return out


def _lots(fills: list[Fill]) -> list[list[Fill]]:
    """Fills in the transactions that open them: an all-or-none bid's together, others alone."""
    lots: dict[bytes, list[Fill]] = {}
    for i, fill in enumerate(fills):
        key = fill.bid_hash if fill.bid.message.all_or_none else i.to_bytes(8, "big")
        lots.setdefault(key, []).append(fill)
    return list(lots.values())


def _market(env: MarketEnv) -> tuple[OrderBook, int]:
    for p in PROVIDERS:
        env.provider(p).register(stake=MIN_STAKE * 2, endpoint=f"http://p{p}")
    env.provider(3).client.request_unstake(MIN_STAKE + 1)  # provider 3 falls below the minimum
    for lab in LABS:
        env.lab(lab).fund(2**200)
    reader = env.client()

    def stake_of(address: str) -> int | None:
        info = reader.provider_info(address)
        return info.free_stake if info.registered else None

    return OrderBook(min_stake=reader.min_stake(), stake_of=stake_of), reader.chain_time()


@pytest.mark.parametrize("mode", ["continuous", "auction"])
def test_matcher_fills_open_leases_on_anvil_without_a_revert(env: MarketEnv, mode: str) -> None:
    rng = random.Random(20261125 if mode == "continuous" else 7)
    book, now = _market(env)
    valid, rejected = verify_orders(env.client().domain, _random_orders(env, rng, 300))
    assert rejected == []
    refused = 0
    fills = []
    for order in valid:
        try:
            if mode == "continuous":
                fills.extend(book.submit(order, now))
            else:
                book.add(order, now)
        except (OrderExpired, ProviderNotEligible):
            refused += 1
    if mode == "auction":
        fills = [f for clearing in run_auction(book, now) for f in clearing.fills]
    assert refused > 0
    assert len(fills) > 30, "the random book should trade"

    matcher = env.client(env.devnet.accounts[MATCHER])
    escrow_by_lab: dict[str, int] = {}
    lab_start = {env.lab(i).address: env.lab(i).balance() for i in LABS}
    assert any(len(lot) > 1 for lot in _lots(fills)), "an all-or-none cluster should trade"
    opened: list[tuple[Fill, Lease]] = []
    for lot in _lots(fills):
        assert all(unfit(f.offer.message, f.bid.message) is None for f in lot)
        if len(lot) == 1 and not lot[0].bid.message.all_or_none:
            [fill] = lot
            leases = [matcher.open_lease(fill.offer, fill.bid, fill.gpus)]  # raises on a revert
        else:
            leases = matcher.open_lease_batch([BatchMatch(f.offer, f.bid, f.gpus) for f in lot])
        opened += zip(lot, leases, strict=True)
    for fill, lease in opened:
        book.settle(fill)
        assert lease.billing == fill.bid.message.billing
        assert lease.gpus == fill.gpus
        assert lease.price_per_gpu_second == fill.price_per_gpu_second
        assert lease.escrow == fill.escrow
        escrow_by_lab[lease.lab] = escrow_by_lab.get(lease.lab, 0) + lease.escrow

    # What the book believes filled is what the chain recorded, order by order.
    for order in valid:
        entry = book.get(order.hash)
        on_chain = matcher.order_state(order.signer, order.hash).filled
        if entry is not None:
            assert entry.filled == on_chain
    for lab, spent in escrow_by_lab.items():
        assert env.client().balance_of(lab) == lab_start[lab] - spent

    # In continuous mode whatever still rests does not match, and explain says why. (An auction
    # trades only at its clearing price; crossing leftovers wait for the next period.)
    for model in MODELS:
        for bid in book.bids(model, now):
            result = explain(book, bid.order.signed.message, now, order_hash=bid.hash)
            if mode == "continuous" and not bid.all_or_none:
                assert not result.matchable
            if not result.matchable:
                assert result.reasons
