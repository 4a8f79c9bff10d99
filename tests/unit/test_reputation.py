"""Reputation from chain events: exact figures, order-independent folding, and a score in which a
slash always costs."""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import pytest
from eth_utils.address import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

import market.reputation
from market.chain.events import ChainEvent
from market.errors import InvalidArgument, InvalidField, ProviderNotEligible, WrongArgumentType
from market.matching import OrderBook, ReasonCode, Submission, explain, verify_orders
from market.protocol.eip712 import Domain
from market.protocol.signing import SigningKey
from market.protocol.types import Bid, Lease, Offer, Signed, checksum_address
from market.reputation import (
    SLASH_WEIGHT,
    Reputation,
    ReputationBook,
    SelectionPolicy,
    offer_in,
    rank_offers,
)

pytestmark = pytest.mark.unit

PROVIDERS = [to_checksum_address(bytes([i]) * 20) for i in (0xA1, 0xB2, 0xC3)]
LAB = to_checksum_address(b"\x1b" * 20)
MARKET = to_checksum_address(b"\xee" * 20)
GENESIS = 1_800_000_000
BLOCK_S = 12


def _time(block: int) -> int:
    return GENESIS + BLOCK_S * block


@dataclass
class History:
    """Chain events with unique positions, and their blocks' timestamps."""

    events: list[ChainEvent] = dataclasses.field(default_factory=list)
    block: int = 1
    index: int = 0
    shift: int = 0
    """Blocks this history was moved on by (its timestamps stay those of the original)."""

    def next_block(self, gap: int = 1) -> None:
        if gap:
            self.block += gap
            self.index = 0

    def add(self, name: str, **args: Any) -> ChainEvent:
        event = ChainEvent(name, args, MARKET, self.block, bytes(32), self.index)
        self.index += 1
        self.events.append(event)
        return event

    @property
    def timestamps(self) -> dict[int, int]:
        return {e.block_number: _time(e.block_number - self.shift) for e in self.events}

    def open(self, provider: str, *, price: int = 3, gpus: int = 2, salt: int = 0) -> Lease:
        start = _time(self.block - self.shift)
        lease = Lease(
            checksum_address(provider), LAB, gpus, price, start, 1000, salt.to_bytes(32, "big")
        )
        self.add("LeaseOpened", lease_id=lease.id, provider=provider, lab=LAB, lease=lease)
        return lease

    def claim(self, lease: Lease, cumulative: int, amount: int = 0) -> None:
        self.add("Claimed", lease_id=lease.id, amount=amount, cumulative_paid=cumulative)

    def slash(self, lease: Lease, penalty: int = 100) -> None:
        self.add(
            "LeaseSlashed", lease_id=lease.id, provider=lease.provider, penalty=penalty, refund=0
        )


def _fold(events: Sequence[ChainEvent], timestamps: dict[int, int]) -> list[Reputation]:
    book = ReputationBook()
    book.apply_all(events, timestamps)
    return book.reputations()


# --- exact figures ---------------------------------------------------------------------------


def _scenario() -> tuple[History, dict[str, Lease]]:
    h = History()
    p, q = PROVIDERS[0], PROVIDERS[1]
    h.add("ProviderRegistered", provider=p, stake=10)
    leases = {
        "done": h.open(p, salt=1),
        "ended": h.open(p, salt=2),
        "running": h.open(p, salt=3),
        "slashed": h.open(q, salt=4),
        "disputed": h.open(q, salt=5, price=0),
    }
    h.next_block(2)  # 24 s after opening
    h.claim(leases["done"], 60)
    h.add("ReceiptPosted", lease_id=leases["running"].id, amount=30)
    h.add("ReceiptPosted", lease_id=leases["disputed"].id, amount=0)
    h.next_block(3)  # 60 s after opening
    h.claim(leases["done"], 600)
    h.claim(leases["ended"], 90)
    h.add("LeaseTerminated", lease_id=leases["ended"].id, end=0, paid=90)
    h.add("ClaimDisputed", lease_id=leases["disputed"].id, seq=0)
    h.claim(leases["slashed"], 33)
    h.next_block()
    h.add("LeaseClosed", lease_id=leases["done"].id, paid=600, refund=5400)
    h.add("ClaimFinalized", lease_id=leases["running"].id, seq=0, amount=30)
    h.claim(leases["running"], 30)
    h.slash(leases["slashed"], penalty=500)
    h.add("LeaseClosed", lease_id=leases["disputed"].id, paid=0, refund=0)
    h.add("Withdrawn", account=p, amount=1)  # not a reputation event
    return h, leases


