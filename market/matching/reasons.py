"""The answers explain() gives: reason codes with their numbers, and single-field changes.

Codes shared with the relay's order results mean the same thing there (``nodes.wire``); the term
codes are one per ``Market`` custom error of the pair check (:data:`REASON_OF`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from market.matching.constraints import Unfit


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
    BANDWIDTH_TOO_LOW = "bandwidth_too_low"
    FEATURES_MISSING = "features_missing"
    FEATURE_NOT_ACCEPTED = "feature_not_accepted"
    BILLING_NOT_OFFERED = "billing_not_offered"
    ARBITER_MISMATCH = "arbiter_mismatch"
    MIN_CHARGE_TOO_HIGH = "min_charge_too_high"
    PRICE_NOT_CROSSED = "price_not_crossed"
    NOT_ENOUGH_GPUS = "not_enough_gpus"


REASON_OF: Mapping[Unfit, ReasonCode] = {
    Unfit.MODEL: ReasonCode.NO_COUNTERPARTY,
    Unfit.DURATION: ReasonCode.DURATION_OUT_OF_RANGE,
    Unfit.MEMORY: ReasonCode.MEMORY_TOO_SMALL,
    Unfit.BANDWIDTH: ReasonCode.BANDWIDTH_TOO_LOW,
    Unfit.FEATURES_MISSING: ReasonCode.FEATURES_MISSING,
    Unfit.FEATURE_NOT_ACCEPTED: ReasonCode.FEATURE_NOT_ACCEPTED,
    Unfit.BILLING: ReasonCode.BILLING_NOT_OFFERED,
    Unfit.ARBITER: ReasonCode.ARBITER_MISMATCH,
    Unfit.MIN_CHARGE: ReasonCode.MIN_CHARGE_TOO_HIGH,
}
"""The reason code explain() gives for each term the contract refuses (its custom error)."""

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
    """Set the order's field ``field`` to ``suggested``."""

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


__all__ = ["REASON_OF", "Change", "Explanation", "Reason", "ReasonCode", "Value"]
