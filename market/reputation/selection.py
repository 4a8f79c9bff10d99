"""Choosing providers by reputation: a lab's hook into the matcher's offers, book and fills.

A :class:`SelectionPolicy` holds reputations (from ``RelayClient.reputation()`` or a
:class:`~market.reputation.book.ReputationBook` over ``market.chain.history``) and a minimum
:meth:`~market.reputation.figures.Reputation.score`. A provider the reputations do not name has
no history and scores 1/2. Three ways a lab uses it with ``market.matching``::

    policy = SelectionPolicy.of(report.reputations, min_score=Fraction(1, 3))

    # 1. rank what a book offers: accepted providers only, best score first, then cheapest
    for ranked in policy.rank(book.offers("H100-80GB", now)):
        ranked.item, ranked.score

    # 2. match only with accepted providers: the policy gates the book's eligibility check, so
    #    the book refuses their offers (ProviderNotEligible) and skips any already resting, and
    #    explain() says provider_not_eligible (counterparty_not_eligible from a bid's side)
    book = OrderBook(min_stake=min_stake, stake_of=policy.gate(stakes.get))

    # 3. or sort out the fills a matcher proposed, handing back the refused ones' GPUs
    kept, refused = policy.split_fills(fills)
    for fill in refused:
        book.release(fill)

:func:`rank_offers` is the same ranking without a policy object.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Generic, TypeVar

from market.errors import WrongArgumentType
from market.matching import Fill, Resting, StakeView, Submission, VerifiedOrder
from market.protocol.types import Offer, Signed, checksum_address
from market.reputation.figures import Reputation

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Ranked(Generic[T]):
    """An offer (as it was given) with its provider's reputation and score."""

    item: T
    offer: Offer
    reputation: Reputation
    score: Fraction


def offer_in(item: object) -> Offer:
    """The offer in an ``Offer``, ``Signed[Offer]``, ``Submission``, ``VerifiedOrder``,
    ``Resting`` (a book entry) or ``Fill``; TypeError for anything else (or a bid)."""
    found: object = item
    if isinstance(item, Fill):
        found = item.offer.message
    elif isinstance(item, Resting):
        found = item.order.signed.message
    elif isinstance(item, Submission | VerifiedOrder):
        found = item.signed.message
    elif isinstance(item, Signed):
        found = item.message
    if not isinstance(found, Offer):
        raise WrongArgumentType(
            "item", type(found).__name__, f"expected an offer, got {type(found).__name__}"
        )
    return found


@dataclass(frozen=True, slots=True)
class SelectionPolicy:
    """Accept providers whose score is at least ``min_score``; rank offers by score."""

    reputations: Mapping[str, Reputation]
    min_score: Fraction = Fraction(0)

    @classmethod
    def of(
        cls, reputations: Iterable[Reputation], *, min_score: Fraction | float = 0
    ) -> SelectionPolicy:
        return cls({r.provider: r for r in reputations}, Fraction(min_score))

    def reputation(self, provider: str) -> Reputation:
        """``provider``'s figures; all zero (score 1/2) when the reputations do not name it."""
        address = checksum_address(provider)
        return self.reputations.get(address) or Reputation(address)

    def accepts(self, provider: str) -> bool:
        return self.reputation(provider).score() >= self.min_score

    def rank(
        self, offers: Iterable[T], *, offer_of: Callable[[T], Offer] = offer_in
    ) -> list[Ranked[T]]:
        """Offers of accepted providers, best score first, then lowest price, then as given."""
        ranked = []
        for item in offers:
            offer = offer_of(item)
            reputation = self.reputation(offer.provider)
            score = reputation.score()
            if score >= self.min_score:
                ranked.append(Ranked(item, offer, reputation, score))
        ranked.sort(key=lambda r: (-r.score, r.offer.price_per_gpu_second))
        return ranked

    def gate(self, stake_of: StakeView | None = None) -> StakeView:
        """A ``StakeView`` for ``OrderBook(stake_of=...)``: a refused provider reads as not
        registered; an accepted one has its stake from ``stake_of`` (0 without one, which is
        eligible in a book with ``min_stake=0``)."""

        def view(provider: str) -> int | None:
            if not self.accepts(provider):
                return None
            return 0 if stake_of is None else stake_of(provider)

        return view

    def split_fills(self, fills: Iterable[Fill]) -> tuple[list[Fill], list[Fill]]:
        """(fills with accepted providers, the others), each in the order given."""
        kept: list[Fill] = []
        refused: list[Fill] = []
        for fill in fills:
            (kept if self.accepts(fill.offer.message.provider) else refused).append(fill)
        return kept, refused


def rank_offers(
    offers: Iterable[T],
    reputations: Mapping[str, Reputation] | Iterable[Reputation],
    *,
    min_score: Fraction | float = 0,
    offer_of: Callable[[T], Offer] = offer_in,
) -> list[Ranked[T]]:
    """Offers whose provider scores at least ``min_score``, best score first, then lowest price,
    then as given; ``reputations`` by provider address, or as a list."""
    policy = (
        SelectionPolicy(reputations, Fraction(min_score))
        if isinstance(reputations, Mapping)
        else SelectionPolicy.of(reputations, min_score=min_score)
    )
    return policy.rank(offers, offer_of=offer_of)


__all__ = ["Ranked", "SelectionPolicy", "offer_in", "rank_offers"]
