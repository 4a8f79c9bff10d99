"""Why the provider did not offer, or an offer did not match: log events with reason codes.

    plans = plan_offers(inventory, leased={"H100-80GB": 2}, policy=policy, now=now,
                        free_stake=info.free_stake, min_stake=min_stake, log=log)
    # offer_skipped model=A100-80GB reason=not_enough_gpus gpus_free=0 gpus_total=4
    log_no_match(log, offer_hash, explain(book, offer, now, order_hash=offer_hash))
    # no_match order=0x.. reasons=price_not_crossed price_not_crossed.best_bid=4 ...

``log_no_match`` is every daemon's (:mod:`nodes.daemon.explain`; the lab logs its bids' the same
way), named here too for the provider's readers. The reasons are the matcher's
:class:`~market.matching.explain.ReasonCode` values, so the provider's log, a lab's dry run and
a relay's ``explain`` answer name the same things the same way. One reason is the provider's
own: :data:`POLICY_DECLINED`, when its pricing policy returns no price. Each event carries the
numbers behind its reason as fields, for tests and dashboards.

Every lease locks ``escrow * stake_ratio_bps / 10_000`` of the provider's free stake until its
proof window ends, and the market refuses a lease whose lock the free stake cannot cover. So an
offer never sells more GPUs than the free stake can back at its longest duration: the agent
offers fewer (it logs ``offer_reduced``) or none (``offer_skipped
reason=stake_lock_uncovered``), with the numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from market.matching.explain import ReasonCode
from nodes.daemon.explain import explanation_fields, log_no_match
from nodes.logs import EventLogger
from nodes.provider.inventory import Inventory
from nodes.provider.pricing import PricingPolicy

POLICY_DECLINED: Final = "policy_declined"
STAKE_LOCK_UNCOVERED: Final = "stake_lock_uncovered"


@dataclass(frozen=True, slots=True)
class OfferPlan:
    """An offer worth signing now: ``gpus`` free GPUs of ``model`` at ``price`` per GPU-second,
    with the group's hardware terms (memory, bandwidth, attribute bits) to sign."""

    model: str
    gpus: int
    memory_gib: int
    price: int
    bandwidth_gbps: int = 0
    features: int = 0
    gpus_free: int = 0  # free GPUs of the group: more than ``gpus`` when the stake backs fewer
    lock_per_gpu: int = 0  # the stake one GPU's longest lease locks


@dataclass(frozen=True, slots=True)
class Skip:
    model: str
    reason: ReasonCode | str
    values: Mapping[str, int | str]


def log_skip(log: EventLogger, skip: Skip) -> None:
    log.info("offer_skipped", model=skip.model, reason=str(skip.reason), **skip.values)


def plan_offers(
    inventory: Inventory,
    leased: Mapping[str, int],
    policy: PricingPolicy,
    now: int,
    *,
    free_stake: int | None,
    min_stake: int,
    stake_ratio_bps: int = 0,
    max_duration: int = 0,
    log: EventLogger | None = None,
) -> tuple[list[OfferPlan], list[Skip]]:
    """What to offer per GPU group now, and why each group left out is left out.

    ``leased`` counts the GPUs of each model held by open leases; ``free_stake`` is None for a
    provider not registered. The groups share the free stake: each offer sells at most the GPUs
    whose stake locks (``stake_ratio_bps`` of price x ``max_duration`` each) what is left covers.
    Each skip is logged as ``offer_skipped`` when ``log`` is given.
    """
    plans: list[OfferPlan] = []
    skips: list[Skip] = []
    unlocked = free_stake or 0
    for group in inventory.groups:
        free = max(0, group.count - leased.get(group.model, 0))
        counts: dict[str, int | str] = {"gpus_free": free, "gpus_total": group.count}
        if free_stake is None or free_stake < min_stake:
            stake = -1 if free_stake is None else free_stake
            values: dict[str, int | str] = {"free_stake": stake, "min_stake": min_stake}
            skips.append(Skip(group.model, ReasonCode.PROVIDER_NOT_ELIGIBLE, values))
        elif free == 0:
            skips.append(Skip(group.model, ReasonCode.NOT_ENOUGH_GPUS, counts))
        elif (price := policy.price(group.model, free, group.count, now)) is None:
            skips.append(Skip(group.model, POLICY_DECLINED, counts))
        elif (backed := _backed_gpus(unlocked, price, max_duration, stake_ratio_bps, free)) == 0:
            lock = _lock_per_gpu(price, max_duration, stake_ratio_bps)
            values = {"free_stake": unlocked, "lock_per_gpu": lock, **counts}
            skips.append(Skip(group.model, STAKE_LOCK_UNCOVERED, values))
        else:
            lock = _lock_per_gpu(price, max_duration, stake_ratio_bps)
            unlocked -= backed * lock
            plans.append(
                OfferPlan(
                    group.model,
                    backed,
                    group.memory_gib,
                    price,
                    group.bandwidth_gbps,
                    group.features,
                    gpus_free=free,
                    lock_per_gpu=lock,
                )
            )
    if log is not None:
        for skip in skips:
            log_skip(log, skip)
    return plans, skips


def _lock_per_gpu(price: int, max_duration: int, stake_ratio_bps: int) -> int:
    """The stake one GPU of a lease at ``price`` for ``max_duration`` locks, rounded up."""
    return -(-price * max_duration * stake_ratio_bps // 10_000)


def _backed_gpus(unlocked: int, price: int, max_duration: int, ratio: int, free: int) -> int:
    """How many of ``free`` GPUs the ``unlocked`` stake can back at their longest lease."""
    lock = _lock_per_gpu(price, max_duration, ratio)
    return free if lock == 0 else min(free, unlocked // lock)


__all__ = [
    "POLICY_DECLINED",
    "STAKE_LOCK_UNCOVERED",
    "OfferPlan",
    "Skip",
    "explanation_fields",
    "log_no_match",
    "log_skip",
    "plan_offers",
]
