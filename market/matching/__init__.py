"""Order books and matching: pure Python, no web3.

    verify_orders  -> VerifiedOrder   signatures checked in bulk through the fast path
    constraints    the signed hardware terms and THE fit rule, unfit(offer, bid), which is
                   Market._checkPair check by check
    OrderBook      price-time priority per GPU model, continuous matching, fills as openLease args
    explain        why an order does not match, with numbers, and the nearest change that would
    run_auction    a periodic uniform-price call auction per GPU model

The lab SDK, the provider agent and the relay all use these, so their answers cannot drift, and
the contract enforces the same terms, so a fill the book makes is one ``openLease`` accepts.
"""

from market.matching.auction import Clearing, clearing_price, run_auction
from market.matching.book import Fill, OrderBook, Resting, StakeView, fits
from market.matching.constraints import (
    NO_REQUIREMENTS,
    VOCABULARY,
    Attributes,
    Constraint,
    Requirements,
    Unfit,
    decode_features,
    encode_attributes,
    fits_terms,
    unaccepted_lane,
    unfit,
)
from market.matching.explain import explain
from market.matching.reasons import REASON_OF, Change, Explanation, Reason, ReasonCode
from market.matching.verified import (
    Rejected,
    Submission,
    VerifiedOrder,
    verify_order,
    verify_orders,
)

__all__ = [
    "NO_REQUIREMENTS",
    "REASON_OF",
    "VOCABULARY",
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
    "Unfit",
    "VerifiedOrder",
    "clearing_price",
    "decode_features",
    "encode_attributes",
    "explain",
    "fits",
    "fits_terms",
    "run_auction",
    "unaccepted_lane",
    "unfit",
    "verify_order",
    "verify_orders",
]
