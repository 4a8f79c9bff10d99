"""Admitting a batch of orders, one path for ``/v1/orders`` and ``/v1/gossip``: every check
before anything changes, one typed result per order.

    1. signatures, in bulk (market.matching.verify_orders), off the event loop (a large batch in
       worker processes, :class:`~market.matching.pool.VerifierPool`, so that checking it does
       not queue for the loop's GIL): ECDSA, then ERC-1271 through the chain for contract
       signers, as the Market contract checks them;
    2. the rate budgets, over the *new* orders (valid, and able to enter the book as it stands:
       not in it, not expired, cancelled or filled, not repeated in the request): one per
       signer, shared by both entry points, and one per peer address for gossip; over either,
       the whole request is refused (429) and nothing changes. Forged orders cost no signer
       anything, and neither do replays of a signer's known or dead orders, so nobody can spend
       another account's budget, and peers re-gossiping known orders are not throttled;
    3. the chain reads: the stake of every offer's provider (the first time it is seen), the
       balance and allowance of every bid's lab (``nodes/relay/funds.py``, cached briefly); a
       read that fails refuses the whole request (503 ``chain_unavailable``), never admits
       unchecked;
    4. expiry, cancellation by hash or nonce floor, duplicates, GPUs already filled on-chain,
       provider eligibility, the lab's funds (``lab_unfunded``) and the book's bounds
       (``nodes/relay/capacity.py``: ``signer_at_capacity``, ``book_full``, or an order evicted
       to make room), against the book and what the chain said;
    5. the orders that passed are stored, then enter the book (and are matched); in a relay
       cluster they are then published to the cluster's stream (``replicate``), the ack
       awaited before the request is answered (``nodes/relay/cluster/node.py``).

The budgets are taken after the reads, and steps 4 and 5 run without yielding to the event loop,
so what was checked is what is applied. See ``docs/decisions/0014-gossip-admission.md``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from market.errors import (
    BookFull,
    DuplicateOrder,
    InvalidField,
    InvalidSignature,
    LabUnfunded,
    MarketError,
    OrderCancelled,
    OrderError,
    OrderExpired,
    OrderFilled,
    ProviderNotEligible,
    SignerAtCapacity,
)
from market.matching import Submission, VerifiedOrder, verify_orders
from market.matching.pool import VerifierPool
from market.protocol.eip712 import Domain, order_hash
from market.protocol.signing import ContractSignatureChecker
from market.protocol.types import Bid, Offer
from nodes.relay.book import RelayBook
from nodes.relay.funds import FundsCache, bid_cost
from nodes.relay.ratelimit import RateLimiter
from nodes.wire import OrderResult, OrderStatus, Value


@dataclass(frozen=True, slots=True)
class Admitted:
    results: list[OrderResult]
    accepted: list[Submission]
    evicted: int = 0


@dataclass
class Admission:
    book: RelayBook
    domain: Domain
    funds: FundsCache
    signer_limit: RateLimiter
    peer_limit: RateLimiter
    checker: ContractSignatureChecker | None = None
    """Asks contract signers about their orders (ERC-1271); None accepts ECDSA only."""
    pool: VerifierPool | None = None
    """Worker processes that check large batches' signatures beside the event loop's GIL."""
    replicate: Callable[[list[VerifiedOrder], list[bytes]], Awaitable[None]] | None = None
    """A cluster's: publishes the orders let in and those evicted for them, or raises (and
    withdraws them), before the request is answered."""

    async def admit(
        self, submissions: Sequence[Submission], *, peer: str | None = None
    ) -> Admitted:
        """Check ``submissions`` (from ``peer``'s gossip, or sent directly when None) and let in
        those that pass. Raises RateLimited or RpcUnavailable for the whole batch, having
        changed nothing."""
        domain, checker, pool = self.domain, self.checker, self.pool
        valid, rejected = await asyncio.to_thread(
            lambda: verify_orders(domain, submissions, checker=checker, pool=pool)
        )
        self._check_budgets(valid, peer)  # refuse a flood before it costs chain reads
        unknown = [o.signed.message for o in valid if o.hash not in self.book.book]
        await self.book.stakes.ensure(m.provider for m in unknown if isinstance(m, Offer))
        await self.funds.ensure(m.lab for m in unknown if isinstance(m, Bid))
        # From here on nothing yields: what is checked is what is applied.
        entry_errors, new = self._entry_errors(valid)
        self._charge(new, peer, take=True)

        results: list[OrderResult | None] = [None] * len(submissions)
        for r in rejected:
            message = submissions[r.index].signed.message
            results[r.index] = refusal(order_hash(domain, message), r.error)
        positions = [i for i in range(len(submissions)) if results[i] is None]
        accepted: list[VerifiedOrder] = []
        seen: set[bytes] = set()
        per_signer: Counter[str] = Counter()
        evicted = 0
        swept = False
        for i, order, entry_error in zip(positions, valid, entry_errors, strict=True):
            error: OrderError | None = (
                DuplicateOrder(order.hash) if order.hash in seen else entry_error
            ) or self._funds_error(order)
            if error is None:
                if not swept and self.book.capacity.full(len(accepted)):
                    self.book.expire()  # expired orders give way first
                    swept = True
                try:
                    evicted += self._make_room(order, per_signer[order.signer], len(accepted))
                except OrderError as exc:
                    error = exc
            if error is not None:
                results[i] = refusal(order.hash, error)
                continue
            seen.add(order.hash)
            per_signer[order.signer] += 1
            accepted.append(order)
            results[i] = OrderResult(order.hash, OrderStatus.ACCEPTED)
        evicted_hashes = self.book.accept(accepted)
        if self.replicate is not None and (accepted or evicted_hashes):
            await self.replicate(accepted, evicted_hashes)
        return Admitted(
            [r for r in results if r is not None],
            [Submission(o.signed) for o in accepted],
            evicted,
        )

    def _entry_errors(
        self, valid: Sequence[VerifiedOrder]
    ) -> tuple[list[OrderError | None], list[VerifiedOrder]]:
        """Why each of ``valid`` may not enter the book as it stands (None: it may), and the
        orders that may, each once: the *new* orders the budgets are charged for."""
        errors: list[OrderError | None] = []
        new: list[VerifiedOrder] = []
        seen: set[bytes] = set()
        alone: set[bytes] = set()  # each order checked against the book, not the request
        for o in valid:
            error = self.book.entry_error(o, alone)
            errors.append(error)
            if error is None and o.hash not in seen:
                seen.add(o.hash)
                new.append(o)
        return errors, new

    def _check_budgets(self, valid: Sequence[VerifiedOrder], peer: str | None) -> None:
        """Raise RateLimited, taking nothing, when the new orders among ``valid`` exceed a budget.
        Every valid order counted is a bound on the new ones: only a request that might exceed
        a budget is sorted into new and known orders."""
        bound = Counter(o.signer for o in valid)
        peers = {peer: len(valid)} if peer is not None else {}
        if self.signer_limit.allows(bound) and self.peer_limit.allows(peers):
            return
        self._charge(self._entry_errors(valid)[1], peer, take=False)

    def _charge(self, new: Sequence[VerifiedOrder], peer: str | None, *, take: bool) -> None:
        """Check (``take``: and take) the budgets of ``new``, the request's new orders."""
        if not new:
            return
        per_signer = Counter(o.signer for o in new)
        per_peer = {peer: len(new)} if peer is not None else {}
        self.peer_limit.check(per_peer)
        self.signer_limit.check(per_signer)
        if take:
            self.peer_limit.take(per_peer)
            self.signer_limit.take(per_signer)

    def _funds_error(self, order: VerifiedOrder) -> LabUnfunded | None:
        bid = order.signed.message
        if not isinstance(bid, Bid):
            return None
        funds = self.funds.funds_of(bid.lab)
        needed = bid_cost(bid)
        if funds is not None and funds.spendable >= needed:
            return None
        balance, allowance = (0, 0) if funds is None else (funds.balance, funds.allowance)
        return LabUnfunded(order.hash, bid.lab, needed, balance, allowance)

    def _make_room(self, order: VerifiedOrder, pending: int, pending_total: int) -> int:
        """Evict what the book's bounds require for ``order``; returns how many left."""
        victim = self.book.capacity.make_room(
            order.hash,
            order.signer,
            pending=pending,
            pending_total=pending_total,
            evictable=self.book.evictable,
        )
        if victim is None:
            return 0
        if not self.book.evict(victim):  # cannot happen: evictable said yes
            raise BookFull(order.hash, self.book.capacity.max_orders)
        return 1


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
    if isinstance(error, LabUnfunded):
        return OrderStatus.LAB_UNFUNDED, {
            "lab": error.lab,
            "needed": error.needed,
            "balance": error.balance,
            "allowance": error.allowance,
        }
    if isinstance(error, SignerAtCapacity):
        return OrderStatus.SIGNER_AT_CAPACITY, {
            "signer": error.signer,
            "held": error.held,
            "share": error.share,
        }
    if isinstance(error, BookFull):
        return OrderStatus.BOOK_FULL, {"capacity": error.capacity}
    if isinstance(error, InvalidField):
        return OrderStatus.INVALID_FIELD, {
            "message_type": error.message_type,
            "field": error.field,
            "reason": error.reason,
        }
    return OrderStatus.INVALID_FIELD, {"error": type(error).__name__}


__all__ = ["Admission", "Admitted", "refusal"]
