"""A periodic uniform-price call auction per GPU model, beside the continuous mode.

Orders of a period are added to the book without matching (:meth:`OrderBook.add`); at the end
of the period :func:`run_auction` clears each GPU model at once. The rule, also written out in
``docs/matching.md``:

1. Demand at price p, D(p), is the GPUs of live bids whose max price is >= p; supply S(p) is the
   GPUs of live offers from eligible providers whose price is <= p. Candidate prices are the
   prices of the orders themselves.
2. At each candidate price, bids priced >= p take GPUs in price-time priority (dearest first,
   earliest first at a price) from offers priced <= p in price-time priority (cheapest first),
   respecting each pair's fit (every signed term, as ``Market`` checks it:
   :func:`~market.matching.constraints.unfit`) and all-or-none bids (the bid's signed
   ``allOrNone``): an all-or-none bid that cannot be filled whole at p drops out, and the
   allocation is made again without it, so it never blocks the others. The side that is long
   is rationed by that priority.
3. The clearing price p* is the candidate whose allocation trades the most GPUs. Ties go to the
   larger volume min(D(p), S(p)), then the smallest imbalance |D(p) - S(p)|, then the lowest
   price (buyers keep the surplus). Since min(D(p), S(p)) bounds what p can trade, prices are
   tried in that order and the search stops once no later one can do better.

Each fill's offer price is <= p* <= its bid's max price, and ``MarketClient.open_lease_auction``
opens a clearing's fills in one transaction at p* itself: the contract checks p* against every
matched ask and bid maximum, and all-or-none bids whole, so no lab pays above its maximum and no
provider below its ask. What the uniform price decides is *who* trades: the orders on the right
side of p* that fit, as many GPUs as any single price can trade.
"""

from __future__ import annotations

from dataclasses import dataclass

from market.matching.book import Fill, OrderBook, Resting, fits


@dataclass(frozen=True, slots=True)
class Clearing:
    """The outcome of one GPU model's auction. ``price`` is None when nothing crossed."""

    model: str
    price: int | None
    volume: int  # min(D(p*), S(p*)): GPUs the price admits
    demand: int
    supply: int
    fills: tuple[Fill, ...]

    @property
    def filled(self) -> int:
        return sum(f.gpus for f in self.fills)


def clearing_price(
    offers: list[tuple[int, int]], bids: list[tuple[int, int]]
) -> tuple[int, int, int, int] | None:
    """(p*, volume, demand, supply) for offers and bids given as (price, GPUs), or None when no
    price trades anything: rules 1 and 2 on prices and quantities alone."""
    candidates = candidate_prices(offers, bids)
    return candidates[0] if candidates else None


def candidate_prices(
    offers: list[tuple[int, int]], bids: list[tuple[int, int]]
) -> list[tuple[int, int, int, int]]:
    """Every price that admits some volume, as (p, volume, demand, supply), best first by rule 2:
    the largest volume, then the smallest imbalance, then the lowest price."""
    offers = sorted(offers)
    bids = sorted(bids)
    demand_total = sum(q for _, q in bids)
    found: list[tuple[tuple[int, int, int], tuple[int, int, int, int]]] = []
    supply = below = 0  # GPUs offered at <= p; GPUs bid at < p
    i = j = 0
    for p in sorted({price for price, _ in offers} | {price for price, _ in bids}):
        while i < len(offers) and offers[i][0] <= p:
            supply += offers[i][1]
            i += 1
        while j < len(bids) and bids[j][0] < p:
            below += bids[j][1]
            j += 1
        demand = demand_total - below
        volume = min(demand, supply)
        if volume == 0:
            continue
        found.append(((-volume, abs(demand - supply), p), (p, volume, demand, supply)))
    return [candidate for _, candidate in sorted(found)]


def run_auction(book: OrderBook, now: int, models: list[str] | None = None) -> list[Clearing]:
    """Clear every GPU model (or ``models``) of ``book`` at its uniform price; the fills are
    reserved in the book like continuous fills (settle or release them)."""
    return [_clear(book, model, now) for model in (models or book.models())]


def _clear(book: OrderBook, model: str, now: int) -> Clearing:
    offers = [o for o in book.offers(model, now) if book.eligible(o.signer)]
    bids = list(book.bids(model, now))
    candidates = candidate_prices(
        [(o.price, o.remaining) for o in offers], [(b.price, b.remaining) for b in bids]
    )
    best: tuple[int, tuple[int, int, int, int], list[tuple[Resting, Resting, int]]] | None = None
    for candidate in candidates:
        price, volume = candidate[0], candidate[1]
        if best is not None and volume <= best[0]:
            break  # volume bounds what any later price can trade: none can beat the best
        sellers = [o for o in offers if o.price <= price]  # cheapest first, earliest first
        plan = _plan_whole(sellers, [b for b in bids if b.price >= price])
        traded = sum(gpus for _, _, gpus in plan)
        if traded > 0 and (best is None or traded > best[0]):
            best = (traded, candidate, plan)
    if best is None:
        return Clearing(model, None, 0, 0, 0, ())
    _, (price, volume, demand, supply), plan = best
    fills = tuple(book.reserve(offer, bid, gpus) for offer, bid, gpus in plan)
    return Clearing(model, price, volume, demand, supply, fills)


def _plan_whole(
    sellers: list[Resting], buyers: list[Resting]
) -> list[tuple[Resting, Resting, int]]:
    """The allocation at one price (rule 3), all-or-none bids that cannot fill whole dropped
    (rule 4) until every remaining one does."""
    while True:
        plan, unfilled = _plan(sellers, buyers)
        if not unfilled:
            return plan
        buyers = [b for b in buyers if b not in unfilled]


def _plan(
    sellers: list[Resting], buyers: list[Resting]
) -> tuple[list[tuple[Resting, Resting, int]], list[Resting]]:
    """Allocate in priority order: (offer, bid, GPUs) triples, and the all-or-none bids that
    could not be filled whole."""
    left = {id(o): o.remaining for o in sellers}
    plan: list[tuple[Resting, Resting, int]] = []
    unfilled: list[Resting] = []
    for bid in buyers:
        want = bid.remaining
        takes: list[tuple[Resting, Resting, int]] = []
        for offer in sellers:
            if left[id(offer)] == 0 or not fits(offer, bid):
                continue
            take = min(left[id(offer)], want)
            takes.append((offer, bid, take))
            want -= take
            if want == 0:
                break
        if want > 0 and bid.all_or_none:
            unfilled.append(bid)
            continue
        for offer, _, take in takes:
            left[id(offer)] -= take
        plan.extend(takes)
    return plan, unfilled


__all__ = ["Clearing", "candidate_prices", "clearing_price", "run_auction"]
