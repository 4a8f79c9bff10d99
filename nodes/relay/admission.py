"""Admitting a batch of orders: every check before anything changes, one typed result per order.

    1. signatures, in bulk (market.matching.verify_orders), off the event loop: ECDSA, then
       ERC-1271 through the chain for contract signers, as the Market contract checks them;
    2. the per-signer rate limit, over the orders whose signature is their signer's (so nobody
       can spend another account's budget with forged orders); over it, the whole request is
       refused and nothing changes;
    3. the stake of every offer's provider, read from the chain the first time it is seen;
    4. expiry, cancellation by hash or nonce floor, duplicates, GPUs already filled on-chain and
       provider eligibility, against the book and what the chain said;
    5. the orders that passed are stored, then enter the book (and are matched).

Steps 4 and 5 run without yielding to the event loop, so what was checked is what is applied.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from market.errors import (
    DuplicateOrder,
    InvalidField,
    InvalidSignature,
    MarketError,
    OrderCancelled,
    OrderExpired,
    OrderFilled,
    ProviderNotEligible,
)
from market.matching import Submission, VerifiedOrder, verify_orders
from market.protocol.eip712 import Domain, order_hash
from market.protocol.signing import ContractSignatureChecker
from market.protocol.types import Offer
from nodes.relay.book import RelayBook
from nodes.relay.ratelimit import RateLimiter
from nodes.wire import OrderResult, OrderStatus, Value


@dataclass(frozen=True, slots=True)
class Admitted:
    results: list[OrderResult]
    accepted: list[Submission]


async def admit(
    book: RelayBook,
    domain: Domain,
    submissions: Sequence[Submission],
    *,
    signer_limit: RateLimiter | None,
    checker: ContractSignatureChecker | None = None,
) -> Admitted:
    """Check ``submissions`` and let in those that pass; raises RateLimited (nothing changed) or
    RpcUnavailable (nothing changed) for the whole batch. Without a ``checker`` only ECDSA
    signatures are accepted."""
    valid, rejected = await asyncio.to_thread(
        lambda: verify_orders(domain, submissions, checker=checker)
    )
    if signer_limit is not None and valid:
        signer_limit.take(Counter(o.signer for o in valid))
    providers = {o.signed.message.provider for o in valid if isinstance(o.signed.message, Offer)}
    await book.stakes.ensure(providers)

    results: list[OrderResult | None] = [None] * len(submissions)
    for r in rejected:
        message = submissions[r.index].signed.message
        results[r.index] = refusal(order_hash(domain, message), r.error)
    positions = [i for i in range(len(submissions)) if results[i] is None]
    accepted: list[VerifiedOrder] = []
    seen: set[bytes] = set()
    for i, order in zip(positions, valid, strict=True):
        error = book.entry_error(order, seen)
        if error is not None:
            results[i] = refusal(order.hash, error)
            continue
        seen.add(order.hash)
        accepted.append(order)
        results[i] = OrderResult(order.hash, OrderStatus.ACCEPTED)
    book.accept(accepted)
    return Admitted(
        [r for r in results if r is not None],
        [Submission(o.signed) for o in accepted],
    )


def refusal(h: bytes, error: MarketError) -> OrderResult:
    """The typed result for an order refused with ``error``, with the numbers behind it."""
    status, details = _status(error)
    return OrderResult(h, status, str(error), details)


def _status(error: MarketError) -> tuple[OrderStatus, dict[str, Value]]:
    if isinstance(error, InvalidSignature):
        return OrderStatus.INVALID_SIGNATURE, {
            "expected": error.expected,
            "recovered": error.recovered or "",
            "reason": error.reason,
        }
    if isinstance(error, OrderExpired):
        return OrderStatus.ORDER_EXPIRED, {"expiry": error.expiry, "now": error.now}
    if isinstance(error, OrderCancelled):
        if error.min_nonce is None:
            return OrderStatus.ORDER_CANCELLED, {"nonce": error.nonce}
        return OrderStatus.NONCE_CANCELLED, {"nonce": error.nonce, "min_nonce": error.min_nonce}
    if isinstance(error, OrderFilled):
        return OrderStatus.ORDER_FILLED, {"size": error.size}
    if isinstance(error, DuplicateOrder):
        return OrderStatus.DUPLICATE_ORDER, {}
    if isinstance(error, ProviderNotEligible):
        free = -1 if error.free_stake is None else error.free_stake
        return OrderStatus.PROVIDER_NOT_ELIGIBLE, {
            "provider": error.provider,
            "free_stake": free,
            "min_stake": error.min_stake,
        }
    if isinstance(error, InvalidField):
        return OrderStatus.INVALID_FIELD, {
            "message_type": error.message_type,
            "field": error.field,
            "reason": error.reason,
        }
    return OrderStatus.INVALID_FIELD, {"error": type(error).__name__}


__all__ = ["Admitted", "admit", "refusal"]
