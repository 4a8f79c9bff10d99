"""Equivocation: two different receipts signed for the same lease and ``seq``.

An honest provider's chain never forks, so two such receipts signed by the same key prove
misbehaviour on their own: the provider told two stories about the same period (for instance a
large usage to one party and a small one to another). The pair is slashable evidence; nothing else
(no lease state, no time) is needed to judge it.
"""

from __future__ import annotations

from eth_utils.address import to_checksum_address

from market.errors import InvalidSignature
from market.protocol.eip712 import Domain, digest
from market.protocol.signing import recover_address_bytes
from market.protocol.types import Receipt, Signed


def detect_equivocation(
    domain: Domain, a: Signed[Receipt], b: Signed[Receipt], *, provider: str | None = None
) -> bool:
    """True iff ``a`` and ``b`` are for the same lease and ``seq``, differ, and are both validly
    signed by the same account (by ``provider``, when given).

    Two signatures over the same receipt are not equivocation; neither is a pair in which either
    signature is invalid (anyone can forge an unsigned story).
    """
    x, y = a.message, b.message
    if x.lease_id != y.lease_id or x.seq != y.seq or x == y:
        return False
    try:
        signer = recover_address_bytes(digest(domain, x), a.signature)
        other = recover_address_bytes(digest(domain, y), b.signature)
    except InvalidSignature:
        return False
    if signer != other:
        return False
    return provider is None or to_checksum_address(signer) == to_checksum_address(provider)


__all__ = ["detect_equivocation"]
