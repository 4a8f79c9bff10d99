"""explain()'s checks of one counter-order, and its words for the signed terms.

:func:`failures` tests every check the contract's pair check makes
(:func:`market.matching.constraints.unfit`), each on its own so that explain() can tell an order
blocked by one term alone (and offer the change of that field) from one blocked by several;
:func:`bid_term_reasons` and :func:`offer_term_reasons` put the hardware and billing terms into
reasons with their numbers, from the bid's and from the offer's side.
"""

from __future__ import annotations

from collections.abc import Iterable

from market.matching.book import Resting
from market.matching.constraints import LANE_BITS, LANES, VOCABULARY
from market.matching.reasons import Change, Reason, ReasonCode
from market.protocol.types import Bid, Billing, Offer

_ELIGIBLE = ReasonCode.COUNTERPARTY_NOT_ELIGIBLE
_DURATION = ReasonCode.DURATION_OUT_OF_RANGE
_MEMORY = ReasonCode.MEMORY_TOO_SMALL
_BANDWIDTH = ReasonCode.BANDWIDTH_TOO_LOW
_MISSING = ReasonCode.FEATURES_MISSING
_LANE = ReasonCode.FEATURE_NOT_ACCEPTED
_BILLING = ReasonCode.BILLING_NOT_OFFERED
_ARBITER = ReasonCode.ARBITER_MISMATCH
_MIN_CHARGE = ReasonCode.MIN_CHARGE_TOO_HIGH
_PRICE = ReasonCode.PRICE_NOT_CROSSED
_LANE_MASK = (1 << LANE_BITS) - 1

Checked = list[tuple[Resting, list[ReasonCode]]]
"""Counter-orders examined, each with the checks it fails."""


def unaccepted_lanes(offer: Offer, bid: Bid) -> list[int]:
    """Every lane where ``bid`` accepts values and ``offer`` has none of them, lowest first (the
    contract reports the first: :func:`market.matching.constraints.unaccepted_lane`)."""
    accepted = bid.accepted_features
    if not accepted:
        return []
    lanes = []
    for lane in range(LANES):
        shift = lane * LANE_BITS
        wanted = accepted >> shift & _LANE_MASK
        if wanted and not wanted & offer.features >> shift:
            lanes.append(lane)
    return lanes


def failures(offer: Offer, bid: Bid, eligible: bool) -> list[ReasonCode]:
    """Every check ``offer`` fails for ``bid``, in the contract's order (the terms are
    :func:`~market.matching.constraints.unfit`'s checks, each tested on its own), then price."""
    failed = []
    if not eligible:
        failed.append(_ELIGIBLE)
    if not offer.min_duration <= bid.duration <= offer.max_duration:
        failed.append(_DURATION)
    if offer.memory_gib < bid.min_memory_gib:
        failed.append(_MEMORY)
    if offer.bandwidth_gbps < bid.min_bandwidth_gbps:
        failed.append(_BANDWIDTH)
    if bid.required_features & ~offer.features:
        failed.append(_MISSING)
    if unaccepted_lanes(offer, bid):
        failed.append(_LANE)
    if not offer.accepts(bid.billing):
        failed.append(_BILLING)
    if offer.arbiter != bid.arbiter:
        failed.append(_ARBITER)
    if offer.min_charge_bps > bid.max_min_charge_bps:
        failed.append(_MIN_CHARGE)
    if offer.price_per_gpu_second > bid.max_price_per_gpu_second:
        failed.append(_PRICE)
    return failed


def blocked_by(
    checked: Iterable[tuple[Resting, list[ReasonCode]]],
) -> dict[ReasonCode, list[Resting]]:
    blocked: dict[ReasonCode, list[Resting]] = {}
    for entry, failed in checked:
        for check in failed:
            blocked.setdefault(check, []).append(entry)
    return blocked


def blocked_only_by(
    checked: Iterable[tuple[Resting, list[ReasonCode]]], check: ReasonCode
) -> list[Resting]:
    """Counter-orders that fail ``check`` and nothing else."""
    return [entry for entry, failed in checked if failed == [check]]


