"""Order books and matching: pure Python, no web3.

    verify_orders  -> VerifiedOrder   signatures checked in bulk through the fast path
    OrderBook      price-time priority per GPU model, continuous matching, fills as openLease args
    explain        why an order does not match, with numbers, and the nearest change that would
    run_auction    a periodic uniform-price call auction per GPU model

The lab SDK, the provider agent and the relay all use these, so their answers cannot drift.
"""

from market.matching.auction import Clearing, clearing_price, run_auction
from market.matching.book import Fill, OrderBook, Resting, StakeView, fits
from market.matching.constraints import (
    NO_REQUIREMENTS,
    Attributes,
    Constraint,
    Requirements,
)
from market.matching.explain import Change, Explanation, Reason, ReasonCode, explain
from market.matching.verified import (
    Rejected,
    Submission,
    VerifiedOrder,
    verify_order,
    verify_orders,
)

__all__ = [
    "NO_REQUIREMENTS",
    "Attributes",
    "Change",
    "Clearing",
    "Constraint",
    "Explanation",
    "Fill",
    "OrderBook",
    "Reason",
    "ReasonCode",
    "Rejected",
    "Requirements",
    "Resting",
    "StakeView",
    "Submission",
    "VerifiedOrder",
    "clearing_price",
    "explain",
    "fits",
    "run_auction",
    "verify_order",
    "verify_orders",
]
