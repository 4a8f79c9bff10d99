"""What a failed lease open teaches the book, so the same pair is not tried again in vain.

The matcher gives a failed fill's GPUs back to both orders; then the contract's error says which
order, or which provider, cannot trade now: an order cancelled by hash or nonce floor is dropped,
an order filled further than the book knew is brought up to date, a provider without enough stake
is recorded as such until the registry says otherwise. An expired order says the chain's clock has
passed its expiry, which the relay's book then takes as its own clock (:func:`chain_time_after`),
so the order is dropped by chain time rather than tried again until the next block is read. Any
other revert (the lab's allowance or balance, a signature the chain refuses, a cluster that cannot
fill whole) drops the bid from this relay's book (it stays refused here as cancelled; its signer
may sign a new one).

An error names one order or provider (:func:`names`): a batch's lots that hold it are the
culprits, without any further check, and in a lot of several fills (an all-or-none cluster across
providers) only the fill it names is concerned (:func:`concerns`).
"""

from __future__ import annotations

from market.chain.contract_errors import (
    MarketClearingPriceAboveBid,
    MarketClearingPriceBelowAsk,
    MarketClusterIncomplete,
    MarketFillExceedsOrder,
    MarketInvalidSignature,
    MarketOrderCancelled,
    MarketOrderExpired,
    MarketOrderNonceCancelled,
    MarketProviderNotRegistered,
    MarketProviderStakeTooLow,
    MarketStakeLockUncovered,
)
from market.errors import TransactionReverted
from market.matching import Fill, OrderBook
from nodes.relay.stakes import StakeCache


def named_order(error: TransactionReverted) -> bytes | None:
    """The order hash ``error`` names, if it names one."""
    if isinstance(
        error,
        MarketOrderExpired
        | MarketOrderCancelled
        | MarketOrderNonceCancelled
        | MarketFillExceedsOrder,
    ):
        return bytes(error.order_hash)
    if isinstance(error, MarketInvalidSignature):
        return bytes(error.digest)
    if isinstance(error, MarketClearingPriceBelowAsk):
        return bytes(error.offer_hash)
    if isinstance(error, MarketClearingPriceAboveBid | MarketClusterIncomplete):
        return bytes(error.bid_hash)
    return None


def names(fill: Fill, error: TransactionReverted) -> bool | None:
    """Whether ``error`` names one of this fill's orders or its provider: True, False (it names
    another's), or None when it names no order or provider (the lab cannot pay, say)."""
    if isinstance(
        error, MarketProviderNotRegistered | MarketProviderStakeTooLow | MarketStakeLockUncovered
    ):
        return str(error.provider).lower() == fill.offer.message.provider.lower()
    named = named_order(error)
    return None if named is None else named in (fill.offer_hash, fill.bid_hash)


def concerns(fill: Fill, error: TransactionReverted) -> bool:
    """Whether ``error`` is about this fill: it names one of its orders or its provider, or it
    names none (then it is the bid's: the lab cannot pay, or the bid cannot be honoured)."""
    return names(fill, error) is not False


def chain_time_after(error: TransactionReverted) -> int | None:
    """A chain time the revert proves has been reached (an order expired), or None."""
    return error.expiry + 1 if isinstance(error, MarketOrderExpired) else None


def learn_from_revert(
    book: OrderBook, stakes: StakeCache, fill: Fill, error: TransactionReverted
) -> None:
    """Apply what ``error`` (the revert of the transaction that carried ``fill``) says to
    ``book``, if it concerns ``fill``."""
    if not concerns(fill, error):
        return
    if isinstance(error, MarketOrderExpired):
        return  # the caller moves the clock past the expiry: no order at it is live any more
    if isinstance(error, MarketOrderCancelled):
        book.cancel(error.order_hash)
    elif isinstance(error, MarketOrderNonceCancelled):
        is_offer = error.order_hash == fill.offer_hash
        signer = fill.offer.message.provider if is_offer else fill.bid.message.lab
        book.raise_nonce_floor(signer, error.min_nonce)
    elif isinstance(error, MarketFillExceedsOrder):
        entry = book.get(error.order_hash)
        if entry is not None:
            book.sync_filled(error.order_hash, entry.size - error.remaining)
    elif isinstance(error, MarketProviderNotRegistered):
        stakes.set(fill.offer.message.provider, None)  # until the registry says otherwise
    elif isinstance(error, MarketProviderStakeTooLow):
        stakes.set(fill.offer.message.provider, error.stake)
    elif isinstance(error, MarketStakeLockUncovered):
        stakes.set(fill.offer.message.provider, error.free_stake)
    elif isinstance(error, MarketInvalidSignature):
        book.cancel(error.digest)
    elif isinstance(error, MarketClearingPriceBelowAsk):
        book.cancel(error.offer_hash)
    else:  # the lab cannot pay (allowance, balance) or the bid cannot be honoured: drop it
        book.cancel(fill.bid_hash)


__all__ = ["chain_time_after", "concerns", "learn_from_revert", "named_order", "names"]
