"""What a failed ``openLease`` teaches the book, so the same pair is not tried again in vain.

The matcher gives a failed fill's GPUs back to both orders; then the contract's error says which
order, or which provider, cannot trade now: an order cancelled by hash or nonce floor is dropped,
an order filled further than the book knew is brought up to date, a provider without enough stake
is recorded as such until the registry says otherwise. Any other revert (the lab's allowance or
balance, a signature the chain refuses) drops the order it names, else the bid, from this relay's
book (it stays refused here as cancelled; its signer may sign a new one).
"""

from __future__ import annotations

from market.chain.contract_errors import (
    MarketFillExceedsOrder,
    MarketInvalidSignature,
    MarketOrderCancelled,
    MarketOrderExpired,
    MarketOrderNonceCancelled,
    MarketProviderNotRegistered,
    MarketProviderStakeTooLow,
)
from market.errors import TransactionReverted
from market.matching import Fill, OrderBook
from nodes.relay.stakes import StakeCache


def learn_from_revert(
    book: OrderBook, stakes: StakeCache, fill: Fill, error: TransactionReverted
) -> None:
    """Apply what ``error`` (the revert of ``fill``'s transaction) says to ``book``."""
    offer = fill.offer.message
    if isinstance(error, MarketOrderExpired):
        return  # no longer live: the book skips it and the next sweep drops it
    if isinstance(error, MarketOrderCancelled):
        book.cancel(error.order_hash)
    elif isinstance(error, MarketOrderNonceCancelled):
        signer = offer.provider if error.order_hash == fill.offer_hash else fill.bid.message.lab
        book.raise_nonce_floor(signer, error.min_nonce)
    elif isinstance(error, MarketFillExceedsOrder):
        entry = book.get(error.order_hash)
        if entry is not None:
            book.sync_filled(error.order_hash, entry.size - error.remaining)
    elif isinstance(error, MarketProviderNotRegistered):
        stakes.set(offer.provider, None)  # until the registry says otherwise
    elif isinstance(error, MarketProviderStakeTooLow):
        stakes.set(offer.provider, error.free_stake)
    elif isinstance(error, MarketInvalidSignature):
        book.cancel(error.digest)
    else:  # the lab cannot pay (allowance, balance) or the bid cannot be honoured: drop it
        book.cancel(fill.bid_hash)


__all__ = ["learn_from_revert"]
