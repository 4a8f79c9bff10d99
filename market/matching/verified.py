"""Admission to an order book starts here: an order whose signature has been checked.

A :class:`VerifiedOrder` can only be made by :func:`verify_orders`, which checks signatures in a
batch through the fast path (coincurve, precomputed type hashes) and computes each order's hash
once. :class:`~market.matching.book.OrderBook` accepts nothing else, so an unverified order can
never rest in a book.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from eth_utils.address import to_checksum_address

from market.errors import InvalidField, InvalidSignature, ProtocolError
from market.matching.constraints import (
    EMPTY_ATTRIBUTES,
    NO_REQUIREMENTS,
    Attributes,
    Requirements,
    attributes_hash,
)
from market.protocol.eip712 import Domain, order_hash
from market.protocol.signing import recover_address_bytes
from market.protocol.types import Bid, Offer, OrderHash, Signed

_TOKEN = object()


@dataclass(frozen=True, slots=True)
class VerifiedOrder:
    """A signed order whose signature is its signer's, with its hash and off-chain metadata.

    ``attributes`` is the document an offer's ``attributesHash`` commits to; ``requirements`` is
    what a bid asks of offers beyond its signed fields.
    """

    signed: Signed[Offer] | Signed[Bid]
    hash: OrderHash
    attributes: Attributes = field(default_factory=lambda: EMPTY_ATTRIBUTES)
    requirements: Requirements = NO_REQUIREMENTS
    _token: object = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._token is not _TOKEN:
            raise TypeError("VerifiedOrder is made by verify_orders(), which checks signatures")

    @classmethod
    def unsafe_from_trusted_store(
        cls,
        signed: Signed[Offer] | Signed[Bid],
        order_hash: OrderHash,
        attributes: Attributes = EMPTY_ATTRIBUTES,
        requirements: Requirements = NO_REQUIREMENTS,
    ) -> VerifiedOrder:
        """Unsafe: skips the signature check. Only for orders this process verified before and
        stored itself (a relay reloading its book), and for benchmarks of the book alone."""
        return cls(signed, order_hash, attributes, requirements, _TOKEN)

    @property
    def is_offer(self) -> bool:
        return isinstance(self.signed.message, Offer)

    @property
    def signer(self) -> str:
        m = self.signed.message
        return m.provider if isinstance(m, Offer) else m.lab


@dataclass(frozen=True, slots=True)
class Rejected:
    """An order refused at verification: its position in the batch and the typed error."""

    index: int
    error: ProtocolError


@dataclass(frozen=True, slots=True)
class Submission:
    """An order as it arrives: the signed order plus its off-chain metadata."""

    signed: Signed[Offer] | Signed[Bid]
    attributes: Attributes = field(default_factory=lambda: EMPTY_ATTRIBUTES)
    requirements: Requirements = NO_REQUIREMENTS


def verify_orders(
    domain: Domain, orders: Iterable[Submission | Signed[Offer] | Signed[Bid]]
) -> tuple[list[VerifiedOrder], list[Rejected]]:
    """Verify a batch: (orders that passed, in input order; rejections with typed errors).

    Checks each signature against the order's own signer (malleable signatures refused, as
    on-chain), that an offer's attributes document hashes to its ``attributesHash``, and that
    requirements are only attached to bids.
    """
    valid: list[VerifiedOrder] = []
    rejected: list[Rejected] = []
    for i, item in enumerate(orders):
        sub = item if isinstance(item, Submission) else Submission(item)
        message = sub.signed.message
        h = order_hash(domain, message)
        signer = message.provider if isinstance(message, Offer) else message.lab
        try:
            got = recover_address_bytes(h, sub.signed.signature)
            if got != bytes.fromhex(signer[2:]):
                raise InvalidSignature(
                    h, signer, to_checksum_address(got), "signed by another account"
                )
            _check_metadata(sub)
        except InvalidSignature as exc:
            rejected.append(Rejected(i, InvalidSignature(h, signer, exc.recovered, exc.reason)))
            continue
        except ProtocolError as exc:
            rejected.append(Rejected(i, exc))
            continue
        valid.append(VerifiedOrder(sub.signed, h, sub.attributes, sub.requirements, _TOKEN))
    return valid, rejected


def verify_order(
    domain: Domain,
    signed: Signed[Offer] | Signed[Bid],
    *,
    attributes: Attributes = EMPTY_ATTRIBUTES,
    requirements: Requirements = NO_REQUIREMENTS,
) -> VerifiedOrder:
    """Verify one order, raising its typed error."""
    valid, rejected = verify_orders(domain, [Submission(signed, attributes, requirements)])
    if rejected:
        raise rejected[0].error
    return valid[0]


def _check_metadata(sub: Submission) -> None:
    message = sub.signed.message
    if isinstance(message, Offer):
        if sub.requirements is not NO_REQUIREMENTS and sub.requirements != NO_REQUIREMENTS:
            raise InvalidField("Offer", "requirements", "only bids carry requirements")
        if attributes_hash(sub.attributes) != message.attributes_hash:
            raise InvalidField(
                "Offer", "attributes_hash", "does not match the attributes document sent with it"
            )
    elif sub.attributes:
        raise InvalidField("Bid", "attributes", "only offers carry an attributes document")


__all__ = ["Rejected", "Submission", "VerifiedOrder", "verify_order", "verify_orders"]