def bid_term_reasons(
    bid: Bid,
    checked: Checked,
    blocked: dict[ReasonCode, list[Resting]],
    reasons: list[Reason],
    changes: list[Change],
) -> None:
    """The hardware and billing reasons of a bid, and the change of its own field that lets the
    nearest offers blocked by that term alone serve it."""
    _dispute_reasons(bid, blocked, reasons)
    # The two minimums a bid signs: (reason, the bid's field, the offer's field, unit, detail).
    minimums = (
        (_MEMORY, "min_memory_gib", "memory_gib", "GiB", "max_offered_gib"),
        (_BANDWIDTH, "min_bandwidth_gbps", "bandwidth_gbps", "Gbps", "max_offered_gbps"),
    )
    for code, need_field, have_field, unit, detail in minimums:
        if code not in blocked:
            continue
        need = getattr(bid, need_field)
        most = max(getattr(offer_of(o), have_field) for o in blocked[code])
        reasons.append(
            Reason(
                code,
                f"you need {need} {unit} per GPU; {len(blocked[code])} offers have less, "
                f"at most {most} {unit}",
                {need_field: need, detail: most},
            )
        )
        if only := blocked_only_by(checked, code):
            best = max(getattr(offer_of(o), have_field) for o in only)
            changes.append(Change(need_field, need, best))
    if _MISSING in blocked:
        missing = 0
        for o in blocked[_MISSING]:
            missing |= bid.required_features & ~offer_of(o).features
        reasons.append(
            Reason(
                _MISSING,
                f"{len(blocked[_MISSING])} offers lack features you require: "
                f"{features_text(missing)}",
                {
                    "offers": len(blocked[_MISSING]),
                    "required_features": bid.required_features,
                    "missing_features": missing,
                    "missing": features_text(missing),
                },
            )
        )
        if only := blocked_only_by(checked, _MISSING):
            nearest = min(
                only, key=lambda o: ((bid.required_features & ~offer_of(o).features).bit_count(),
                                     o.price, o.seq),
            )  # fmt: skip
            kept = bid.required_features & offer_of(nearest).features
            changes.append(Change("required_features", bid.required_features, kept))
    if _LANE in blocked:
        reasons.append(_lane_reason(bid, blocked[_LANE], "offers"))
        if only := blocked_only_by(checked, _LANE):
            nearest = min(
                only, key=lambda o: (len(unaccepted_lanes(offer_of(o), bid)), o.price, o.seq)
            )
            offer = offer_of(nearest)
            add = sum(
                offer.features & _LANE_MASK << lane * LANE_BITS
                for lane in unaccepted_lanes(offer, bid)
            )
            changes.append(
                Change("accepted_features", bid.accepted_features, bid.accepted_features | add)
            )
    if _BILLING in blocked:
        n = len(blocked[_BILLING])
        modes = 0
        for o in blocked[_BILLING]:
            modes |= offer_of(o).billing_modes
        reasons.append(
            Reason(
                _BILLING,
                f"you bill {_mode_names(1 << bid.billing)}; {n} offers do not accept it, they "
                f"accept {_mode_names(modes)}",
                {"billing": int(bid.billing), "offers": n, "billing_modes": modes},
            )
        )
        if only := blocked_only_by(checked, _BILLING):
            cheapest = offer_of(min(only, key=lambda o: (o.price, o.seq)))
            mode = next(m for m in Billing if cheapest.accepts(m))
            changes.append(Change("billing", int(bid.billing), int(mode)))


def offer_term_reasons(
    offer: Offer,
    checked: Checked,
    blocked: dict[ReasonCode, list[Resting]],
    reasons: list[Reason],
    changes: list[Change],
) -> None:
    """The hardware and billing reasons of an offer. Its hardware is what it is, so the only
    change offered is to accept the billing modes that bids blocked by billing alone ask."""
    _dispute_reasons(offer, blocked, reasons)
    if _MEMORY in blocked:
        need = min(bid_of(b).min_memory_gib for b in blocked[_MEMORY])
        reasons.append(
            Reason(
                _MEMORY,
                f"{len(blocked[_MEMORY])} bids need more than your {offer.memory_gib} GiB per "
                f"GPU, the least of them {need} GiB",
                {"memory_gib": offer.memory_gib, "least_needed_gib": need},
            )
        )
    if _BANDWIDTH in blocked:
        need = min(bid_of(b).min_bandwidth_gbps for b in blocked[_BANDWIDTH])
        reasons.append(
            Reason(
                _BANDWIDTH,
                f"{len(blocked[_BANDWIDTH])} bids need more than your {offer.bandwidth_gbps} "
                f"Gbps per GPU, the least of them {need} Gbps",
                {"bandwidth_gbps": offer.bandwidth_gbps, "least_needed_gbps": need},
            )
        )
    if _MISSING in blocked:
        missing = 0
        for b in blocked[_MISSING]:
            missing |= bid_of(b).required_features & ~offer.features
        reasons.append(
            Reason(
                _MISSING,
                f"{len(blocked[_MISSING])} bids require features you do not offer: "
                f"{features_text(missing)}",
                {
                    "bids": len(blocked[_MISSING]),
                    "features": offer.features,
                    "missing_features": missing,
                    "missing": features_text(missing),
                },
            )
        )
    if _LANE in blocked:
        reasons.append(_lane_reason(offer, blocked[_LANE], "bids"))
    if _BILLING in blocked:
        wanted = 0
        for b in blocked[_BILLING]:
            wanted |= 1 << bid_of(b).billing
        reasons.append(
            Reason(
                _BILLING,
                f"{len(blocked[_BILLING])} bids bill {_mode_names(wanted)}; you accept "
                f"{_mode_names(offer.billing_modes)}",
                {
                    "bids": len(blocked[_BILLING]),
                    "billing_modes": offer.billing_modes,
                    "wanted_modes": wanted,
                },
            )
        )
        if only := blocked_only_by(checked, _BILLING):
            add = sum({1 << bid_of(b).billing for b in only})
            changes.append(Change("billing_modes", offer.billing_modes, offer.billing_modes | add))


