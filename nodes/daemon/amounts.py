"""Token amounts and per-GPU-hour prices in config files, as people write them.

    stake = "200"                          # tokens (the settlement token's, any decimals)
    max_price_per_gpu_hour = "2.50"        # tokens per GPU-hour

A config is read before the chain is reached, so it holds the numbers as written (exact
``Decimal``s, checked to be numbers and not negative); a daemon converts them to base units once
it has read the token's decimals (:meth:`Tokens.units`, :meth:`PerGpuHour.per_second`, both of
:mod:`market.units`). The keys these replace (base units, per GPU-second) are refused with the
new key and the conversion (:func:`refuse_retired`), never reinterpreted.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Self

from market.errors import AmountError
from market.units import SECONDS_PER_HOUR, Token, hourly_price, parse_decimal, to_base_units
from nodes.daemon.values import Invalid


class Tokens(Decimal):
    """An amount in whole tokens: a string (``"12.5"``, exact) or a number (``200``)."""

    __slots__ = ()

    @classmethod
    def parse(cls, value: object) -> Self:
        if isinstance(value, float):  # TOML 12.5: its shortest repr is what the person wrote
            value = repr(value)
        try:
            return cls(parse_decimal(value))  # type: ignore[arg-type]
        except AmountError as exc:
            raise Invalid(f'must be an amount of tokens such as "12.5": {exc}') from exc

    def units(self, token: Token) -> int:
        """This many tokens in the token's base units; AmountTooPrecise beyond its decimals."""
        return to_base_units(Decimal(self), token)


class PerGpuHour(Tokens):
    """A price in tokens per GPU-hour (``"2.50"``)."""

    __slots__ = ()

    def per_second(self, token: Token) -> int:
        """The per-GPU-second base units an order signs, rounded down (:mod:`market.units`)."""
        return hourly_price(Decimal(self), token)


def refuse_retired(owner: str, old: str, value: object, new: str, *, price: bool) -> None:
    """Raise Invalid for a retired key ``old`` that is set, saying the key ``new`` that replaces
    it and how to convert ``value``: a ``price`` (base units per GPU-second) into tokens per
    GPU-hour, else an amount (base units) into tokens."""
    if value is None:
        return
    if price:
        example = _example(value, SECONDS_PER_HOUR)
        how = (f"prices are now tokens per GPU-hour: {new} = {value} x {SECONDS_PER_HOUR} / "
               f'10^decimals (a 6-decimal token: "{example}")')  # fmt: skip
    else:
        how = (f"amounts are now tokens: {new} = {value} / 10^decimals "
               f'(a 6-decimal token: "{_example(value, 1)}")')  # fmt: skip
    raise Invalid(f"no longer read; {how}", old, owner)


def _example(value: object, factor: int) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "..."
    return str((Decimal(repr(value)) * factor).scaleb(-6).normalize())


__all__ = ["PerGpuHour", "Tokens", "refuse_retired"]
