"""Why an order does not match, as one ``no_match`` log event (the provider's offers and the
lab's bids alike).

    log_no_match(log, order_hash, explanation)
    # no_match order=0x.. reasons=price_not_crossed price_not_crossed.best_bid=4 ...

The reasons are the matcher's :class:`~market.matching.explain.ReasonCode` values, so a daemon's
log and a relay's ``explain`` answer name the same things the same way. An order the book has
already filled (often by the time the daemon asks, since the relay matches on arrival) is not a
failure: it is logged as ``order_filled`` at debug level, never as ``no_match``.
"""

from __future__ import annotations

from market.matching.explain import Explanation, ReasonCode
from nodes.logs import EventLogger


def explanation_fields(explanation: Explanation) -> dict[str, object]:
    """Log fields for an Explanation: the reason codes, each reason's numbers prefixed by its
    code, and the single-field changes that would make the order match."""
    fields: dict[str, object] = {
        "matchable": explanation.matchable,
        "available_gpus": explanation.available_gpus,
        "reasons": ",".join(str(r.code) for r in explanation.reasons),
    }
    for reason in explanation.reasons:
        for key, value in reason.values.items():
            fields[f"{reason.code}.{key}"] = value
    if explanation.changes:
        fields["changes"] = ",".join(
            f"{c.field}:{c.current}->{c.suggested}" for c in explanation.changes
        )
    return fields


def is_filled(explanation: Explanation) -> bool:
    """Whether the explanation says the order is already filled (matched, not failed)."""
    return any(r.code is ReasonCode.ORDER_FILLED for r in explanation.reasons)


def log_no_match(log: EventLogger, order_hash: bytes, explanation: Explanation) -> None:
    """``no_match`` with the explanation's fields; nothing at info level for a matchable order
    or one already filled (``order_filled`` at debug: its lease is on its way)."""
    if is_filled(explanation):
        log.debug("order_filled", order=order_hash)
    elif not explanation.matchable:
        log.info("no_match", order=order_hash, **explanation_fields(explanation))


__all__ = ["explanation_fields", "is_filled", "log_no_match"]
