"""Pricing policies: bounds and monotonicity as properties, loading by name and by module:Class."""

from __future__ import annotations

from types import MappingProxyType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from market.units import Token
from nodes.errors import ConfigError, PricingError
from nodes.provider import FixedPrice, PricingConfig, UtilisationPrice, load_policy

pytestmark = pytest.mark.unit

prices = st.integers(1, 10**30)
TUSD = Token("tUSD", 6)
totals = st.integers(1, 10_000)


class Surge:
    """A user's policy: doubles the price at night (a plug-in loaded by module:Class)."""

    def __init__(self, base: int) -> None:
        self.base = base

    def price(self, model: str, gpus_free: int, gpus_total: int, now: int) -> int | None:
        return self.base * (2 if now % 86_400 < 6 * 3600 else 1)


class Broken:
    def __init__(self, answer: object) -> None:
        self.answer = answer

    def price(self, model: str, gpus_free: int, gpus_total: int, now: int) -> object:
        return self.answer


class NoPrice:
    pass


def _config(policy: str, **params: object) -> PricingConfig:
    return PricingConfig(policy, MappingProxyType(params))  # type: ignore[arg-type]


@given(
    floor=prices, spread=st.integers(0, 10**30), total=totals, k=st.integers(1, 8), data=st.data()
)
def test_utilisation_price_stays_within_floor_and_ceiling(
    floor: int, spread: int, total: int, k: int, data: st.DataObject
) -> None:
    policy = UtilisationPrice(floor, floor + spread, k)
    free = data.draw(st.integers(1, total))
    price = policy.price("H100-80GB", free, total, 0)
    assert price is not None
    assert floor <= price <= floor + spread


@given(
    floor=prices, spread=st.integers(0, 10**30), total=totals, k=st.integers(1, 8), data=st.data()
)
def test_utilisation_price_never_falls_as_more_gpus_are_leased(
    floor: int, spread: int, total: int, k: int, data: st.DataObject
) -> None:
    policy = UtilisationPrice(floor, floor + spread, k)
    busier = data.draw(st.integers(1, total))  # fewer free GPUs: higher utilisation
    idler = data.draw(st.integers(busier, total))
    assert policy.price("m", busier, total, 0) >= policy.price("m", idler, total, 0)  # type: ignore[operator]


def test_utilisation_price_runs_from_floor_when_idle_towards_ceiling_when_full() -> None:
    policy = UtilisationPrice(10, 20)
    assert [policy.price("m", free, 4, 0) for free in (4, 3, 2, 1, 0)] == [10, 12, 15, 17, None]


@given(price=prices, free=st.integers(1, 100), total=st.integers(1, 100), now=st.integers(0, 2**40))
def test_fixed_price_is_the_same_whatever_the_load(
    price: int, free: int, total: int, now: int
) -> None:
    assert FixedPrice(price).price("m", free, total, now) == price


def test_fixed_price_per_model_offers_only_the_models_listed() -> None:
    policy = load_policy(_config("fixed", prices_per_gpu_hour={"H100-80GB": "0.018"}), TUSD)
    assert policy.price("H100-80GB", 1, 8, 0) == 5  # 0.018 tUSD/GPU-hour = 5 base units/s
    assert policy.price("A100-40GB", 1, 8, 0) is None
    assert policy.price("H100-80GB", 0, 8, 0) is None


def test_built_in_policies_load_by_name_with_their_params() -> None:
    policy = load_policy(
        _config("utilisation", floor_per_gpu_hour="0.0072", ceiling_per_gpu_hour=0.0216,
                exponent=2), TUSD,
    )  # fmt: skip
    assert policy.policy == UtilisationPrice(2, 6, 2)
    assert policy.price("m", 1, 2, 0) == 3