def test_every_figure_of_a_known_history_is_exact() -> None:
    h, _ = _scenario()
    p, q = PROVIDERS[0], PROVIDERS[1]
    assert _fold(h.events, h.timestamps) == [
        Reputation(
            provider=p,
            leases_opened=3,
            leases_completed=1,
            leases_terminated=1,
            gpu_seconds_delivered=(600 + 90 + 30) // 3,
            tokens_earned=600 + 90 + 30,
            claims_posted=1,
            claims_finalized=1,
            median_first_claim_s=24,  # first claims at 24, 60, 24 s
        ),
        Reputation(
            provider=q,
            leases_opened=2,
            leases_slashed=1,
            leases_unpaid=1,
            gpu_seconds_delivered=33 // 3,  # the price-zero lease delivers nothing measurable
            tokens_earned=33,
            claims_posted=1,
            claims_disputed=1,
            slashes=1,
            stake_slashed=500,
            median_first_claim_s=24,  # 24 s (receipt posted) and 60 s: the lower median
        ),
    ]


def test_running_leases_and_outcomes_add_up_to_leases_opened() -> None:
    h, _ = _scenario()
    p = _fold(h.events, h.timestamps)[0]
    assert (p.leases_running, p.leases_ended) == (1, 2)


def test_a_provider_without_history_has_zero_figures_and_scores_one_half() -> None:
    book = ReputationBook()
    assert book.reputation(PROVIDERS[2].lower()) == Reputation(PROVIDERS[2])
    assert Reputation(PROVIDERS[2]).score() == Fraction(1, 2)
    assert book.providers() == []
    assert book.through_block == -1


def test_lease_events_before_their_opening_count_once_it_arrives() -> None:
    h, leases = _scenario()
    closed_first = [e for e in h.events if e.name != "LeaseOpened"]
    book = ReputationBook()
    book.apply_all(closed_first, h.timestamps)
    assert book.reputation(PROVIDERS[0]).leases_opened == 0
    book.apply_all(h.events, h.timestamps)
    assert book.reputations() == _fold(h.events, h.timestamps)
    assert leases["done"].id  # the ids tie events to terms


def test_a_timed_event_without_its_timestamp_is_refused_and_not_counted() -> None:
    h, _ = _scenario()
    claimed = next(e for e in h.events if e.name == "Claimed")
    book = ReputationBook()
    with pytest.raises(InvalidArgument, match="Claimed at block 3 needs its block's timestamp"):
        book.apply(claimed)
    assert len(book) == 0
    assert book.apply(claimed, 5) is True
    assert book.apply(claimed, 5) is False  # the same position again: already counted
    assert book.apply(h.events[-1]) is False  # Withdrawn: ignored


# --- score -----------------------------------------------------------------------------------


def test_score_is_the_documented_formula() -> None:
    r = Reputation(PROVIDERS[0], 10, 6, 2, 1, 1, claims_disputed=2, slashes=1)
    assert r.score() == Fraction(6 + 1, 10 + 2) / (1 + 2 + SLASH_WEIGHT * 1)
    assert Reputation(PROVIDERS[0], 3, 3).score() == Fraction(4, 5)
    assert Reputation(PROVIDERS[0], 5).score() == Fraction(1, 2)  # running leases do not count


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("provider", PROVIDERS[0].lower(), "EIP-55"),
        ("provider", "0x12", "EIP-55"),
        ("leases_completed", -1, "int >= 0"),
        ("tokens_earned", True, "int >= 0"),
        ("median_first_claim_s", -5, "None or an int"),
        ("leases_unpaid", 2, "fewer than the 2 leases that ended"),
    ],
)
def test_reputation_refuses_impossible_figures(field: str, value: object, match: str) -> None:
    changes: dict[str, Any] = {field: value}
    with pytest.raises(InvalidField, match=match) as info:
        dataclasses.replace(Reputation(PROVIDERS[0], leases_opened=1), **changes)
    assert info.value.message_type == "Reputation"


