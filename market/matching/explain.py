"""Why an order does not match, with the numbers behind each reason and the nearest fix.

    explanation = explain(book, bid.message, now, requirements=reqs)
    for reason in explanation.reasons:   # e.g. price_not_crossed: best ask 5 > your max 4
        print(reason)
    for change in explanation.changes:   # e.g. max_price_per_gpu_second 4 -> 5
        print(change)

The lab SDK (dry run before signing), the provider agent ("why did I not match") and the relay
all call this one function on the same :class:`~market.matching.book.OrderBook`, so their answers
cannot drift. Each counter-order of the same GPU model that the order's price reaches, and the
nearest ones beyond it in price order (see ``HORIZON``), is checked on every rule; a reason is
listed when it blocks at least one of them, and a :class:`Change` is offered for every single
field whose change alone would make the order match (fully, where GPUs exist for that).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from market.matching.book import OrderBook, Resting
from market.matching.constraints import NO_REQUIREMENTS, Attributes, Requirements
from market.protocol.types import Bid, Offer


class ReasonCode(StrEnum):
    ORDER_EXPIRED = "order_expired"
    ORDER_CANCELLED = "order_cancelled"
    NONCE_CANCELLED = "nonce_cancelled"
    ORDER_FILLED = "order_filled"
    PROVIDER_NOT_ELIGIBLE = "provider_not_eligible"
    NO_COUNTERPARTY = "no_counterparty"
    COUNTERPARTY_NOT_ELIGIBLE = "counterparty_not_eligible"
    DURATION_OUT_OF_RANGE = "duration_out_of_range"
    MEMORY_TOO_SMALL = "memory_too_small"
    ATTRIBUTES_UNMET = "attributes_unmet"
    PRICE_NOT_CROSSED = "price_not_crossed"
    NOT_ENOUGH_GPUS = "not_enough_gpus"


Value = int | str


@dataclass(frozen=True, slots=True)
class Reason:
    code: ReasonCode
    message: str
    values: Mapping[str, Value] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass(frozen=True, slots=True)
class Change:
    """Set ``field`` (a field of the order, or of its requirements) to ``suggested``."""

    field: str
    current: Value
    suggested: Value

    def __str__(self) -> str:
        return f"{self.field} {self.current} -> {self.suggested}"


@dataclass(frozen=True, slots=True)
class Explanation:
    """``matchable``: the order would fill now (at least in part, unless all-or-none)."""

    matchable: bool
    available_gpus: int
    reasons: tuple[Reason, ...]
    changes: tuple[Change, ...]

    def codes(self) -> set[ReasonCode]:
        return {r.code for r in self.reasons}


# How far past the order's price explain() looks: every counter-order the price reaches is
# examined, then the next HORIZON in price order (further while fewer GPUs than wanted fit apart
# from price, up to MAX_BEYOND). Counts in reasons are over the orders examined.
HORIZON = 64
MAX_BEYOND = 4096

# The checks a counter-order can fail, in the order they are reported.
_ELIGIBLE, _DURATION, _MEMORY, _ATTRS, _PRICE = "eligible", "duration", "memory", "attrs", "price"


def explain(
    book: OrderBook,
    order: Offer | Bid,
    now: int,
    *,
    requirements: Requirements = NO_REQUIREMENTS,
    attributes: Attributes | None = None,
    order_hash: bytes | None = None,
) -> Explanation:
    """Explain whether ``order`` matches ``book`` now, and if not, why and what would fix it.

    ``order`` need not be in the book (a dry run). When ``order_hash`` names a resting order,
    its metadata and what remains of it are taken from the book.
    """
    resting = book.get(order_hash) if order_hash is not None else None
    if resting is not None:
        requirements, attributes = resting.requirements, resting.attributes
    own = _own_reasons(book, order, now, order_hash, resting)
    if own:
        return Explanation(False, 0, tuple(own), ())
    want = resting.remaining if resting is not None else order.gpu_count
    if isinstance(order, Bid):
        return _explain_bid(book, order, want, requirements)
    return _explain_offer(book, order, want, attributes or {})


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


def _failures(
    offer: Resting, bid_duration: int, reqs: Requirements, max_price: int, eligible: bool
) -> list[str]:
    failed = []
    if not eligible:
        failed.append(_ELIGIBLE)
    if not offer.min_duration <= bid_duration <= offer.max_duration:
        failed.append(_DURATION)
    if offer.memory_gib < reqs.min_memory_gib:
        failed.append(_MEMORY)
    if reqs.constraints and not all(c.holds(offer.attributes) for c in reqs.constraints):
        failed.append(_ATTRS)
    if offer.price > max_price:
        failed.append(_PRICE)
    return failed


def _explain_bid(book: OrderBook, bid: Bid, want: int, reqs: Requirements) -> Explanation:
    eligible: dict[str, bool] = {}
    checked: list[tuple[Resting, list[str]]] = []
    fit_gpus = beyond = 0
    for o in book.offers(bid.gpu_model):
        ok = eligible.get(o.signer)
        if ok is None:
            ok = eligible[o.signer] = book.eligible(o.signer)
        failed = _failures(o, bid.duration, reqs, bid.max_price_per_gpu_second, ok)
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
    blocked = _blocked_by(checked)
    if _ELIGIBLE in blocked:
        n = len(blocked[_ELIGIBLE])
        reasons.append(
            Reason(
                ReasonCode.COUNTERPARTY_NOT_ELIGIBLE,
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
                ReasonCode.DURATION_OUT_OF_RANGE,
                f"duration {bid.duration}s is outside the range of {len(blocked[_DURATION])} "
                f"offers; the nearest accepts {nearest}s",
                {"duration": bid.duration, "nearest_duration": nearest},
            )
        )
        if _only(checked, _DURATION):
            changes.append(Change("duration", bid.duration, nearest))
    if _MEMORY in blocked:
        most = max(o.memory_gib for o in blocked[_MEMORY])
        reasons.append(
            Reason(
                ReasonCode.MEMORY_TOO_SMALL,
                f"you need {reqs.min_memory_gib} GiB per GPU; {len(blocked[_MEMORY])} offers "
                f"have less, at most {most} GiB",
                {"min_memory_gib": reqs.min_memory_gib, "max_offered_gib": most},
            )
        )
        only = _only(checked, _MEMORY)
        if only:
            best = max(o.memory_gib for o in only)
            changes.append(Change("requirements.min_memory_gib", reqs.min_memory_gib, best))
    if _ATTRS in blocked:
        unmet = sorted({str(c) for o in blocked[_ATTRS] for c in reqs.unmet(o.attributes)})
        reasons.append(
            Reason(
                ReasonCode.ATTRIBUTES_UNMET,
                f"{len(blocked[_ATTRS])} offers do not meet: {'; '.join(unmet)}",
                {"offers": len(blocked[_ATTRS]), "unmet": "; ".join(unmet)},
            )
        )
        only = _only(checked, _ATTRS)
        if only:
            fewest = min(only, key=lambda o: (len(reqs.unmet(o.attributes)), o.price, o.seq))
            drop = "; ".join(str(c) for c in reqs.unmet(fewest.attributes))
            changes.append(Change("requirements.constraints", "", f"drop {drop}"))
    if _PRICE in blocked:
        fitting = sorted(
            (o for o, failed in checked if failed == [_PRICE] or not failed),
            key=lambda o: (o.price, o.seq),
        )
        best_ask = min(o.price for o in blocked[_PRICE])
        reasons.append(
            Reason(
                ReasonCode.PRICE_NOT_CROSSED,
                f"best ask {best_ask} is above your max price {bid.max_price_per_gpu_second}",
                {"best_ask": best_ask, "max_price": bid.max_price_per_gpu_second},
            )
        )
        target = _price_for(fitting, want, partial_ok=not reqs.all_or_none)
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
    matchable = available >= want or (available > 0 and not reqs.all_or_none)
    return Explanation(matchable, available, tuple(reasons), tuple(changes))


def _explain_offer(book: OrderBook, offer: Offer, want: int, attrs: Attributes) -> Explanation:
    probe = _probe(offer, attrs)
    checked: list[tuple[Resting, list[str]]] = []
    beyond = 0
    for b in book.bids(offer.gpu_model):
        checked.append((b, _failures(probe, b.duration, b.requirements, b.price, True)))
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
    blocked = _blocked_by(checked)
    if _DURATION in blocked:
        durations = sorted(b.duration for b in blocked[_DURATION])
        reasons.append(
            Reason(
                ReasonCode.DURATION_OUT_OF_RANGE,
                f"{len(durations)} bids ask durations outside [{offer.min_duration}, "
                f"{offer.max_duration}]: from {durations[0]}s to {durations[-1]}s",
                {"shortest_bid": durations[0], "longest_bid": durations[-1]},
            )
        )
        only = _only(checked, _DURATION)
        short = [b.duration for b in only if b.duration < offer.min_duration]
        long = [b.duration for b in only if b.duration > offer.max_duration]
        if short:
            changes.append(Change("min_duration", offer.min_duration, max(short)))
        if long:
            changes.append(Change("max_duration", offer.max_duration, min(long)))
    if _MEMORY in blocked:
        need = min(b.requirements.min_memory_gib for b in blocked[_MEMORY])
        reasons.append(
            Reason(
                ReasonCode.MEMORY_TOO_SMALL,
                f"{len(blocked[_MEMORY])} bids need more than your {offer.memory_gib} GiB per "
                f"GPU, the least of them {need} GiB",
                {"memory_gib": offer.memory_gib, "least_needed_gib": need},
            )
        )
    if _ATTRS in blocked:
        unmet = sorted({str(c) for b in blocked[_ATTRS] for c in b.requirements.unmet(attrs)})
        reasons.append(
            Reason(
                ReasonCode.ATTRIBUTES_UNMET,
                f"{len(blocked[_ATTRS])} bids require: {'; '.join(unmet)}",
                {"bids": len(blocked[_ATTRS]), "unmet": "; ".join(unmet)},
            )
        )
    if _PRICE in blocked:
        best_bid = max(b.price for b in blocked[_PRICE])
        reasons.append(
            Reason(
                ReasonCode.PRICE_NOT_CROSSED,
                f"your price {offer.price_per_gpu_second} is above the best bid {best_bid}",
                {"price": offer.price_per_gpu_second, "best_bid": best_bid},
            )
        )
        only = _only(checked, _PRICE)
        if only:
            changes.append(
                Change(
                    "price_per_gpu_second",
                    offer.price_per_gpu_second,
                    max(b.price for b in only),
                )
            )
    whole = [b for b in takers if b.requirements.all_or_none and b.remaining > want]
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


def _probe(offer: Offer, attrs: Attributes) -> Resting:
    """A stand-in resting entry for an offer that is not in the book (a dry run)."""
    probe = Resting.__new__(Resting)
    probe.min_duration, probe.max_duration = offer.min_duration, offer.max_duration
    probe.memory_gib, probe.attributes = offer.memory_gib, attrs
    probe.price = offer.price_per_gpu_second
    return probe


def _blocked_by(checked: Iterable[tuple[Resting, list[str]]]) -> dict[str, list[Resting]]:
    blocked: dict[str, list[Resting]] = {}
    for entry, failed in checked:
        for check in failed:
            blocked.setdefault(check, []).append(entry)
    return blocked


def _only(checked: Iterable[tuple[Resting, list[str]]], check: str) -> list[Resting]:
    """Counter-orders that fail ``check`` and nothing else."""
    return [entry for entry, failed in checked if failed == [check]]


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


__all__ = ["Change", "Explanation", "Reason", "ReasonCode", "explain"]
