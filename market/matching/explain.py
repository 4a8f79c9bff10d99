"""Why an order does not match, with the numbers behind each reason and the nearest fix.

    explanation = explain(book, bid.message, now)
    for reason in explanation.reasons:   # e.g. price_not_crossed: best ask 5 > your max 4
        print(reason)
    for change in explanation.changes:   # e.g. max_price_per_gpu_second 4 -> 5
        print(change)

The lab SDK (dry run before signing), the provider agent ("why did I not match") and the relay
all call this one function on the same :class:`~market.matching.book.OrderBook`, so their answers
cannot drift. Each counter-order of the same GPU model that the order's price reaches, and the
nearest ones beyond it in price order (see ``HORIZON``), is checked on every signed term the
contract checks (:func:`market.matching.constraints.unfit`, one reason code per ``Market`` error:
:data:`REASON_OF`) and on its provider's eligibility; a reason is listed when it blocks at least
one of them, and a :class:`Change` is offered for every single field of the order whose change
alone would make it match (fully, where GPUs exist for that). A change's ``field`` is the order's
own field name, so ``dataclasses.replace(order, **{change.field: change.suggested})`` applies it.
"""

from __future__ import annotations

from market.matching.book import OrderBook, Resting
from market.matching.reasons import (
    REASON_OF,
    Change,
    Explanation,
    Reason,
    ReasonCode,
)
from market.matching.term_reasons import (
    Checked,
    bid_of,
    bid_term_reasons,
    blocked_by,
    blocked_only_by,
    failures,
    offer_of,
    offer_term_reasons,
)
from market.protocol.types import Bid, Offer

# How far past the order's price explain() looks: every counter-order the price reaches is
# examined, then the next HORIZON in price order (further while fewer GPUs than wanted fit apart
# from price, up to MAX_BEYOND). Counts in reasons are over the orders examined.
HORIZON = 64
MAX_BEYOND = 4096

_ELIGIBLE = ReasonCode.COUNTERPARTY_NOT_ELIGIBLE
_DURATION = ReasonCode.DURATION_OUT_OF_RANGE
_PRICE = ReasonCode.PRICE_NOT_CROSSED


def explain(
    book: OrderBook, order: Offer | Bid, now: int, *, order_hash: bytes | None = None
) -> Explanation:
    """Explain whether ``order`` matches ``book`` now, and if not, why and what would fix it.

    ``order`` need not be in the book (a dry run). When ``order_hash`` names a resting order,
    what remains of it is taken from the book.
    """
    resting = book.get(order_hash) if order_hash is not None else None
    own = _own_reasons(book, order, now, order_hash, resting)
    if own:
        return Explanation(False, 0, tuple(own), ())
    want = resting.remaining if resting is not None else order.gpu_count
    if isinstance(order, Bid):
        return _explain_bid(book, order, want)
    return _explain_offer(book, order, want)


def _own_reasons(
    book: OrderBook, order: Offer | Bid, now: int, h: bytes | None, resting: Resting | None
) -> list[Reason]:
    reasons = []
    if now > order.expiry:
        reasons.append(
            Reason(
                ReasonCode.ORDER_EXPIRED,
                f"expired at {order.expiry}, now is {now}",
                {"expiry": order.expiry, "now": now},
            )
        )
    signer = order.provider if isinstance(order, Offer) else order.lab
    if h is not None and book.is_cancelled(h):
        reasons.append(Reason(ReasonCode.ORDER_CANCELLED, "cancelled by its signer"))
    floor = book.min_nonce(signer)
    if order.nonce < floor:
        reasons.append(
            Reason(
                ReasonCode.NONCE_CANCELLED,
                f"nonce {order.nonce} is below the signer's floor {floor}",
                {"nonce": order.nonce, "min_nonce": floor},
            )
        )
    if resting is not None and resting.remaining <= 0:
        reasons.append(
            Reason(
                ReasonCode.ORDER_FILLED,
                f"all {resting.size} GPUs are filled or pending",
                {"size": resting.size, "filled": resting.filled, "pending": resting.pending},
            )
        )
    if isinstance(order, Offer) and not book.eligible(order.provider):
        free = book.stake_of(order.provider) if book.stake_of is not None else None
        reasons.append(
            Reason(
                ReasonCode.PROVIDER_NOT_ELIGIBLE,
                "not registered"
                if free is None
                else f"free stake {free} is below the minimum {book.min_stake}",
                {"free_stake": -1 if free is None else free, "min_stake": book.min_stake},
            )
        )
    return reasons


def _no_counterparty(book: OrderBook, model: str, side: str) -> Explanation:
    others = [m for m in book.models() if any(True for _ in getattr(book, side)(m))]
    reason = Reason(
        ReasonCode.NO_COUNTERPARTY,
        f"no {side[:-1]} of {model!r} in the book; {side} exist for {others}",
        {"model": model, "models_available": ",".join(others)},
    )
    return Explanation(False, 0, (reason,), ())