# --- properties ------------------------------------------------------------------------------

_ACTIONS = ("claim", "post", "finalize", "dispute", "terminate", "close", "slash", "register")


@st.composite
def histories(draw: st.DrawFn) -> History:
    """Arbitrary event sequences, not necessarily ones the contract allows: the folding must be
    order-independent for any."""
    h = History()
    leases: list[Lease] = []
    for salt in range(draw(st.integers(0, 6))):
        provider = draw(st.sampled_from(PROVIDERS))
        leases.append(h.open(provider, price=draw(st.integers(0, 5)), salt=salt))
        h.next_block(draw(st.integers(0, 2)))
    for _ in range(draw(st.integers(0, 25)) if leases else 0):
        lease = draw(st.sampled_from(leases))
        action = draw(st.sampled_from(_ACTIONS))
        paid = draw(st.integers(0, 10_000))
        if action == "claim":
            h.claim(lease, paid)
        elif action == "post":
            h.add("ReceiptPosted", lease_id=lease.id, amount=paid)
        elif action == "finalize":
            h.add("ClaimFinalized", lease_id=lease.id, seq=0, amount=paid)
        elif action == "dispute":
            h.add("ClaimDisputed", lease_id=lease.id, seq=0)
        elif action == "terminate":
            h.add("LeaseTerminated", lease_id=lease.id, end=0, paid=paid)
        elif action == "close":
            h.add("LeaseClosed", lease_id=lease.id, paid=paid, refund=0)
        elif action == "slash":
            h.slash(lease, penalty=paid)
        else:
            h.add("ProviderRegistered", provider=draw(st.sampled_from(PROVIDERS)), stake=paid)
        h.next_block(draw(st.integers(0, 2)))
    return h


@settings(max_examples=200, deadline=None)
@given(h=histories(), seed=st.integers(0, 2**32), cuts=st.lists(st.integers(0, 60), max_size=4))
def test_folding_in_one_go_in_chunks_shuffled_or_twice_gives_the_same(
    h: History, seed: int, cuts: list[int]
) -> None:
    expected = _fold(h.events, h.timestamps)
    book = ReputationBook()
    bounds = [0, *sorted(c % (len(h.events) + 1) for c in cuts), len(h.events)]
    for low, high in itertools.pairwise(bounds):
        book.apply_all(h.events[low:high], h.timestamps)
        book.reputations()  # figures read between chunks change nothing
    assert book.reputations() == expected
    shuffled = list(h.events)
    random.Random(seed).shuffle(shuffled)
    assert _fold(shuffled, h.timestamps) == expected
    assert _fold(shuffled + h.events, h.timestamps) == expected  # replayed: counted once


@settings(max_examples=200, deadline=None)
@given(h=histories())
def test_figures_are_never_negative_and_outcomes_never_exceed_leases(h: History) -> None:
    for r in _fold(h.events, h.timestamps):
        figures = dataclasses.asdict(r)
        assert all(v >= 0 for k, v in figures.items() if k != "provider" and v is not None)
        assert 0 <= r.leases_running <= r.leases_opened
        assert 0 < r.score() < 1


def _renamed(h: History, provider: str, shift: int) -> History:
    """The same history with every lease moved to ``provider`` (new ids) and every event
    ``shift`` blocks on (same timestamps)."""
    ids: dict[bytes, Lease] = {}
    out = History(block=h.block + shift, shift=shift)
    for e in h.events:
        args = dict(e.args)
        if e.name == "LeaseOpened":
            lease = dataclasses.replace(args["lease"], provider=provider)
            ids[args["lease_id"]] = lease
            args |= {"lease": lease, "lease_id": lease.id, "provider": provider}
        elif "lease_id" in args:
            args["lease_id"] = ids[args["lease_id"]].id
        if "provider" in args:  # LeaseSlashed names the provider too
            args["provider"] = provider
        out.events.append(dataclasses.replace(e, args=args, block_number=e.block_number + shift))
    return out


