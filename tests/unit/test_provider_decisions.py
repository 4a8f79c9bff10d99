"""Why the provider did not offer or match: events with the matcher's reason codes and numbers."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

import nodes.provider
from market.matching import OrderBook, ReasonCode, explain
from nodes.logs import get_logger, render_fields
from nodes.provider import (
    POLICY_DECLINED,
    STAKE_LOCK_UNCOVERED,
    FixedPrice,
    GpuGroup,
    Inventory,
    OfferPlan,
    explanation_fields,
    log_no_match,
    plan_offers,
)
from tests.unit.order_factory import NOW, Orders

pytestmark = pytest.mark.unit

H100 = GpuGroup("H100-80GB", 8, 80, tuple(range(8)))
A100 = GpuGroup("A100-40GB", 4, 40, (8, 9, 10, 11))
INVENTORY = Inventory((H100, A100), "declared")


@pytest.fixture
def events() -> Iterator[list[tuple[str, dict[str, object]]]]:
    """(event, fields) of every record under gpumarket.test, however logging is configured."""
    seen: list[tuple[str, dict[str, object]]] = []
    handler = logging.Handler()
    handler.emit = lambda r: seen.append((r.event, r.fields))  # type: ignore[attr-defined,method-assign]
    logger = logging.getLogger("gpumarket.test")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield seen
    logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)


def test_offer_that_crosses_nothing_logs_no_match_with_the_matchers_numbers(
    events: list[tuple[str, dict[str, object]]],
) -> None:
    orders, book = Orders(), OrderBook()
    book.submit(orders.bid(price=4, gpus=4), NOW)
    offer = orders.offer(price=6, gpus=8)
    explanation = explain(book, offer.signed.message, NOW)
    log_no_match(get_logger("gpumarket.test", provider="p0"), offer.hash, explanation)
    assert events == [
        (
            "no_match",
            {
                "provider": "p0",
                "order": offer.hash,
                "matchable": False,
                "available_gpus": 0,
                "reasons": "price_not_crossed",
                "price_not_crossed.price": 6,
                "price_not_crossed.best_bid": 4,
                "changes": "price_per_gpu_second:6->4",
            },
        )
    ]


def test_matchable_order_logs_nothing(events: list[tuple[str, dict[str, object]]]) -> None:
    orders, book = Orders(), OrderBook()
    book.submit(orders.bid(price=8, gpus=4), NOW)
    offer = orders.offer(price=6, gpus=8)
    log_no_match(get_logger("gpumarket.test"), offer.hash, explain(book, offer.signed.message, NOW))
    assert events == []


def test_every_reason_of_an_explanation_becomes_fields_prefixed_by_its_code() -> None:
    orders, book = Orders(), OrderBook()
    book.submit(orders.bid(price=4, gpus=4, duration=3600), NOW)
    offer = orders.offer(price=6, gpus=8, max_duration=1800)
    fields = explanation_fields(explain(book, offer.signed.message, NOW))
    assert fields["reasons"] == "duration_out_of_range,price_not_crossed"
    assert fields["duration_out_of_range.shortest_bid"] == 3600
    assert fields["price_not_crossed.best_bid"] == 4
    assert "changes" not in fields
    assert "reasons=duration_out_of_range,price_not_crossed" in render_fields(fields)


def test_groups_left_out_are_logged_with_the_reason_and_the_rest_planned(
    events: list[tuple[str, dict[str, object]]],
) -> None:
    policy = FixedPrice(prices={"H100-80GB": 5})  # no price for A100s
    plans, skips = plan_offers(
        INVENTORY,
        {"H100-80GB": 3},
        policy,
        NOW,
        free_stake=500,
        min_stake=100,
        log=get_logger("gpumarket.test"),
    )
    assert plans == [OfferPlan("H100-80GB", 5, 80, 5, gpus_free=5)]
    assert [(s.model, s.reason) for s in skips] == [("A100-40GB", POLICY_DECLINED)]
    assert events == [
        (
            "offer_skipped",
            {"model": "A100-40GB", "reason": "policy_declined", "gpus_free": 4, "gpus_total": 4},
        )
    ]


def test_plans_carry_the_groups_signed_terms() -> None:
    nvlink = GpuGroup("H100-80GB", 2, 80, (0, 1), bandwidth_gbps=400, features=0b10)
    plans, _ = plan_offers(
        Inventory((nvlink,), "declared"), {}, FixedPrice(3), NOW, free_stake=500, min_stake=100
    )
    assert plans == [
        OfferPlan("H100-80GB", 2, 80, 3, bandwidth_gbps=400, features=0b10, gpus_free=2)
    ]


def test_fully_leased_group_is_skipped_as_not_enough_gpus(
    events: list[tuple[str, dict[str, object]]],
) -> None:
    plans, _ = plan_offers(
        INVENTORY,
        {"H100-80GB": 8, "A100-40GB": 1},
        FixedPrice(3),
        NOW,
        free_stake=500,
        min_stake=100,
        log=get_logger("gpumarket.test"),
    )
    assert plans == [OfferPlan("A100-40GB", 3, 40, 3, gpus_free=3)]
    assert events == [
        (
            "offer_skipped",
            {
                "model": "H100-80GB",
                "reason": ReasonCode.NOT_ENOUGH_GPUS.value,
                "gpus_free": 0,
                "gpus_total": 8,
            },
        )
    ]


@pytest.mark.parametrize(("free_stake", "logged"), [(None, -1), (99, 99)])
def test_provider_unregistered_or_under_staked_offers_nothing_and_says_so(
    events: list[tuple[str, dict[str, object]]], free_stake: int | None, logged: int
) -> None:
    plans, skips = plan_offers(
        INVENTORY,
        {},
        FixedPrice(3),
        NOW,
        free_stake=free_stake,
        min_stake=100,
        log=get_logger("gpumarket.test"),
    )
    assert plans == []
    assert {s.reason for s in skips} == {ReasonCode.PROVIDER_NOT_ELIGIBLE}
    assert events[0][1] == {
        "model": "H100-80GB",
        "reason": "provider_not_eligible",
        "free_stake": logged,
        "min_stake": 100,
    }


def test_provider_package_exports_resolve() -> None:
    for name in nodes.provider.__all__:
        assert hasattr(nodes.provider, name), name
    assert sorted(nodes.provider.__all__) == sorted(set(nodes.provider.__all__))


def test_offers_sell_only_the_gpus_the_free_stake_can_lock_for(
    events: list[tuple[str, dict[str, object]]],
) -> None:
    # One GPU at 3 per second for 1000 s locks 3000 at a ratio of one escrow (10_000 bps): 10,000
    # of free stake backs 3 H100s of the 8, and then nothing is left for an A100.
    plans, skips = plan_offers(
        INVENTORY,
        {},
        FixedPrice(3),
        NOW,
        free_stake=10_000,
        min_stake=100,
        stake_ratio_bps=10_000,
        max_duration=1000,
        log=get_logger("gpumarket.test"),
    )
    assert plans == [OfferPlan("H100-80GB", 3, 80, 3, gpus_free=8, lock_per_gpu=3000)]
    assert [(s.model, s.reason) for s in skips] == [("A100-40GB", STAKE_LOCK_UNCOVERED)]
    assert events == [
        (
            "offer_skipped",
            {
                "model": "A100-40GB",
                "reason": "stake_lock_uncovered",
                "free_stake": 1000,
                "lock_per_gpu": 3000,
                "gpus_free": 4,
                "gpus_total": 4,
            },
        )
    ]
