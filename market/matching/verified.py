"""Admission to an order book starts here: an order whose signature has been checked.

A :class:`VerifiedOrder` can only be made by :func:`verify_orders`, which checks signatures in a
batch through the fast path (coincurve, precomputed type hashes) and computes each order's hash
once. :class:`~market.matching.book.OrderBook` accepts nothing else, so an unverified order can
never rest in a book.

Signatures are checked as the Market contract checks them: ECDSA first, then, for an order whose
ECDSA check failed and when a :class:`~market.protocol.signing.ContractSignatureChecker` is given,
ERC-1271 through the chain, so that a multisig or smart-wallet signer's orders verify here exactly
when they verify on-chain. Like the contract, an order a contract signed must name the ECDSA key
that will sign its leases' receipts (an offer's ``receipt_signer``) or vouchers (a bid's
``voucher_signer``): evidence checked later must not be revocable.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from market.errors import InvalidField, InvalidSignature, ProtocolError, WrongArgumentType
from market.matching.pool import Outcome, VerifierPool
from market.protocol.eip712 import Domain, order_hash
from market.protocol.signing import ContractSignatureChecker, verify_signature
from market.protocol.types import ZERO_ADDRESS, Bid, Offer, OrderHash, Signed

_TOKEN = object()


@dataclass(frozen=True, slots=True)
class VerifiedOrder:
    """A signed order whose signature is its signer's, with its hash.

    Everything the book matches on is a signed field of the order (hardware terms, billing,
    all-or-none: :mod:`market.matching.constraints`); nothing travels beside it.
    """

    signed: Signed[Offer] | Signed[Bid]
    hash: OrderHash
    _token: object = field(default=None, repr=False, compare=False)
    signer: str = field(init=False, repr=False, compare=False)
    """Who signed it: the offer's provider or the bid's lab (read on every step of admission
    and matching, so kept rather than derived each time)."""

    def __post_init__(self) -> None:
        if self._token is not _TOKEN:
            raise WrongArgumentType(
                "_token",
                type(self._token).__name__,
                "VerifiedOrder is made by verify_orders(), which checks signatures",
            )
        m = self.signed.message
        object.__setattr__(self, "signer", m.provider if isinstance(m, Offer) else m.lab)

    @classmethod
    def unsafe_from_trusted_store(
        cls,
        signed: Signed[Offer] | Signed[Bid],
        order_hash: OrderHash,
    ) -> VerifiedOrder:
        """Unsafe: skips the signature check. Only for orders this process verified before and
        stored itself (a relay reloading its book), and for benchmarks of the book alone."""
        return cls(signed, order_hash, _TOKEN)

    @property
    def is_offer(self) -> bool:
        return isinstance(self.signed.message, Offer)


@dataclass(frozen=True, slots=True)
class Rejected:
    """An order refused at verification: its position in the batch and the typed error."""

    index: int
    error: ProtocolError


@dataclass(frozen=True, slots=True)
class Submission:
    """An order as it arrives: the signed order alone (its terms are all signed fields)."""

    signed: Signed[Offer] | Signed[Bid]


PARALLEL_MIN_BATCH = 512
"""Batches at least this large are verified on several threads (see :func:`verify_orders`)."""


def verify_orders(
    domain: Domain,
    orders: Iterable[Submission | Signed[Offer] | Signed[Bid]],
    *,
    threads: int | None = None,
    checker: ContractSignatureChecker | None = None,
    pool: VerifierPool | None = None,
) -> tuple[list[VerifiedOrder], list[Rejected]]:
    """Verify a batch: (orders that passed, in input order; rejections with typed errors).

    Checks each signature against the order's own signer (malleable signatures refused, as
    on-chain). The terms need no other check here: they are signed fields, and the book compares
    them as the contract does (:func:`market.matching.constraints.unfit`).

    Signature recovery runs in libsecp256k1, which releases the GIL, so a batch of at least
    ``PARALLEL_MIN_BATCH`` orders is split over ``threads`` threads (default: one per CPU, at
    most 8). With a ``pool`` (:class:`~market.matching.pool.VerifierPool`), a batch of at least
    its ``min_batch`` orders is checked in its worker processes instead, beside this process's
    GIL. The result depends on neither.

    With a ``checker``, an order whose ECDSA check fails is then asked of its signer's ERC-1271
    ``isValidSignature``, one order after another (the checker caches its answers); without one
    (the default) only ECDSA signatures are accepted. Raises RpcUnavailable, for the whole batch,
    when the checker cannot reach the chain.
    """
    subs = [item if isinstance(item, Submission) else Submission(item) for item in orders]
    n = min(threads or os.cpu_count() or 1, 8)
    if pool is not None and len(subs) >= pool.min_batch:
        outcomes = pool.check(domain, [sub.signed for sub in subs])
        results = [
            _checked(sub, i, o) for i, (sub, o) in enumerate(zip(subs, outcomes, strict=True))
        ]
    elif n <= 1 or len(subs) < PARALLEL_MIN_BATCH:
        results = _verify_range(domain, subs, 0, len(subs))
    else:
        step = -(-len(subs) // n)
        with ThreadPoolExecutor(n) as threads_pool:
            parts = threads_pool.map(
                lambda lo: _verify_range(domain, subs, lo, min(lo + step, len(subs))),
                range(0, len(subs), step),
            )
            results = [r for part in parts for r in part]
    if checker is not None:
        results = [
            _contract_signed(subs[r.index], r.index, r.error, checker)
            if isinstance(r, Rejected) and isinstance(r.error, InvalidSignature)
            else r
            for r in results
        ]
    valid = [r for r in results if isinstance(r, VerifiedOrder)]
    rejected = [r for r in results if isinstance(r, Rejected)]
    return valid, rejected


def _verify_range(
    domain: Domain, subs: list[Submission], lo: int, hi: int
) -> list[VerifiedOrder | Rejected]:
    out: list[VerifiedOrder | Rejected] = []
    for i in range(lo, hi):
        sub = subs[i]
        message = sub.signed.message
        h = order_hash(domain, message)
        signer = message.provider if isinstance(message, Offer) else message.lab
        try:
            verify_signature(h, signer, sub.signed.signature)
        except ProtocolError as exc:
            out.append(Rejected(i, exc))
            continue
        out.append(VerifiedOrder(sub.signed, h, _TOKEN))
    return out


def _checked(sub: Submission, index: int, outcome: Outcome) -> VerifiedOrder | Rejected:
    """The typed result of a pool's outcome for ``sub``: its hash, or the failed check."""
    if isinstance(outcome, bytes):
        return VerifiedOrder(sub.signed, OrderHash(outcome), _TOKEN)
    digest, recovered, reason = outcome
    m = sub.signed.message
    signer = m.provider if isinstance(m, Offer) else m.lab
    return Rejected(index, InvalidSignature(digest, signer, recovered, reason))