def _dispute_reasons(
    order: Offer | Bid, blocked: dict[ReasonCode, list[Resting]], reasons: list[Reason]
) -> None:
    """arbiter_mismatch and min_charge_too_high, from either side: how many counter-orders name
    another arbiter, or ask (offer) or accept (bid) another minimum charge."""
    others = "offers" if isinstance(order, Bid) else "bids"
    if _ARBITER in blocked:
        n = len(blocked[_ARBITER])
        reasons.append(
            Reason(
                _ARBITER,
                f"{n} {others} name another arbiter than yours ({order.arbiter})",
                {others: n, "arbiter": order.arbiter},
            )
        )
    if _MIN_CHARGE in blocked:
        n = len(blocked[_MIN_CHARGE])
        if isinstance(order, Bid):
            least = min(offer_of(o).min_charge_bps for o in blocked[_MIN_CHARGE])
            text = f"{n} offers charge a minimum above your {order.max_min_charge_bps} bps, "
            text += f"the least {least} bps"
            values: dict[str, int | str] = {"max_min_charge_bps": order.max_min_charge_bps}
        else:
            least = max(bid_of(b).max_min_charge_bps for b in blocked[_MIN_CHARGE])
            text = f"{n} bids accept less than your minimum charge of {order.min_charge_bps} "
            text += f"bps, the most {least} bps"
            values = {"min_charge_bps": order.min_charge_bps}
        reasons.append(Reason(_MIN_CHARGE, text, {**values, others: n, "nearest_bps": least}))


def _lane_reason(order: Offer | Bid, blocked: list[Resting], others: str) -> Reason:
    """feature_not_accepted, from either side: the first lane (the one the contract names) of
    the nearest blocked counter-order, with the values accepted there and those offered."""
    nearest = blocked[0]
    offer, bid = (
        (order, bid_of(nearest)) if isinstance(order, Offer) else (offer_of(nearest), order)
    )
    lane = unaccepted_lanes(offer, bid)[0]
    shift = lane * LANE_BITS
    accepted = bid.accepted_features >> shift & _LANE_MASK
    offered = offer.features >> shift & _LANE_MASK
    attribute = _lane_attribute(lane)
    n = len(blocked)
    mine, theirs = (offered, accepted) if isinstance(order, Offer) else (accepted, offered)
    message = (
        f"{n} {others} accept none of your {attribute} values ({_lane_values(lane, mine)}); "
        f"the nearest accepts {_lane_values(lane, theirs)}"
        if isinstance(order, Offer)
        else f"{n} {others} have none of the {attribute} values you accept "
        f"({_lane_values(lane, mine)}); the nearest has {_lane_values(lane, theirs)}"
    )
    return Reason(
        _LANE,
        message,
        {
            others: n,
            "lane": lane,
            "attribute": attribute,
            "accepted": accepted,
            "offered": offered,
            "accepted_values": _lane_values(lane, accepted),
            "offered_values": _lane_values(lane, offered),
        },
    )


def features_text(bits: int) -> str:
    """``attribute=value,value; ...`` for a features word (a value outside the vocabulary as
    ``bit N`` of its lane, a lane outside it as ``lane N``)."""
    parts = []
    for lane in range(LANES):
        lane_bits = bits >> lane * LANE_BITS & _LANE_MASK
        if lane_bits:
            parts.append(f"{_lane_attribute(lane)}={_lane_values(lane, lane_bits)}")
    return "; ".join(parts) or "none"


def _lane_attribute(lane: int) -> str:
    return next((a for a, (k, _) in VOCABULARY.items() if k == lane), f"lane {lane}")


def _lane_values(lane: int, bits: int) -> str:
    """The value names of one lane's 16 bits, ``none`` when zero."""
    names = next((values for k, values in VOCABULARY.values() if k == lane), ())
    out = [names[i] if i < len(names) else f"bit {i}" for i in range(LANE_BITS) if bits >> i & 1]
    return ",".join(out) or "none"


def _mode_names(modes: int) -> str:
    return ",".join(m.name.lower() for m in Billing if modes >> m & 1) or "none"


def offer_of(entry: Resting) -> Offer:
    m = entry.message
    assert isinstance(m, Offer)
    return m


def bid_of(entry: Resting) -> Bid:
    m = entry.message
    assert isinstance(m, Bid)
    return m


__all__ = [
    "Checked",
    "bid_of",
    "bid_term_reasons",
    "blocked_by",
    "failures",
    "features_text",
    "offer_of",
    "offer_term_reasons",
    "blocked_only_by",
    "unaccepted_lanes",
]
