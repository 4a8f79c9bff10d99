"""A Hypothesis state machine drives the registry and the market on anvil with random actors and
actions, and checks every balance and every credit against a Python model of the ledger after
every step: tokens are conserved, nobody is paid twice, refunds are exact, a withdrawal sends
exactly the account's credit, and the market holds what leases still owe plus every credit."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from market.chain.contract_errors import (
    MarketClaimWindowOpen,
    MarketDurationOutOfRange,
    MarketFillExceedsOrder,
    MarketLeaseEnded,
    MarketLeaseNotOpen,
    MarketNothingToWithdraw,
    MarketOrderCancelled,
    MarketPriceNotCrossed,
    MarketProviderNotRegistered,
    MarketProviderStakeTooLow,
    RegistryNotWithdrawable,
    RegistryUnstakeExceedsFree,
)
from market.chain.deploy import Contracts
from market.chain.devnet import Devnet
from market.protocol.eip712 import order_hash
from market.protocol.types import Bid, Lease, Offer, Signed
from market.roles import Lab, Provider
from tests.integration.conftest import CLAIM_WINDOW, MIN_STAKE, UNBONDING_DELAY, MarketEnv

pytestmark = pytest.mark.integration

PROVIDERS = (1, 2, 3)
LABS = (4, 5, 6)
MODEL = "H100"
MARGIN_S = 3  # each block is 1 s after the previous one; a rule may mine a block or two


@dataclass
class LeaseModel:
    lease: Lease
    paid: int = 0
    end: int = 0
    status: str = "active"  # active | terminated | closed


@dataclass
class Ledger:
    balances: dict[str, int] = field(default_factory=dict)  # token balances
    credits: dict[str, int] = field(default_factory=dict)  # withdrawable from the market
    stakes: dict[str, int] = field(default_factory=dict)
    unbonding: dict[str, int] = field(default_factory=dict)
    unbond_ready: dict[str, int] = field(default_factory=dict)
    registered: set[str] = field(default_factory=set)
    fills: dict[bytes, int] = field(default_factory=dict)
    cancelled: set[bytes] = field(default_factory=set)
    leases: dict[bytes, LeaseModel] = field(default_factory=dict)


def make_machine(
    devnet: Devnet, contracts: Contracts, steps: list[int]
) -> type[RuleBasedStateMachine]:
    class MarketMachine(RuleBasedStateMachine):
        offers = Bundle("offers")
        bids = Bundle("bids")
        leases = Bundle("leases")

        def __init__(self) -> None:
            super().__init__()
            self.snapshot = devnet.snapshot()
            # Chain time must not depend on how fast this machine runs: rules that sign orders
            # mine nothing, so on wall-clock time the next block could land seconds later.
            devnet.set_block_timestamp_interval(1)
            env = MarketEnv(devnet, contracts)
            self.providers = {i: env.provider(i) for i in PROVIDERS}
            self.labs = {i: env.lab(i) for i in LABS}
            self.reader = env.client()
            self.market = contracts.market.address
            self.registry = contracts.registry.address
            for lab in self.labs.values():
                lab.fund(2**255)
            self.ledger = Ledger()
            actors = [p.address for p in self.providers.values()] + [
                lab.address for lab in self.labs.values()
            ]
            for addr in [*actors, self.market, self.registry]:
                self.ledger.balances[addr] = self.reader.balance_of(addr)
            for addr in actors:
                self.ledger.credits[addr] = 0
            self.supply = sum(self.ledger.balances.values())

        def teardown(self) -> None:
            devnet.revert(self.snapshot)
            devnet.set_block_timestamp_interval(None)

        def _step(self) -> None:
            steps[0] += 1

        # --- registry --------------------------------------------------------------------

        @rule(p=st.sampled_from(PROVIDERS), extra=st.integers(0, 3 * MIN_STAKE))
        def register(self, p: int, extra: int) -> None:
            self._step()
            self._register(p, MIN_STAKE + extra)

        def _register(self, p: int, stake: int) -> None:
            provider = self.providers[p]
            if provider.address in self.ledger.registered:
                return
            provider.register(stake=stake, endpoint=f"http://p{p}")
            self.ledger.registered.add(provider.address)
            self.ledger.stakes[provider.address] = stake
            self._move(provider.address, self.registry, stake)

        @rule(p=st.sampled_from(PROVIDERS), amount=st.integers(1, 2 * MIN_STAKE))
        def request_unstake(self, p: int, amount: int) -> None:
            self._step()
            provider = self.providers[p]
            a = provider.address
            if a not in self.ledger.registered:
                return
            free = self.ledger.stakes[a] - self.ledger.unbonding.get(a, 0)
            if amount > free:
                with pytest.raises(RegistryUnstakeExceedsFree):
                    provider.client.request_unstake(amount)
                return
            provider.client.request_unstake(amount)
            self.ledger.unbonding[a] = self.ledger.unbonding.get(a, 0) + amount
            self.ledger.unbond_ready[a] = self.reader.chain_time() + UNBONDING_DELAY

        @rule(p=st.sampled_from(PROVIDERS))
        def withdraw_stake(self, p: int) -> None:
            self._step()
            provider = self.providers[p]
            a = provider.address
            if a not in self.ledger.registered:
                return
            now = self.reader.chain_time()
            ready = self.ledger.unbond_ready.get(a, 0)
            pending = self.ledger.unbonding.get(a, 0)
            if pending == 0 or now + MARGIN_S < ready:
                with pytest.raises(RegistryNotWithdrawable):
                    provider.client.withdraw_stake()
            elif now >= ready:
                assert provider.client.withdraw_stake() == pending
                self.ledger.stakes[a] -= pending
                self.ledger.unbonding[a] = 0
                self._move(self.registry, a, pending)

        # --- orders ----------------------------------------------------------------------

        @rule(
            target=offers,
            p=st.sampled_from(PROVIDERS),
            gpus=st.integers(1, 8),
            price=st.integers(1, 50),
            lo=st.integers(1, 500),
            span=st.integers(0, 2000),
        )
        def offer(self, p: int, gpus: int, price: int, lo: int, span: int) -> Signed[Offer]:
            self._step()
            return self.providers[p].offer(
                MODEL, gpus=gpus, memory_gib=80, price_per_gpu_second=price,
                min_duration=lo, max_duration=lo + span, ttl_s=10**9,
            )  # fmt: skip

        @rule(
            target=bids,
            lab=st.sampled_from(LABS),
            gpus=st.integers(1, 8),
            price=st.integers(1, 50),
            duration=st.integers(1, 2500),
        )
        def bid(self, lab: int, gpus: int, price: int, duration: int) -> Signed[Bid]:
            self._step()
            return self.labs[lab].bid(
                MODEL, gpus=gpus, max_price_per_gpu_second=price, duration=duration, ttl_s=10**9
            )

        @rule(order=st.one_of(offers, bids))
        def cancel(self, order: Signed[Offer] | Signed[Bid]) -> None:
            self._step()
            m = order.message
            party = (
                self.providers[_index(self.providers, m.provider)]
                if isinstance(m, Offer)
                else self.labs[_index(self.labs, m.lab)]
            )
            self.ledger.cancelled.add(party.cancel(order))

        @rule(
            target=leases,
            p=st.sampled_from(PROVIDERS),
            lab=st.sampled_from(LABS),
            gpus=st.integers(1, 8),
            price=st.integers(1, 50),
            duration=st.integers(1, 3000),
        )
        def trade(self, p: int, lab: int, gpus: int, price: int, duration: int) -> Lease | None:
            """A crossing pair, the common case: an offer and a bid that fit, opened at once."""
            self._step()
            offer = self.providers[p].offer(
                MODEL, gpus=gpus + 1, memory_gib=80, price_per_gpu_second=price,
                min_duration=1, max_duration=duration, ttl_s=10**9,
            )  # fmt: skip
            bid = self.labs[lab].bid(
                MODEL, gpus=gpus, max_price_per_gpu_second=price + 1, duration=duration, ttl_s=10**9
            )
            return self._open(offer, bid, gpus)

        @rule(target=leases, offer=offers, bid=bids, gpus=st.integers(1, 8))
        def open_lease(self, offer: Signed[Offer], bid: Signed[Bid], gpus: int) -> Lease | None:
            self._step()
            return self._open(offer, bid, gpus)

        def _open(self, offer: Signed[Offer], bid: Signed[Bid], gpus: int) -> Lease | None:
            o, b = offer.message, bid.message
            domain = self.reader.domain
            oh, bh = order_hash(domain, o), order_hash(domain, b)
            lab = self.labs[_index(self.labs, b.lab)]
            expected: type[Exception] | None = None
            if not o.min_duration <= b.duration <= o.max_duration:
                expected = MarketDurationOutOfRange
            elif o.price_per_gpu_second > b.max_price_per_gpu_second:
                expected = MarketPriceNotCrossed
            elif oh in self.ledger.cancelled or bh in self.ledger.cancelled:
                expected = MarketOrderCancelled
            elif gpus > o.gpu_count - self.ledger.fills.get(
                oh, 0
            ) or gpus > b.gpu_count - self.ledger.fills.get(bh, 0):
                expected = MarketFillExceedsOrder
            elif o.provider not in self.ledger.registered:
                expected = MarketProviderNotRegistered
            elif (
                self.ledger.stakes[o.provider] - self.ledger.unbonding.get(o.provider, 0)
                < MIN_STAKE
            ):
                expected = MarketProviderStakeTooLow
            if expected is not None:
                with pytest.raises(expected):
                    lab.open(offer, bid, gpus, use_permit=False)
                return None
            lease = lab.open(offer, bid, gpus, use_permit=False)
            assert lease.gpus == gpus
            assert lease.price_per_gpu_second == o.price_per_gpu_second
            self.ledger.fills[oh] = self.ledger.fills.get(oh, 0) + gpus
            self.ledger.fills[bh] = self.ledger.fills.get(bh, 0) + gpus
            self.ledger.leases[lease.id] = LeaseModel(lease, end=lease.start + lease.duration)
            self._move(lease.lab, self.market, lease.escrow)
            return lease

        # --- payment and end of leases ---------------------------------------------------

        @rule(lease=leases, extra=st.integers(0, 100_000))
        def claim(self, lease: Lease | None, extra: int) -> None:
            self._step()
            if lease is None:
                return
            model = self.ledger.leases[lease.id]
            lab = self.labs[_index(self.labs, lease.lab)]
            provider = self.providers[_index(self.providers, lease.provider)]
            cumulative = model.paid + extra
            voucher = lab.pay(lease, cumulative)
            due = min(cumulative, lease.escrow) - model.paid
            if model.status == "closed":
                with pytest.raises(MarketLeaseNotOpen):
                    provider.claim(lease, voucher)
                return
            assert provider.claim(lease, voucher) == max(due, 0)
            if due > 0:
                model.paid += due
                self.ledger.credits[lease.provider] += due

        @rule(lease=leases)
        def claim_same_voucher_twice_in_a_batch(self, lease: Lease | None) -> None:
            self._step()
            if lease is None or self.ledger.leases[lease.id].status == "closed":
                return
            model = self.ledger.leases[lease.id]
            lab = self.labs[_index(self.labs, lease.lab)]
            provider = self.providers[_index(self.providers, lease.provider)]
            voucher = lab.pay(lease, model.paid + 1)
            result = provider.claim_all([(lease, voucher), (lease, voucher)])
            if model.paid < lease.escrow:
                assert result.paid == {lease.id: 1}
                assert result.skipped == {lease.id: "MarketNothingToClaim"}
                model.paid += 1
                self.ledger.credits[lease.provider] += 1
            else:
                assert result.paid == {}

        @rule(lease=leases, extra=st.integers(0, 50_000))
        def terminate(self, lease: Lease | None, extra: int) -> None:
            self._step()
            if lease is None:
                return
            model = self.ledger.leases[lease.id]
            lab = self.labs[_index(self.labs, lease.lab)]
            now = self.reader.chain_time()
            if model.status != "active":
                with pytest.raises(MarketLeaseNotOpen):
                    lab.terminate(lease, model.paid + extra)
                return
            if now + MARGIN_S >= model.end:
                if now >= model.end:
                    with pytest.raises(MarketLeaseEnded):
                        lab.terminate(lease, model.paid + extra)
                return
            lab.terminate(lease, model.paid + extra)
            state = lab.client.lease_state(lease.id)
            due = min(model.paid + extra, lease.escrow) - model.paid
            model.status, model.end = "terminated", state.end
            if due > 0:
                model.paid += due
                self.ledger.credits[lease.provider] += due

        @rule(lease=leases, by_provider=st.booleans())
        def close(self, lease: Lease | None, by_provider: bool) -> None:
            self._step()
            if lease is None:
                return
            model = self.ledger.leases[lease.id]
            party = (
                self.providers[_index(self.providers, lease.provider)]
                if by_provider
                else self.labs[_index(self.labs, lease.lab)]
            )
            if model.status == "closed":
                assert party.close(lease) == 0  # idempotent: nothing sent
                return
            now = self.reader.chain_time()
            closes_at = model.end + CLAIM_WINDOW
            if not by_provider and now + MARGIN_S < closes_at:
                with pytest.raises(MarketClaimWindowOpen):
                    party.close(lease)
                return
            if not by_provider and now < closes_at:
                return  # too close to the boundary to predict
            refund = lease.escrow - model.paid
            assert party.close(lease) == refund
            model.status = "closed"
            self.ledger.credits[lease.lab] += refund

        @rule(who=st.sampled_from(PROVIDERS + LABS))
        def withdraw(self, who: int) -> None:
            self._step()
            party = self.providers[who] if who in self.providers else self.labs[who]
            credit = self.ledger.credits[party.address]
            if credit == 0:
                # The client sends nothing; the contract itself refuses with the account named.
                assert party.withdraw() == 0
                with pytest.raises(MarketNothingToWithdraw) as info:
                    party.client._send(party.client.market, "withdraw")
                assert info.value.account == party.address
                return
            assert party.withdraw() == credit
            self.ledger.credits[party.address] = 0
            self._move(self.market, party.address, credit)

        @rule(seconds=st.sampled_from([1, 60, 600, 3600, CLAIM_WINDOW + 2500, UNBONDING_DELAY]))
        def advance_time(self, seconds: int) -> None:
            self._step()
            devnet.increase_time(seconds)
            devnet.mine()

        # --- the ledger --------------------------------------------------------------------

        def _move(self, frm: str, to: str, amount: int) -> None:
            self.ledger.balances[frm] -= amount
            self.ledger.balances[to] += amount

        @invariant()
        def balances_and_credits_match_the_model(self) -> None:
            for addr, expected in self.ledger.balances.items():
                assert self.reader.balance_of(addr) == expected, addr
            for addr, expected in self.ledger.credits.items():
                assert self.reader.withdrawable(addr) == expected, addr
            assert sum(self.ledger.balances.values()) == self.supply  # tokens are conserved

        @invariant()
        def market_holds_what_open_leases_still_owe_plus_every_credit(self) -> None:
            owed = sum(
                m.lease.escrow - m.paid for m in self.ledger.leases.values() if m.status != "closed"
            )
            assert self.ledger.balances[self.market] == owed + sum(self.ledger.credits.values())
            assert self.ledger.balances[self.registry] == sum(self.ledger.stakes.values())

        @invariant()
        @precondition(lambda self: bool(self.ledger.leases))
        def lease_state_matches_the_model(self) -> None:
            for lease_id, model in self.ledger.leases.items():
                state = self.reader.lease_state(lease_id)
                assert state.paid == model.paid <= model.lease.escrow
                assert state.status.name.lower() == model.status

    return MarketMachine


def _index(parties: dict[int, Provider] | dict[int, Lab], address: str) -> int:
    return next(i for i, p in parties.items() if p.address == address)


def _run(devnet: Devnet, contracts: Contracts, examples: int, steps_per_example: int) -> int:
    steps = [0]
    machine = make_machine(devnet, contracts, steps)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps_per_example,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    return steps[0]


def test_ledger_model_holds_over_random_market_activity(
    devnet: Devnet, deployed: Contracts
) -> None:
    steps = _run(devnet, deployed, examples=50, steps_per_example=60)
    assert steps >= 2000, f"only {steps} steps ran"


@pytest.mark.slow
def test_ledger_model_holds_over_a_long_run(devnet: Devnet, deployed: Contracts) -> None:
    steps = _run(devnet, deployed, examples=300, steps_per_example=100)
    assert steps >= 20_000, f"only {steps} steps ran"
