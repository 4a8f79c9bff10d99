"""The Python fit rule against the contract: for random signed pairs, ``fits_terms`` with a
crossing price holds exactly when ``openLease`` succeeds, and a failure reverts with the error
``unfit`` names, carrying the numbers the Python side computes.

Every other reason to revert is ruled out (signatures by real keys, orders live, provider staked,
lab funded, the fill within both orders and filling an all-or-none bid whole), so the two sides
can only disagree on a signed term. Each pair is judged by the node's gas estimate (an
``eth_estimateGas`` of ``openLease`` from the matcher's account: nothing changes); about one in
eight also goes through ``MarketClient.open_lease`` in a snapshot reverted after it, and the lease
it opens (or the typed error it raises) is checked.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pytest
from eth_typing import HexStr
from eth_utils import to_checksum_address
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from market.chain.client import bid_tuple, offer_tuple
from market.errors import ContractError
from market.matching import Unfit, fits_terms, unaccepted_lane, unfit
from market.matching.constraints import LANE_BITS
from market.protocol.signing import SigningKey
from market.protocol.types import (
    ZERO_ADDRESS,
    Bid,
    Billing,
    Offer,
    Signed,
    gpu_model_to_bytes32,
)
from tests.integration.conftest import MIN_STAKE, MarketEnv

pytestmark = pytest.mark.integration

PROVIDER, LAB, MATCHER = 1, 2, 5
FAR = 2**40
EXAMPLES = 300
# Feature bits the pairs draw from: lanes 0, 1, 2 and 5 of the vocabulary, lanes 7 and 15
# outside it, and the top bit of three lanes (the contract's lane test reads the top bit).
BITS = (0, 1, 2, 15, 16, 17, 31, 34, 39, 80, 81, 115, 240, 255)
_LANE_MASK = (1 << LANE_BITS) - 1
ARBITERS = (ZERO_ADDRESS, ZERO_ADDRESS, ZERO_ADDRESS, to_checksum_address("0x" + "a7" * 20))


@dataclass(frozen=True)
class Pair:
    offer: Offer
    bid: Bid
    send: bool


def _bits(chosen: set[int]) -> int:
    return sum(1 << b for b in chosen)


@st.composite
def pairs(draw: st.DrawFn, provider: str, lab: str) -> Pair:
    """An offer and a bid that agree on everything but the signed terms, drawn near each term's
    boundary (equal, one short) and across feature lanes, so each check both passes and fails."""
    features = draw(st.sets(st.sampled_from(BITS), max_size=6))
    required = draw(st.sets(st.sampled_from(BITS), max_size=2))
    if draw(st.integers(0, 3)):
        required &= features  # mostly met
    accepted = draw(st.sets(st.sampled_from(BITS), max_size=3)) if draw(st.booleans()) else set()
    if accepted and features and draw(st.integers(0, 3)):
        accepted.add(draw(st.sampled_from(sorted(features))))  # mostly one the offer has
    low = draw(st.sampled_from([1, 60, 600]))
    high = draw(st.sampled_from([600, 3600, 86_400]))
    memory = draw(st.sampled_from([24, 80, 141]))
    bandwidth = draw(st.sampled_from([0, 100, 400]))
    price = draw(st.integers(1, 20))
    gpus = draw(st.integers(1, 4))
    offer = Offer(
        provider=provider,
        gpu_model="H100-80GB",
        gpu_count=gpus + draw(st.integers(0, 4)),
        memory_gib=memory,
        price_per_gpu_second=price,
        min_duration=low,
        max_duration=high,
        expiry=FAR,
        nonce=draw(st.integers(1, 2**64)),
        bandwidth_gbps=bandwidth,
        features=_bits(features),
        billing_modes=draw(st.sampled_from([3, 3, 3, 1, 2, 0])),  # both, rental, metered, none
        arbiter=draw(st.sampled_from(ARBITERS)),
        min_charge_bps=draw(st.sampled_from([0, 0, 100, 2_500])),
    )
    # Each term is drawn at its boundary: mostly one that fits (equal, or any), sometimes one
    # past it, so that each check both passes and fails and several fail at once.
    bid = Bid(
        lab=lab,
        gpu_model=draw(st.sampled_from(["H100-80GB"] * 9 + ["A100-80GB"])),
        gpu_count=gpus,
        max_price_per_gpu_second=draw(st.sampled_from([price - 1, price, price, price + 5])),
        duration=draw(st.sampled_from([low, low, high, high, max(low - 1, 1), high + 1])),
        expiry=FAR,
        nonce=draw(st.integers(1, 2**64)),
        min_memory_gib=draw(st.sampled_from([0, memory - 1, memory, memory, memory + 1])),
        min_bandwidth_gbps=draw(st.sampled_from([0, bandwidth, bandwidth, bandwidth + 1])),
        required_features=_bits(required),
        accepted_features=_bits(accepted),
        billing=draw(st.sampled_from(Billing)),
        all_or_none=draw(st.booleans()),  # filled whole here, so it never decides
        # Mostly the offer's arbiter, sometimes another.
        arbiter=draw(st.sampled_from([offer.arbiter] * 3 + list(ARBITERS))),
        max_min_charge_bps=draw(st.sampled_from([0, 99, 100, 2_500, 10_000])),
    )
    return Pair(offer, bid, send=draw(st.integers(0, 7)) == 0)


def _expected_error(offer: Offer, bid: Bid) -> tuple[str, tuple[object, ...]] | None:
    """The contract error (name, arguments) the Python side predicts, or None for a lease."""
    why = unfit(offer, bid)
    if why is None:
        if offer.price_per_gpu_second > bid.max_price_per_gpu_second:
            args = (offer.price_per_gpu_second, bid.max_price_per_gpu_second)
            return "MarketPriceNotCrossed", args
        return None
    args: tuple[object, ...]
    if why is Unfit.MODEL:
        args = (gpu_model_to_bytes32(offer.gpu_model), gpu_model_to_bytes32(bid.gpu_model))
    elif why is Unfit.DURATION:
        args = (bid.duration, offer.min_duration, offer.max_duration)
    elif why is Unfit.MEMORY:
        args = (offer.memory_gib, bid.min_memory_gib)
    elif why is Unfit.BANDWIDTH:
        args = (offer.bandwidth_gbps, bid.min_bandwidth_gbps)
    elif why is Unfit.FEATURES_MISSING:
        args = (bid.required_features & ~offer.features,)
    elif why is Unfit.FEATURE_NOT_ACCEPTED:
        lane = unaccepted_lane(offer, bid)
        assert lane is not None
        shift = lane * LANE_BITS
        args = (
            lane,
            offer.features >> shift & _LANE_MASK,
            bid.accepted_features >> shift & _LANE_MASK,
        )
    elif why is Unfit.BILLING:
        args = (int(bid.billing), offer.billing_modes)
    elif why is Unfit.ARBITER:
        args = (offer.arbiter, bid.arbiter)
    else:
        args = (offer.min_charge_bps, bid.max_min_charge_bps)
    return why.value, args


def test_python_fit_rule_agrees_with_open_lease_on_random_signed_pairs(env: MarketEnv) -> None:
    provider, lab = env.provider(PROVIDER), env.lab(LAB)
    provider.register(stake=1_000 * MIN_STAKE, endpoint="http://p")  # every lock covered
    lab.fund(2**200)
    matcher = env.client(env.devnet.accounts[MATCHER])
    domain = matcher.domain
    provider_key = SigningKey(env.devnet.accounts[PROVIDER].key)
    lab_key = SigningKey(env.devnet.accounts[LAB].key)
    seen: Counter[str] = Counter()

    def call_data(offer: Signed[Offer], bid: Signed[Bid], gpus: int) -> HexStr:
        args = [offer_tuple(offer.message), offer.signature, bid_tuple(bid.message), bid.signature]
        return HexStr(matcher.market.encode_abi("openLease", args=[*args, gpus]))

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],  # a failing pair is reported as drawn
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(pairs(provider_key.address, lab_key.address))
    def check(pair: Pair) -> None:
        offer, bid = provider_key.sign(domain, pair.offer), lab_key.sign(domain, pair.bid)
        expected = _expected_error(pair.offer, pair.bid)
        crosses = pair.offer.price_per_gpu_second <= pair.bid.max_price_per_gpu_second
        assert (expected is None) == (fits_terms(pair.offer, pair.bid) and crosses)
        gpus = pair.bid.gpu_count
        data = call_data(offer, bid, gpus)
        got: tuple[str, tuple[object, ...]] | None = None
        try:
            matcher.transactor.estimate(matcher.market.address, data, what="openLease")
        except ContractError as exc:
            got = (type(exc).__name__, exc.values)
        assert got == expected, "openLease and the Python fit rule disagree"
        seen["opened" if got is None else got[0]] += 1
        if pair.send and expected is None:
            with env.devnet.isolated():  # a fresh client: the snapshot takes its nonce back
                lease = env.client(env.devnet.accounts[MATCHER]).open_lease(offer, bid, gpus)
            assert (lease.gpus, lease.billing) == (gpus, pair.bid.billing)
            assert lease.price_per_gpu_second == pair.offer.price_per_gpu_second
            assert lease.arbiter == pair.offer.arbiter
            assert lease.min_charge == lease.escrow * pair.offer.min_charge_bps // 10_000
            seen["sent"] += 1
        elif pair.send:
            with env.devnet.isolated(), pytest.raises(ContractError) as sent:
                env.client(env.devnet.accounts[MATCHER]).open_lease(offer, bid, gpus)
            assert (type(sent.value).__name__, sent.value.values) == expected
            seen["refused when sent"] += 1

    check()
    # Every way to fail was met, and so were leases, estimated and sent.
    outcomes = {"MarketPriceNotCrossed", "opened", "sent", "refused when sent"}
    assert set(seen) == {u.value for u in Unfit} | outcomes
    assert seen["opened"] >= EXAMPLES // 10
