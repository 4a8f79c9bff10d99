"""market.units: exact amounts in tokens, prices per GPU-hour rounded down to base units per
GPU-second, as properties over every token's decimals."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from market.errors import (
    AmountError,
    AmountNegative,
    AmountTooPrecise,
    AmountUnreadable,
    PriceTooSmall,
)
from market.units import (
    SECONDS_PER_HOUR,
    Token,
    hourly_price,
    per_gpu_hour,
    per_gpu_second,
)

pytestmark = pytest.mark.unit

TUSD = Token("tUSD", 6)
tokens = st.builds(Token, st.sampled_from(["tUSD", "DAI", "X"]), st.integers(0, 30))
units = st.integers(0, 10**40)


@given(token=tokens, amount=units)
def test_a_formatted_amount_parses_back_to_the_same_base_units(token: Token, amount: int) -> None:
    assert token.parse(token.format(amount)) == amount
    assert token.parse(token.plain(amount)) == amount


@given(token=tokens, amount=units)
def test_formatting_keeps_at_least_two_decimals_and_drops_other_trailing_zeros(
    token: Token, amount: int
) -> None:
    number, symbol = token.format(amount).split(" ")
    assert symbol == token.symbol
    fraction = number.partition(".")[2]
    assert len(fraction) >= min(2, token.decimals)
    assert len(fraction) <= max(2, token.decimals)
    assert len(fraction) <= 2 or not fraction.endswith("0")


@pytest.mark.parametrize(
    ("units_", "shown"),
    [
        (1_234_560_000, "1,234.56 tUSD"),
        (9_800_008_000, "9,800.008 tUSD"),
        (800_000_002, "800.000002 tUSD"),
        (0, "0.00 tUSD"),
        (5, "0.000005 tUSD"),
    ],
)
def test_amounts_read_as_tokens_with_separators_and_symbol(units_: int, shown: str) -> None:
    assert TUSD.format(units_) == shown


@pytest.mark.parametrize(
    ("text", "expected"),
    [("200", 200_000_000), ("12.5", 12_500_000), ("12.5 tUSD", 12_500_000),
     ("1,234.56", 1_234_560_000), (".5", 500_000), ("7.", 7_000_000), (3, 3_000_000)],
)  # fmt: skip
def test_human_amounts_parse_exactly(text: str | int, expected: int) -> None:
    assert TUSD.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("1.0000001", AmountTooPrecise),
        ("-1", AmountNegative),
        ("abc", AmountUnreadable),
        ("1e3", AmountUnreadable),
        ("1 ETH", AmountUnreadable),
        ("1,23", AmountUnreadable),
        ("", AmountUnreadable),
        (".", AmountUnreadable),
        ("NaN", AmountUnreadable),
    ],
)
def test_bad_amounts_are_typed_amount_errors(text: str, error: type[AmountError]) -> None:
    with pytest.raises(error) as info:
        TUSD.parse(text)
    assert info.value.text == text


@given(token=tokens, amount=units, extra=st.integers(1, 9))
def test_more_decimals_than_the_token_has_are_refused_never_rounded(
    token: Token, amount: int, extra: int
) -> None:
    whole, fraction = divmod(amount, token.one)
    digits = f"{fraction:0{token.decimals}d}" if token.decimals else ""
    with pytest.raises(AmountTooPrecise):
        token.parse(f"{whole}.{digits}{extra}")


@given(per_second=st.integers(0, 10**40))
def test_a_per_second_price_survives_the_trip_through_per_hour(per_second: int) -> None:
    assert per_gpu_second(per_gpu_hour(per_second)) == per_second


@given(per_hour=st.integers(SECONDS_PER_HOUR, 10**40))
def test_a_per_hour_price_rounds_down_by_less_than_one_base_unit_per_second(per_hour: int) -> None:
    per_second = per_gpu_second(per_hour)
    assert per_gpu_hour(per_second) <= per_hour < per_gpu_hour(per_second + 1)


@given(per_hour=st.integers(1, SECONDS_PER_HOUR - 1))
def test_a_price_under_one_base_unit_per_second_is_refused_not_made_free(per_hour: int) -> None:
    with pytest.raises(PriceTooSmall) as info:
        per_gpu_second(per_hour)
    assert info.value.per_hour == per_hour


def test_a_person_sees_the_hourly_price_the_order_really_signs() -> None:
    per_second = hourly_price("2.50", TUSD)
    assert per_second == 694
    assert TUSD.format_price(per_second) == "2.4984 tUSD/GPU-hour"
    assert TUSD.format_price(hourly_price("1.80", TUSD)) == "1.80 tUSD/GPU-hour"  # exact