@settings(max_examples=200, deadline=None)
@given(h=histories(), which=st.integers(0, 100), price=st.integers(0, 5))
def test_a_slash_never_lets_a_provider_outrank_an_otherwise_identical_one(
    h: History, which: int, price: int
) -> None:
    honest, cheat = PROVIDERS[0], PROVIDERS[1]
    a, b = _renamed(h, honest, 0), _renamed(h, cheat, 10_000)
    b.next_block()
    opened = [e.args["lease"] for e in b.events if e.name == "LeaseOpened"]
    if opened:
        b.slash(opened[which % len(opened)])
    else:
        b.add("LeaseSlashed", lease_id=b"\x01" * 32, provider=cheat, penalty=1, refund=0)
    book = ReputationBook()
    book.apply_all([*a.events, *b.events], {**a.timestamps, **b.timestamps})
    assert book.reputation(cheat).score() < book.reputation(honest).score()
    # ... whatever the prices: the cheaper offer of the slashed provider still ranks second
    offers = [_offer(cheat, price), _offer(honest, price + 1)]
    ranked = rank_offers(offers, book.reputations())
    assert [r.offer.provider for r in ranked] == [honest, cheat]


@given(r=st.builds(Reputation, st.sampled_from(PROVIDERS)), extra=st.integers(1, 5))
def test_more_slashes_or_disputes_always_lower_the_score(r: Reputation, extra: int) -> None:
    assert dataclasses.replace(r, slashes=r.slashes + extra).score() < r.score()
    assert dataclasses.replace(r, claims_disputed=extra).score() < r.score()


# --- selection -------------------------------------------------------------------------------

KEYS = [SigningKey(bytes([i]) * 32) for i in (1, 2, 3)]
DOMAIN = Domain(31337, MARKET)


def _offer(provider: str, price: int) -> Offer:
    return Offer(checksum_address(provider), "H100", 4, 80, price, 1, 10_000, 2**40, 1)


def _signed_offer(key: SigningKey, price: int) -> Signed[Offer]:
    return key.sign(DOMAIN, _offer(key.address, price))


def test_rank_orders_by_score_then_price_and_drops_providers_below_the_minimum() -> None:
    good, new, bad = (k.address for k in KEYS)
    reps = [Reputation(good, 4, 4), Reputation(bad, 2, 0, 2)]  # new: no history, 1/2
    offers = [_offer(bad, 1), _offer(new, 3), _offer(good, 9), _offer(new, 2)]
    ranked = rank_offers(offers, reps)
    assert [(r.offer.provider, r.offer.price_per_gpu_second) for r in ranked] == [
        (good, 9),
        (new, 2),
        (new, 3),
        (bad, 1),
    ]
    assert [r.score for r in ranked][:2] == [Fraction(5, 6), Fraction(1, 2)]
    kept = rank_offers(offers, {r.provider: r for r in reps}, min_score=Fraction(1, 2))
    assert [r.offer.provider for r in kept] == [good, new, new]


def test_offers_are_found_in_every_form_the_matcher_uses() -> None:
    signed = _signed_offer(KEYS[0], 3)
    bid = KEYS[1].sign(DOMAIN, Bid(KEYS[1].address, "H100", 2, 5, 100, 2**40, 1, bytes(32)))
    verified, _ = verify_orders(DOMAIN, [Submission(signed), Submission(bid)])
    book = OrderBook()
    entry = book.add(verified[0], now=0)
    fill = book.submit(verified[1], now=0)[0]
    for item in (signed.message, signed, Submission(signed), verified[0], entry, fill):
        assert offer_in(item) == signed.message
    with pytest.raises(WrongArgumentType, match="expected an offer, got Bid"):
        offer_in(bid)


def test_a_gated_book_refuses_and_explains_offers_of_providers_the_policy_refuses() -> None:
    cheat = KEYS[0]
    policy = SelectionPolicy.of([Reputation(cheat.address, 1, slashes=1)], min_score=0.25)
    assert not policy.accepts(cheat.address)
    assert policy.accepts(KEYS[2].address)
    book = OrderBook(stake_of=policy.gate())
    offer = verify_orders(DOMAIN, [Submission(_signed_offer(cheat, 3))])[0][0]
    with pytest.raises(ProviderNotEligible):
        book.add(offer, now=0)
    why = explain(book, offer.signed.message, 0)
    assert ReasonCode.PROVIDER_NOT_ELIGIBLE in why.codes()
    stakes: dict[str, int] = {KEYS[2].address: 7}
    gated = policy.gate(lambda provider: stakes.get(provider))
    assert gated(KEYS[2].address) == 7
    assert gated(cheat.address) is None