def _explain_bid(book: OrderBook, bid: Bid, want: int) -> Explanation:
    eligible: dict[str, bool] = {}
    checked: Checked = []
    fit_gpus = beyond = 0
    for o in book.offers(bid.gpu_model):
        ok = eligible.get(o.signer)
        if ok is None:
            ok = eligible[o.signer] = book.eligible(o.signer)
        failed = failures(offer_of(o), bid, ok)
        checked.append((o, failed))
        if o.price > bid.max_price_per_gpu_second:
            fit_gpus += o.remaining if failed == [_PRICE] else 0
            beyond += 1
            if beyond >= MAX_BEYOND or (beyond >= HORIZON and fit_gpus >= want):
                break
    if not checked:
        return _no_counterparty(book, bid.gpu_model, "offers")
    available = sum(o.remaining for o, failed in checked if not failed)
    reasons: list[Reason] = []
    changes: list[Change] = []
    blocked = blocked_by(checked)
    if _ELIGIBLE in blocked:
        n = len(blocked[_ELIGIBLE])
        reasons.append(
            Reason(
                _ELIGIBLE,
                f"{n} offers are from providers below the minimum stake {book.min_stake}",
                {"offers": n, "min_stake": book.min_stake},
            )
        )
    if _DURATION in blocked:
        nearest = min(
            (_clamp(bid.duration, o.min_duration, o.max_duration) for o in blocked[_DURATION]),
            key=lambda d: (abs(d - bid.duration), d),
        )
        reasons.append(
            Reason(
                _DURATION,
                f"duration {bid.duration}s is outside the range of {len(blocked[_DURATION])} "
                f"offers; the nearest accepts {nearest}s",
                {"duration": bid.duration, "nearest_duration": nearest},
            )
        )
        if blocked_only_by(checked, _DURATION):
            changes.append(Change("duration", bid.duration, nearest))
    bid_term_reasons(bid, checked, blocked, reasons, changes)
    if _PRICE in blocked:
        fitting = sorted(
            (o for o, failed in checked if failed == [_PRICE] or not failed),
            key=lambda o: (o.price, o.seq),
        )
        best_ask = min(o.price for o in blocked[_PRICE])
        reasons.append(
            Reason(
                _PRICE,
                f"best ask {best_ask} is above your max price {bid.max_price_per_gpu_second}",
                {"best_ask": best_ask, "max_price": bid.max_price_per_gpu_second},
            )
        )
        target = _price_for(fitting, want, partial_ok=not bid.all_or_none)
        if target is not None and target > bid.max_price_per_gpu_second:
            changes.append(Change("max_price_per_gpu_second", bid.max_price_per_gpu_second, target))
    at_any_price = sum(o.remaining for o, failed in checked if failed in ([], [_PRICE]))
    if available < want and (available or at_any_price < want):
        reasons.append(
            Reason(
                ReasonCode.NOT_ENOUGH_GPUS,
                f"{available} GPUs fit your bid ({at_any_price} at any price), you ask {want}",
                {"available": available, "at_any_price": at_any_price, "asked": want},
            )
        )
        if available:
            changes.append(Change("gpu_count", want, available))
    matchable = available >= want or (available > 0 and not bid.all_or_none)
    return Explanation(matchable, available, tuple(reasons), tuple(changes))


def _explain_offer(book: OrderBook, offer: Offer, want: int) -> Explanation:
    checked: Checked = []
    beyond = 0
    for b in book.bids(offer.gpu_model):
        checked.append((b, failures(offer, bid_of(b), True)))
        if b.price < offer.price_per_gpu_second:
            beyond += 1
            if beyond >= HORIZON:
                break
    if not checked:
        return _no_counterparty(book, offer.gpu_model, "bids")
    reasons: list[Reason] = []
    changes: list[Change] = []
    # An all-or-none bid larger than what this offer has cannot be filled by it alone.
    takers = [b for b, failed in checked if not failed]
    available = sum(min(b.remaining, want) for b in takers)
    blocked = blocked_by(checked)
    if _DURATION in blocked:
        durations = sorted(b.duration for b in blocked[_DURATION])
        reasons.append(
            Reason(
                _DURATION,
                f"{len(durations)} bids ask durations outside [{offer.min_duration}, "
                f"{offer.max_duration}]: from {durations[0]}s to {durations[-1]}s",
                {"shortest_bid": durations[0], "longest_bid": durations[-1]},
            )
        )
        only = blocked_only_by(checked, _DURATION)
        short = [b.duration for b in only if b.duration < offer.min_duration]
        long = [b.duration for b in only if b.duration > offer.max_duration]
        if short:
            changes.append(Change("min_duration", offer.min_duration, max(short)))
        if long:
            changes.append(Change("max_duration", offer.max_duration, min(long)))
    offer_term_reasons(offer, checked, blocked, reasons, changes)
    if _PRICE in blocked:
        best_bid = max(b.price for b in blocked[_PRICE])
        reasons.append(
            Reason(
                _PRICE,
                f"your price {offer.price_per_gpu_second} is above the best bid {best_bid}",
                {"price": offer.price_per_gpu_second, "best_bid": best_bid},
            )
        )
        only = blocked_only_by(checked, _PRICE)
        if only:
            changes.append(
                Change(
                    "price_per_gpu_second",
                    offer.price_per_gpu_second,
                    max(b.price for b in only),
                )
            )
    whole = [b for b in takers if b.all_or_none and b.remaining > want]
    if takers and len(whole) == len(takers):
        need = min(b.remaining for b in whole)
        reasons.append(
            Reason(
                ReasonCode.NOT_ENOUGH_GPUS,
                f"the fitting bids are all-or-none and need at least {need} GPUs; you offer {want}",
                {"available": want, "asked": need},
            )
        )
        changes.append(Change("gpu_count", want, need))
        available = 0
    return Explanation(available > 0, available, tuple(reasons), tuple(changes))


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(value, high))


def _price_for(offers: list[Resting], want: int, *, partial_ok: bool) -> int | None:
    """The lowest price at which ``offers`` (cheapest first) supply ``want`` GPUs; without
    enough GPUs at any price, the cheapest price when a partial fill is acceptable."""
    total = 0
    for o in offers:
        total += o.remaining
        if total >= want:
            return o.price
    return offers[0].price if offers and partial_ok else None


__all__ = ["REASON_OF", "Change", "Explanation", "Reason", "ReasonCode", "explain"]
