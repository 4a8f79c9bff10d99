"""Token amounts as people read and write them, and prices per GPU-hour.

    tusd = Token("tUSD", 6)                       # MarketClient.token_metadata() reads it
    tusd.parse("12.5 tUSD")                       # 12_500_000 base units, exactly
    tusd.format(1_234_560_000)                    # "1,234.56 tUSD"
    per_second = per_gpu_second(tusd.parse("2.50"))   # 694: what an order signs
    tusd.format_price(per_second)                 # "2.4984 tUSD/GPU-hour"

One convention holds everywhere a person looks: amounts in tokens with the token's decimals and
symbol, prices per GPU-hour. Base units (integers, ``10**-decimals`` of a token) and prices per
GPU-second are for the wire format and the chain only.

A price per GPU-hour becomes a per-second price by **rounding down** to a whole base unit
(:func:`per_gpu_second`): a lab's bid never signs more than its owner wrote, an offer never asks
more than the provider wrote, and what was lost is shown (:meth:`Token.format_price` of the
result, as ``gpumarket status`` and ``gpumarket price`` show prices). A per-hour price under one
base unit per second is refused (:class:`~market.errors.PriceTooSmall`), never rounded to zero.
Decision 0025 says why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from market.errors import AmountNegative, AmountTooPrecise, AmountUnreadable, PriceTooSmall

SECONDS_PER_HOUR = 3600
EVENT_AMOUNTS = frozenset(
    {"amount", "cumulative_paid", "paid", "refund", "penalty", "bond", "stake"}
)
"""The arguments of the market's events (as web3 names them) that are amounts of the settlement
token, in base units: a person sees them in tokens. The others are counts, times and sequence
numbers (``end``, ``seq``, ``ready_at``, ``min_nonce``, ``gpus``...)."""
EVENT_TIMES = frozenset({"end", "ready_at", "vests_at", "ruling_deadline"})
"""The arguments of the market's events that are chain times (Unix seconds): shown as dates."""
_NUMBER = re.compile(r"[+-]?(\d{1,3}(,\d{3})+|\d+)?(\.\d*)?")


@dataclass(frozen=True, slots=True)
class Token:
    """An ERC-20 settlement token as people see it: its ``symbol`` and ``decimals``."""

    symbol: str
    decimals: int

    @property
    def one(self) -> int:
        """Base units in one whole token."""
        return int(10**self.decimals)

    def parse(self, text: str | int | Decimal) -> int:
        """Base units in ``text`` (``"200"``, ``"12.5"``, ``"1,234.56 tUSD"``), exactly; raises
        AmountUnreadable, AmountTooPrecise (more decimals than the token has) or AmountNegative."""
        return to_base_units(parse_decimal(text, self.symbol), self)

    def format(self, units: int) -> str:
        """``units`` base units as ``"1,234.56 tUSD"``."""
        return f"{format_decimal(units, self.decimals)} {self.symbol}"

    def plain(self, units: int) -> str:
        """``units`` base units as a bare number of tokens (``"1234.56"``): for files a program
        reads back (configs, JSON), where :meth:`parse` gives ``units`` again."""
        whole, frac = divmod(units, self.one)
        digits = f"{frac:0{self.decimals}d}".rstrip("0") if self.decimals else ""
        return f"{whole}.{digits}" if digits else str(whole)

    def format_price(self, per_second: int) -> str:
        """A per-GPU-second price in base units as ``"2.50 tUSD/GPU-hour"``."""
        return f"{self.format(per_gpu_hour(per_second))}/GPU-hour"


def parse_decimal(text: str | int | Decimal, symbol: str | None = None) -> Decimal:
    """The number in ``text``: digits with an optional fraction and ``,`` thousands separators,
    then optionally ``symbol`` after a space. Refuses negatives (AmountNegative) and anything
    else (AmountUnreadable)."""
    if isinstance(text, bool) or not isinstance(text, str | int | Decimal):
        raise AmountUnreadable(repr(text), 'write an amount as a string such as "12.5"')
    if isinstance(text, int | Decimal):
        value = Decimal(text)
        if not value.is_finite():
            raise AmountUnreadable(str(text), "not a finite number")
    else:
        number, _, unit = text.strip().partition(" ")
        unit = unit.strip()
        if unit and unit != symbol:
            expected = f"{symbol!r}" if symbol else "no symbol"
            raise AmountUnreadable(text, f"the unit is {unit!r}, expected {expected}")
        if _NUMBER.fullmatch(number) is None or not any(c.isdigit() for c in number):
            raise AmountUnreadable(text, 'write digits with an optional fraction: "12.5"')
        try:
            value = Decimal(number.replace(",", ""))
        except InvalidOperation as exc:  # pragma: no cover - the pattern admits decimals only
            raise AmountUnreadable(text, "not a decimal number") from exc
    if value < 0:
        raise AmountNegative(str(text))
    return value


def to_base_units(value: Decimal, token: Token) -> int:
    """``value`` whole tokens in base units; AmountTooPrecise when it has more decimals than the
    token, AmountNegative below zero."""
    if value < 0:
        raise AmountNegative(str(value))
    _, digits, exponent = value.as_tuple()  # exact integer arithmetic: no context rounding
    assert isinstance(exponent, int)  # parse_decimal admits finite numbers only
    mantissa, shift = int("".join(map(str, digits)) or "0"), exponent + token.decimals
    if shift >= 0:
        return mantissa * int(10**shift)
    whole, rest = divmod(mantissa, int(10**-shift))
    if rest:
        raise AmountTooPrecise(str(value), token.decimals, token.symbol)
    return whole


def format_decimal(units: int, decimals: int) -> str:
    """``units`` base units as a number of tokens with thousands separators, trailing zeros
    trimmed down to two decimals (fewer only for a token with fewer): ``"9,800.008"``."""
    sign, units = ("-", -units) if units < 0 else ("", units)
    whole, frac = divmod(units, 10**decimals)
    digits = f"{frac:0{decimals}d}" if decimals else ""
    digits = digits.rstrip("0").ljust(min(2, decimals), "0")
    return f"{sign}{whole:,}" + (f".{digits}" if digits else "")


def per_gpu_second(per_hour: int) -> int:
    """The per-GPU-second price in base units for a per-GPU-hour price in base units, rounded
    down; PriceTooSmall when that is zero for a positive price."""
    per_second = per_hour // SECONDS_PER_HOUR
    if per_hour > 0 and per_second == 0:
        raise PriceTooSmall(per_hour, SECONDS_PER_HOUR)
    return per_second


def per_gpu_hour(per_second: int) -> int:
    """The per-GPU-hour price in base units of a per-GPU-second one (exact)."""
    return per_second * SECONDS_PER_HOUR


def hourly_price(text: str | int | Decimal, token: Token) -> int:
    """A price written per GPU-hour in tokens (``"2.50"``) as the per-GPU-second base units an
    order signs, rounded down (:func:`per_gpu_second`)."""
    return per_gpu_second(token.parse(text))


__all__ = [
    "EVENT_AMOUNTS",
    "EVENT_TIMES",
    "SECONDS_PER_HOUR",
    "Token",
    "format_decimal",
    "hourly_price",
    "parse_decimal",
    "per_gpu_hour",
    "per_gpu_second",
    "to_base_units",
]
