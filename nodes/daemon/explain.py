"""Why an order does not match, as one ``no_match`` log event (the provider's offers and the
lab's bids alike).

    log_no_match(log, order_hash, explanation)
    # no_match order=0x.. reasons=price_not_crossed price_not_crossed.best_bid=4 ...

The reasons are the matcher's :class:`~market.matching.explain.ReasonCode` values, so a daemon's
log and a relay's ``explain`` answer name the same things the same way.
"""

from __future__ import annotations

from market.matching.explain import Explanation
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


def log_no_match(log: EventLogger, order_hash: bytes, explanation: Explanation) -> None:
    """``no_match`` with the explanation's fields (nothing is logged for a matchable order)."""
    if not explanation.matchable:
        log.info("no_match", order=order_hash, **explanation_fields(explanation))


__all__ = ["explanation_fields", "log_no_match"]
