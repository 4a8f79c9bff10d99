"""Pricing policies: what the provider asks per GPU-second, given how busy it is.

    policy = load_policy(config.pricing, client.token_metadata())
    price = policy.price("H100-80GB", gpus_free=6, gpus_total=8, now=chain_time)
    # an int in base units per GPU-second (what an offer signs), or None: do not offer now

Two policies ship: ``fixed`` (one price, or one per model) and ``utilisation`` (the price rises
from ``floor`` when every GPU is free to ``ceiling`` when none is, along ``used^k / total^k``).
The config writes their prices in tokens per GPU-hour (``price_per_gpu_hour = "2.50"``,
``floor_per_gpu_hour``, ``ceiling_per_gpu_hour``, ``prices_per_gpu_hour``); :func:`load_policy`
converts them with the token's decimals, rounding down to whole base units per GPU-second
(:mod:`market.units`). The classes themselves hold base units per GPU-second, the wire's unit.
Any class with a ``price`` method of the same signature plugs in by ``"package.module:Class"``;
its parameters are the config's ``[pricing] params`` as written, and it answers base units per
GPU-second (:func:`market.units.hourly_price` converts a per-hour price). Whatever a policy
returns goes through :func:`checked_price`, so a plugin cannot put a negative, fractional or
boolean price on an offer.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from market.errors import AmountError
from market.protocol.types import UINT128_MAX
from market.units import Token
from nodes.daemon.amounts import PerGpuHour
from nodes.errors import PricingError
from nodes.provider.config import PricingConfig


@runtime_checkable
class PricingPolicy(Protocol):
    def price(self, model: str, gpus_free: int, gpus_total: int, now: int) -> int | None:
        """Token units per GPU-second to ask now for ``model``, or None to offer none."""
        ...


@dataclass(frozen=True, slots=True)
class FixedPrice:
    """``price`` for every model, or ``prices[model]`` (models not listed are not offered)."""

    price_per_gpu_second: int | None = None
    prices: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.price_per_gpu_second is None and not self.prices:
            raise PricingError("fixed", "give price_per_gpu_hour or prices_per_gpu_hour")
        for name, value in [
            ("price_per_gpu_second", self.price_per_gpu_second),
            *self.prices.items(),
        ]:
            if value is not None:
                checked_price("fixed", value, what=name)

    def price(self, model: str, gpus_free: int, gpus_total: int, now: int) -> int | None:
        if gpus_free <= 0:
            return None
        return self.prices.get(model, self.price_per_gpu_second)


@dataclass(frozen=True, slots=True)
class UtilisationPrice:
    """``floor + (ceiling - floor) * used^exponent // total^exponent``, ``used`` being the GPUs
    of the model already leased: cheap when idle, dear when nearly full. Integer arithmetic, so
    the price never leaves ``[floor, ceiling]`` and never falls as utilisation rises."""

    floor: int
    ceiling: int
    exponent: int = 1

    def __post_init__(self) -> None:
        checked_price("utilisation", self.floor, what="floor")
        checked_price("utilisation", self.ceiling, what="ceiling")
        if self.ceiling < self.floor:
            raise PricingError("utilisation", f"ceiling {self.ceiling} is below floor {self.floor}")
        if type(self.exponent) is not int or not 1 <= self.exponent <= 8:
            raise PricingError("utilisation", f"exponent must be an integer 1-8: {self.exponent!r}")

    def price(self, model: str, gpus_free: int, gpus_total: int, now: int) -> int | None:
        if gpus_total <= 0 or gpus_free <= 0:
            return None
        used = gpus_total - min(gpus_free, gpus_total)
        k = self.exponent
        return self.floor + (self.ceiling - self.floor) * int(used**k) // int(gpus_total**k)


BUILTIN: dict[str, type[FixedPrice] | type[UtilisationPrice]] = {
    "fixed": FixedPrice,
    "utilisation": UtilisationPrice,
}


def checked_price(policy: str, value: object, *, what: str = "price") -> int:
    """``value`` if it is a valid offer price (an int in 1..2^128-1), else PricingError."""
    if type(value) is not int or not 1 <= value <= UINT128_MAX:
        raise PricingError(policy, f"{what} must be an integer from 1 to 2^128-1, got {value!r}")
    return value


class Checked:
    """Wraps any policy: each price it returns is checked before it can reach an offer."""

    def __init__(self, name: str, policy: PricingPolicy) -> None:
        self.name = name
        self.policy = policy

    def price(self, model: str, gpus_free: int, gpus_total: int, now: int) -> int | None:
        value = self.policy.price(model, gpus_free, gpus_total, now)
        return None if value is None else checked_price(self.name, value)


def builtin_params(config: PricingConfig, token: Token) -> dict[str, Any]:
    """A built-in policy's constructor arguments: the config's per-GPU-hour token prices in base
    units per GPU-second, rounded down; PricingError for a price the token cannot express."""
    try:
        if config.policy == "fixed":
            hourly = config.hourly("price_per_gpu_hour")
            table = config.params.get("prices_per_gpu_hour", {})
            return {
                "price_per_gpu_second": None if hourly is None else hourly.per_second(token),
                "prices": {m: PerGpuHour.parse(p).per_second(token) for m, p in table.items()},
            }
        out: dict[str, Any] = {}
        for key, arg in (("floor_per_gpu_hour", "floor"), ("ceiling_per_gpu_hour", "ceiling")):
            hourly = config.hourly(key)
            if hourly is None:
                raise PricingError(config.policy, f"give {key} (tokens per GPU-hour)")
            out[arg] = hourly.per_second(token)
        if "exponent" in config.params:
            out["exponent"] = config.params["exponent"]
        return out
    except AmountError as exc:
        raise PricingError(config.policy, str(exc)) from exc


def load_policy(config: PricingConfig, token: Token) -> Checked:
    """The policy named in the config, built with its params (a built-in one's prices converted
    with ``token``'s decimals); raises PricingError."""
    name = config.policy
    params: dict[str, Any] = dict(config.params)
    cls: Callable[..., object]
    if name in BUILTIN:
        cls = BUILTIN[name]
        params = builtin_params(config, token)
    elif ":" in name:
        cls = _import(name)
    else:
        raise PricingError(name, f"unknown policy: use one of {sorted(BUILTIN)} or module:Class")
    try:
        policy = cls(**params)
    except TypeError as exc:
        raise PricingError(name, f"bad params {sorted(params)}: {exc}") from exc
    if not isinstance(policy, PricingPolicy):
        raise PricingError(name, "has no price(model, gpus_free, gpus_total, now) method")
    return Checked(name, policy)


def _import(target: str) -> Callable[..., object]:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PricingError(target, f"cannot import {module_name}: {exc}") from exc
    cls: object = getattr(module, attr, None)
    if cls is None:
        raise PricingError(target, f"{module_name} has no {attr}")
    if not callable(cls):
        raise PricingError(target, f"{attr} is not a class")
    return cls


__all__ = [
    "BUILTIN",
    "Checked",
    "FixedPrice",
    "PricingPolicy",
    "UtilisationPrice",
    "builtin_params",
    "checked_price",
    "load_policy",
]