def _contract_signed(
    sub: Submission, index: int, ecdsa: InvalidSignature, checker: ContractSignatureChecker
) -> VerifiedOrder | Rejected:
    """An order whose ECDSA check failed (``ecdsa``), checked again as the contract would: with
    its signer's ERC-1271 check, then its named evidence key (``MarketSignerKeyRequired``)."""
    try:
        verify_signature(ecdsa.digest, ecdsa.expected, sub.signed.signature, checker)
        m = sub.signed.message
        if isinstance(m, Offer) and m.receipt_signer == ZERO_ADDRESS:
            raise InvalidField(
                "Offer", "receipt_signer", "a contract signer must name the key of its receipts"
            )
        if isinstance(m, Bid) and m.voucher_signer == ZERO_ADDRESS:
            raise InvalidField(
                "Bid", "voucher_signer", "a contract signer must name the key of its vouchers"
            )
    except ProtocolError as exc:
        return Rejected(index, exc)
    return VerifiedOrder(sub.signed, OrderHash(ecdsa.digest), _TOKEN)


def verify_order(
    domain: Domain,
    signed: Signed[Offer] | Signed[Bid],
    *,
    checker: ContractSignatureChecker | None = None,
) -> VerifiedOrder:
    """Verify one order, raising its typed error (see :func:`verify_orders`)."""
    valid, rejected = verify_orders(domain, [Submission(signed)], checker=checker)
    if rejected:
        raise rejected[0].error
    return valid[0]


__all__ = ["Rejected", "Submission", "VerifiedOrder", "verify_order", "verify_orders"]
