"""Signed offers and bids for matching tests: a few fixed keys, a fixed domain."""

from __future__ import annotations

from collections.abc import Sequence

from eth_utils.address import to_checksum_address

from market.matching import (
    NO_REQUIREMENTS,
    Attributes,
    Requirements,
    VerifiedOrder,
    encode_attributes,
    verify_order,
)
from market.protocol.eip712 import Domain
from market.protocol.signing import SigningKey
from market.protocol.types import Bid, Billing, Offer, billing_modes

DOMAIN = Domain(31337, to_checksum_address("0x" + "5f" * 20))
PROVIDER_KEYS = [SigningKey(bytes([0x10 + i]) * 32) for i in range(4)]
LAB_KEYS = [SigningKey(bytes([0x40 + i]) * 32) for i in range(4)]
NOW = 1_000_000
MODEL = "H100-80GB"


class Orders:
    """Builds verified orders with unique nonces; their terms are signed fields, named as
    ``Provider.offer`` and ``Lab.bid`` name them."""

    def __init__(self) -> None:
        self.nonce = 0

    def _next(self) -> int:
        self.nonce += 1
        return self.nonce

    def offer(
        self,
        price: int = 10,
        gpus: int = 8,
        *,
        provider: int = 0,
        model: str = MODEL,
        memory_gib: int = 80,
        min_duration: int = 60,
        max_duration: int = 86_400,
        expiry: int = NOW + 3600,
        nonce: int | None = None,
        attributes: Attributes | None = None,
        bandwidth_gbps: int = 0,
        billing: Sequence[Billing] = (Billing.RENTAL,),
    ) -> VerifiedOrder:
        key = PROVIDER_KEYS[provider]
        offer = Offer(
            provider=key.address,
            gpu_model=model,
            gpu_count=gpus,
            memory_gib=memory_gib,
            price_per_gpu_second=price,
            min_duration=min_duration,
            max_duration=max_duration,
            expiry=expiry,
            nonce=self._next() if nonce is None else nonce,
            bandwidth_gbps=bandwidth_gbps,
            features=encode_attributes(attributes or {}),
            billing_modes=billing_modes(*billing),
        )
        return verify_order(DOMAIN, key.sign(DOMAIN, offer))

    def bid(
        self,
        price: int = 10,
        gpus: int = 4,
        *,
        lab: int = 0,
        model: str = MODEL,
        duration: int = 3600,
        expiry: int = NOW + 3600,
        nonce: int | None = None,
        requirements: Requirements = NO_REQUIREMENTS,
    ) -> VerifiedOrder:
        key = LAB_KEYS[lab]
        bid = Bid(
            lab=key.address,
            gpu_model=model,
            gpu_count=gpus,
            max_price_per_gpu_second=price,
            duration=duration,
            expiry=expiry,
            nonce=self._next() if nonce is None else nonce,
            **requirements.bid_fields(),
        )
        return verify_order(DOMAIN, key.sign(DOMAIN, bid))