def test_split_fills_keeps_accepted_providers_in_order() -> None:
    bid = KEYS[2].sign(DOMAIN, Bid(KEYS[2].address, "H100", 8, 9, 100, 2**40, 1, bytes(32)))
    subs = [Submission(_signed_offer(k, p)) for k, p in ((KEYS[0], 1), (KEYS[1], 2))]
    verified, _ = verify_orders(DOMAIN, [*subs, Submission(bid)])
    book = OrderBook()
    for order in verified[:2]:
        book.add(order, now=0)
    fills = book.submit(verified[2], now=0)
    policy = SelectionPolicy.of([Reputation(KEYS[0].address, 1, slashes=1)], min_score=0.25)
    kept, refused = policy.split_fills(fills)
    assert [f.offer.message.provider for f in kept] == [KEYS[1].address]
    assert [f.offer.message.provider for f in refused] == [KEYS[0].address]


def test_package_exports_are_the_documented_ones() -> None:
    assert set(market.reputation.__all__) == {
        "READ_EVENTS",
        "SLASH_WEIGHT",
        "TIMED_EVENTS",
        "ChainLog",
        "LabRecord",
        "Ranked",
        "Reputation",
        "ReputationBook",
        "SelectionPolicy",
        "offer_in",
        "rank_offers",
    }
    assert all(hasattr(market.reputation, name) for name in market.reputation.__all__)


# --- labs' dispute records ---------------------------------------------------------------------


def _dispute_history() -> History:
    """Four disputes by LAB: one ruled for it, one ruled for the provider, one paid with its bond
    at the deadline, one settled by a slash; and one still open."""
    h = History()
    p = PROVIDERS[0]
    leases = [h.open(p, salt=i) for i in range(6)]
    h.next_block()
    for lease in leases[:5]:
        h.add("ClaimDisputed", lease_id=lease.id, lab=LAB, seq=0, bond=10)
    h.next_block()
    h.add("DisputeRuled", lease_id=leases[0].id, for_provider=False, amount=100, bond=10)
    h.add("DisputeRuled", lease_id=leases[1].id, for_provider=True, amount=100, bond=10)
    h.add("ClaimFinalized", lease_id=leases[2].id, seq=0, amount=100, bond=10)
    h.slash(leases[3])
    h.add("ClaimFinalized", lease_id=leases[5].id, seq=0, amount=100, bond=0)  # no dispute
    return h


def test_a_labs_disputes_are_counted_won_and_lost_from_the_events() -> None:
    h = _dispute_history()
    book = ReputationBook()
    book.apply_all(h.events, h.timestamps)
    record = book.lab_record(LAB.lower())
    assert record == market.reputation.LabRecord(
        LAB, leases_opened=6, disputes_opened=5, disputes_won=2, disputes_lost=2, bonds_lost=20
    )
    assert record.disputes_open == 1
    assert record.lost_share() == Fraction(2, 8)
    assert book.lab_record(PROVIDERS[0]) == market.reputation.LabRecord(PROVIDERS[0])


@given(st.randoms(use_true_random=False))
@settings(max_examples=50)
def test_a_labs_record_does_not_depend_on_event_order(rng: random.Random) -> None:
    h = _dispute_history()
    shuffled = list(h.events)
    rng.shuffle(shuffled)
    book = ReputationBook()
    book.apply_all(shuffled + shuffled[:3], h.timestamps)  # in any order, some twice
    assert book.lab_record(LAB).disputes_won == 2
    assert book.lab_record(LAB).bonds_lost == 20


def test_a_lab_record_refuses_impossible_figures() -> None:
    with pytest.raises(InvalidField):
        market.reputation.LabRecord(LAB, disputes_opened=1, disputes_won=1, disputes_lost=1)
    with pytest.raises(InvalidField):
        market.reputation.LabRecord(LAB.lower())