def test_a_per_hour_price_is_rounded_down_to_whole_base_units_per_second() -> None:
    policy = load_policy(_config("fixed", price_per_gpu_hour="2.50"), TUSD)
    assert policy.price("m", 1, 1, 0) == 694  # 2_500_000 / 3600 = 694.4: 2.4984 tUSD/GPU-hour
    eighteen = load_policy(_config("fixed", price_per_gpu_hour="2.50"), Token("DAI", 18))
    assert eighteen.price("m", 1, 1, 0) == 2_500_000_000_000_000_000 // 3600


@pytest.mark.parametrize(
    ("params", "field", "says"),
    [
        ({"price_per_gpu_second": 500}, "params.price_per_gpu_second",
         'price_per_gpu_hour = 500 x 3600 / 10^decimals (a 6-decimal token: "1.8")'),
        ({"prices": {"H100-80GB": 5}}, "params.prices", "prices_per_gpu_hour"),
        ({"price_per_gpu_hour": "-1"}, "params.price_per_gpu_hour", "negative"),
        ({"price_per_gpu_hour": "2.5 ETH"}, "params.price_per_gpu_hour", "'ETH'"),
        ({"prices_per_gpu_hour": {"H100": "x"}}, "params.prices_per_gpu_hour.H100", "digits"),
        ({"price_per_gpu_hour": "1", "surge": 2}, "params.surge", "unknown parameter"),
    ],
)  # fmt: skip
def test_retired_and_bad_price_keys_are_config_errors_that_say_the_fix(
    params: dict[str, object], field: str, says: str
) -> None:
    with pytest.raises(ConfigError) as info:
        _config("fixed", **params)
    assert info.value.field == field
    assert says in info.value.reason


def test_retired_utilisation_keys_name_their_per_hour_replacements() -> None:
    with pytest.raises(ConfigError, match="floor_per_gpu_hour = 2 x 3600"):
        _config("utilisation", floor=2, ceiling=6)


def test_user_policy_plugs_in_by_module_and_class() -> None:
    policy = load_policy(_config(f"{__name__}:Surge", base=7), TUSD)
    assert isinstance(policy.policy, Surge)
    assert policy.price("m", 1, 1, 3600) == 14
    assert policy.price("m", 1, 1, 12 * 3600) == 7


@pytest.mark.parametrize("answer", [0, -1, 1.5, True, "3", 2**128])
def test_plugged_in_policy_cannot_put_a_bad_price_on_an_offer(answer: object) -> None:
    policy = load_policy(_config(f"{__name__}:Broken", answer=answer), TUSD)
    with pytest.raises(PricingError, match="must be an integer from 1 to 2\\^128-1"):
        policy.price("m", 1, 1, 0)


@pytest.mark.parametrize(
    ("name", "params", "reason"),
    [
        ("cheapest", {}, "unknown policy"),
        ("no.such.module:Policy", {}, "cannot import no.such.module"),
        (f"{__name__}:Missing", {}, "has no Missing"),
        (f"{__name__}:NoPrice", {}, "has no price("),
        ("utilisation", {"floor_per_gpu_hour": "1"}, "give ceiling_per_gpu_hour"),
        (
            "utilisation",
            {"floor_per_gpu_hour": "5", "ceiling_per_gpu_hour": "2"},
            "ceiling 555 is below floor 1388",
        ),
        (
            "utilisation",
            {"floor_per_gpu_hour": "0", "ceiling_per_gpu_hour": "2"},
            "floor must be an integer",
        ),
        (
            "utilisation",
            {"floor_per_gpu_hour": "1", "ceiling_per_gpu_hour": "2", "exponent": 9},
            "exponent must be",
        ),
        ("fixed", {}, "give price_per_gpu_hour or prices_per_gpu_hour"),
        ("fixed", {"price_per_gpu_hour": "0.001"}, "under 1 per GPU-second"),
        ("fixed", {"price_per_gpu_hour": "1.0000001"}, "more decimals than tUSD has (6)"),
    ],
)
def test_policy_that_cannot_load_is_a_pricing_error(
    name: str, params: dict[str, object], reason: str
) -> None:
    with pytest.raises(PricingError) as info:
        load_policy(_config(name, **params), TUSD)
    assert reason in info.value.reason
