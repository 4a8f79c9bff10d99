"""market.pricing: the recorded format, the replay's invariants over generated markets, and the
quote's figures."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from market.errors import InvalidArgument
from market.pricing import (
    Ask,
    BidEntry,
    BookSample,
    Hardware,
    Header,
    LeaseSample,
    Recording,
    TokenInfo,
    demands,
    nearest_rank,
    read_recording,
    replay,
    suggest,
)

pytestmark = pytest.mark.unit

MODEL = "H100-80GB"
HEADER = Header(version=1, token=TokenInfo("tUSD", 6), source="test")
H100 = Hardware(MODEL, gpus=8, memory_gib=80)


class Fixed:
    def __init__(self, price: float | None) -> None:
        self.value = price

    def price(self, model: str, gpus_free: int, gpus_total: int, now: int) -> float | None:
        return self.value


prices = st.integers(2, 10_000)
ids = st.text("0123456789abcdef", min_size=1, max_size=3).map(lambda s: "0x" + s)
asks = st.builds(Ask, id=ids, price=prices, gpus=st.integers(1, 16), memory_gib=st.integers(0, 160))
bids = st.builds(
    BidEntry,
    id=ids,
    price=prices,
    gpus=st.integers(1, 16),
    duration=st.integers(1, 7200),
    min_memory_gib=st.integers(0, 160),
)
models = st.sampled_from([MODEL, "A100-40GB"])


@st.composite
def recordings(draw: st.DrawFn) -> Recording:
    events: list[BookSample | LeaseSample] = []
    time = draw(st.integers(0, 10**9))
    for _ in range(draw(st.integers(0, 25))):
        time += draw(st.integers(0, 3600))
        if draw(st.booleans()):
            events.append(
                BookSample(
                    time=time,
                    model=draw(models),
                    asks=tuple(draw(st.lists(asks, max_size=4))),
                    bids=tuple(draw(st.lists(bids, max_size=4))),
                )
            )
        else:
            events.append(
                LeaseSample(
                    time=time,
                    model=draw(models),
                    memory_gib=draw(st.integers(0, 160)),
                    gpus=draw(st.integers(1, 16)),
                    price=draw(prices),
                    duration=draw(st.integers(1, 7200)),
                    bid=draw(st.one_of(st.just(""), ids)),
                )
            )
    return Recording(HEADER, tuple(events))


hardware = st.builds(
    Hardware, model=models, gpus=st.integers(1, 16), memory_gib=st.integers(0, 160)
)


@given(recording=recordings(), hw=hardware, price=st.one_of(st.none(), st.integers(1, 20_000)))
def test_earnings_are_never_negative_and_the_match_rate_is_a_fraction(
    recording: Recording, hw: Hardware, price: int | None
) -> None:
    result = replay(recording, Fixed(price), hw)
    assert result.earned >= 0
    assert 0.0 <= result.match_rate <= 1.0
    assert result.matched + result.priced_out + result.capacity_misses == result.opportunities


@given(recording=recordings(), hw=hardware, never=st.sampled_from([None, math.inf]))
def test_a_policy_pricing_at_infinity_never_matches(
    recording: Recording, hw: Hardware, never: float | None
) -> None:
    result = replay(recording, Fixed(never), hw)
    assert (result.matched, result.earned) == (0, 0)


@given(recording=recordings(), hw=hardware)
def test_a_policy_undercutting_every_bid_matches_whenever_capacity_exists(
    recording: Recording, hw: Hardware
) -> None:
    result = replay(recording, Fixed(1), hw)  # every recorded price is at least 2
    assert result.priced_out == 0
    assert result.matched + result.capacity_misses == result.opportunities
    assert result.earned == result.gpu_seconds  # one base unit per GPU-second


@given(recording=recordings(), hw=hardware, low=prices, high=prices)
def test_a_dearer_fixed_price_never_matches_more_often_on_an_idle_provider(
    recording: Recording, hw: Hardware, low: int, high: int
) -> None:
    big = Hardware(hw.model, 10**6, hw.memory_gib)  # capacity never binds
    cheap, dear = sorted((low, high))
    assert (
        replay(recording, Fixed(cheap), big).matched >= replay(recording, Fixed(dear), big).matched
    )


def test_a_bid_seen_resting_then_filled_is_one_opportunity() -> None:
    bid = BidEntry("0xb1", price=800, gpus=2, duration=600)
    recording = Recording(
        HEADER,
        (
            BookSample(time=10, model=MODEL, asks=(Ask("0xa1", 750, 8, 80),), bids=(bid,)),
            BookSample(time=20, model=MODEL, bids=(bid,)),
            LeaseSample(time=30, model=MODEL, memory_gib=80, gpus=2, price=750, duration=600,
                        bid="0xb1"),
            LeaseSample(time=40, model=MODEL, memory_gib=80, gpus=4, price=700, duration=100),
        ),
    )  # fmt: skip
    assert len(demands(recording, H100)) == 2
    under = replay(recording, Fixed(699), H100)
    assert (under.matched, under.earned) == (2, 699 * (2 * 600 + 4 * 100))
    tie = replay(recording, Fixed(750), H100)  # a tie goes to the ask that was there
    assert (tie.matched, tie.priced_out) == (0, 2)
    between = replay(recording, Fixed(720), H100)  # below the ask, above the later lease
    assert (between.matched, between.earned, between.priced_out) == (1, 720 * 2 * 600, 1)


def test_gpus_held_by_a_taken_lease_free_again_at_its_end() -> None:
    lease = LeaseSample(time=0, model=MODEL, memory_gib=80, gpus=8, price=900, duration=100)
    recording = Recording(
        HEADER,
        (lease, LeaseSample(time=99, model=MODEL, memory_gib=80, gpus=1, price=900, duration=1),
         LeaseSample(time=100, model=MODEL, memory_gib=80, gpus=8, price=900, duration=1)),
    )  # fmt: skip
    result = replay(recording, Fixed(500), H100)
    assert (result.matched, result.capacity_misses) == (2, 1)


def test_a_recording_round_trips_through_its_file(tmp_path: Path) -> None:
    recording = Recording(
        HEADER,
        (
            BookSample(time=1, model=MODEL, asks=(Ask("0xa", 5, 1, 80),)),
            LeaseSample(time=2, model=MODEL, memory_gib=80, gpus=1, price=5, duration=9, bid="0xb"),
        ),
    )
    path = tmp_path / "market.jsonl"
    recording.dump(path)
    assert path.read_text().splitlines()[0] == (
        '{"kind":"header","version":1,"token":{"symbol":"tUSD","decimals":6},"source":"test"}'
    )
    assert Recording.load(path) == recording


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('{"kind":"book","time":1,"model":"m"}', "the first line must be the header"),
        ('{"kind":"header","version":2,"token":{"symbol":"t","decimals":6}}', "version 2"),
        ('{"kind":"header","version":1,"token":{"symbol":"t","decimals":6}}\n'
         '{"kind":"lease","time":1,"model":"m"}', "recording:2"),
        ('{"kind":"header","version":1,"token":{"symbol":"t","decimals":6}}\n'
         '{"kind":"book","time":5,"model":"m"}\n{"kind":"book","time":4,"model":"m"}',
         "in time order"),
        ('{"kind":"header","version":1,"token":{"symbol":"t","decimals":6},"x":1}', "x"),
    ],
)  # fmt: skip
def test_a_bad_recording_is_refused_naming_the_problem(text: str, says: str) -> None:
    with pytest.raises(InvalidArgument, match=says):
        read_recording(text)


@given(values=st.lists(st.integers(1, 10**9), min_size=1), p=st.floats(0, 100), q=st.floats(0, 100))
def test_nearest_rank_is_one_of_the_values_and_rises_with_the_percentile(
    values: list[int], p: float, q: float
) -> None:
    low, high = sorted((p, q))
    assert nearest_rank(values, low) in values
    assert nearest_rank(values, low) <= nearest_rank(values, high)


@given(
    asks_=st.lists(prices, max_size=20),
    bids_=st.lists(prices, max_size=20),
    cleared=st.lists(prices, max_size=20),
)
def test_a_quote_never_asks_more_than_the_median_cleared_price_or_the_quartile_ask(
    asks_: list[int], bids_: list[int], cleared: list[int]
) -> None:
    quote = suggest(asks_, bids_, cleared)
    assert (quote.price is None) == (not asks_ and not bids_ and not cleared)
    if cleared:
        assert quote.price is not None
        assert quote.price <= nearest_rank(cleared, 50)
    if asks_:
        assert quote.price is not None
        assert quote.price <= nearest_rank(asks_, 25)


def test_a_quote_keeps_the_figures_behind_it() -> None:
    quote = suggest(asks=[700, 720, 800, 900], bids=[650], cleared=[680, 690, 710], percentile=25)
    assert (quote.price, quote.basis) == (690, "asks+leases")
    assert (quote.ask_at_percentile, quote.cheapest_ask, quote.best_bid) == (700, 700, 650)
    assert (quote.cleared_low, quote.cleared_median, quote.cleared_high) == (680, 690, 710)
    assert suggest([], [650, 640], []).price == 650  # only bids: the best one takes the GPUs now
    assert suggest([], [], []).basis == "none"
