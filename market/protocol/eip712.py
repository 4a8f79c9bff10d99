"""EIP-712 hashing of offers, bids, vouchers and receipts, byte-for-byte as the contracts do it.

The fast path encodes each struct by hand (every field is a static 32-byte word) with type hashes
computed once, which is what bulk verification needs. :func:`typed_data` builds the standard
EIP-712 JSON message for wallets and for eth-account, the reference the tests compare against.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from functools import lru_cache
from operator import attrgetter
from typing import Any

from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address

from market.protocol.keccak import keccak
from market.protocol.types import (
    Bid,
    Offer,
    OrderHash,
    Receipt,
    ReceiptHash,
    Voucher,
    gpu_model_to_bytes32,
)

DOMAIN_NAME = "gpumarket"
DOMAIN_VERSION = "1"
DOMAIN_TYPE = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"


def type_string(cls: type[Offer] | type[Bid] | type[Voucher] | type[Receipt]) -> str:
    """The EIP-712 ``encodeType`` of a message class, e.g. ``Voucher(bytes32 leaseId,...)``."""
    return f"{cls.TYPE_NAME}({','.join(f'{t} {n}' for _, n, t in cls.FIELDS)})"


TYPEHASH: dict[type, bytes] = {
    cls: keccak(type_string(cls).encode()) for cls in (Offer, Bid, Voucher, Receipt)
}
_DOMAIN_TYPEHASH = keccak(DOMAIN_TYPE.encode())


@dataclass(frozen=True)
class Domain:
    """The Market's EIP-712 domain: bound to one chain and one contract address."""

    chain_id: int
    verifying_contract: ChecksumAddress
    separator: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "verifying_contract", to_checksum_address(self.verifying_contract))
        encoded = (
            _DOMAIN_TYPEHASH
            + keccak(DOMAIN_NAME.encode())
            + keccak(DOMAIN_VERSION.encode())
            + self.chain_id.to_bytes(32, "big")
            + bytes(12)
            + bytes.fromhex(self.verifying_contract[2:])
        )
        object.__setattr__(self, "separator", keccak(encoded))

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": self.chain_id,
            "verifyingContract": self.verifying_contract,
        }


def _word(value: object, solidity_type: str) -> bytes:
    if solidity_type == "address":
        assert isinstance(value, str)
        return bytes(12) + bytes.fromhex(value[2:])
    if solidity_type == "bytes32":
        if isinstance(value, str):  # gpu_model
            return gpu_model_to_bytes32(value)
        assert isinstance(value, bytes)
        return value
    assert isinstance(value, int)
    return value.to_bytes(32, "big")


@lru_cache(maxsize=1 << 16)
def _address_word(value: str) -> bytes:
    """An address's 32-byte word (cached: the same signers recur in every batch)."""
    return _word(value, "address")


@lru_cache(maxsize=1 << 10)
def _model_word(value: str) -> bytes:
    return gpu_model_to_bytes32(value)


def _uint_word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def _same(value: bytes) -> bytes:
    return value


def _word_of(attr: str, solidity_type: str) -> Callable[[Any], bytes]:
    """How one field becomes its 32-byte word, as :func:`_word` does it."""
    if solidity_type == "address":
        return _address_word
    if attr == "gpu_model":
        return _model_word
    if solidity_type == "bytes32":
        return _same
    return _uint_word  # uintN, an IntEnum and a bool alike


_ENCODERS: dict[type, tuple[Callable[[Any], tuple[Any, ...]], tuple[Callable[[Any], bytes], ...]]]
_ENCODERS = {
    cls: (
        attrgetter(*(a for a, _, _ in cls.FIELDS)),
        tuple(_word_of(a, t) for a, _, t in cls.FIELDS),
    )
    for cls in (Offer, Bid, Voucher, Receipt)
}
"""Per message class, a getter of its fields' values in ``FIELDS`` order and each one's word."""


def encode_data(message: Offer | Bid | Voucher | Receipt) -> bytes:
    """``encodeData(message)``: its fields' 32-byte words in ``FIELDS`` order."""
    values, words = _ENCODERS[type(message)]
    return b"".join([word(v) for word, v in zip(words, values(message), strict=True)])


def struct_hash(message: Offer | Bid | Voucher | Receipt) -> bytes:
    """``hashStruct(message)``: keccak256(typeHash || encodeData)."""
    return keccak(TYPEHASH[type(message)] + encode_data(message))


def digest(domain: Domain, message: Offer | Bid | Voucher | Receipt) -> bytes:
    """The EIP-712 digest that is signed: keccak256(0x1901 || domainSeparator || hashStruct)."""
    return keccak(b"\x19\x01" + domain.separator + struct_hash(message))


def digest_of_encoding(
    domain: Domain, cls: type[Offer] | type[Bid] | type[Voucher] | type[Receipt], encoded: bytes
) -> bytes:
    """:func:`digest` of the ``cls`` message whose ``encodeData`` is ``encoded`` (read from its
    frame by ``market.protocol.codec.signed_order_encoding``, without building the message)."""
    return keccak(b"\x19\x01" + domain.separator + keccak(TYPEHASH[cls] + encoded))


def order_hash(domain: Domain, order: Offer | Bid) -> OrderHash:
    """An order's hash as the contract knows it (for cancellation and fill lookups)."""
    return OrderHash(digest(domain, order))


def receipt_hash(domain: Domain, receipt: Receipt) -> ReceiptHash:
    """A receipt's EIP-712 digest: the next receipt's prevHash and a voucher's receiptHash."""
    return ReceiptHash(digest(domain, receipt))


def typed_data(domain: Domain, message: Offer | Bid | Voucher | Receipt) -> dict[str, Any]:
    """The full EIP-712 message (``eth_signTypedData_v4`` JSON) for wallets and eth-account."""
    values: dict[str, Any] = {}
    for attr, name, _ in message.FIELDS:
        value = getattr(message, attr)
        if attr == "gpu_model":
            value = _word(value, "bytes32")
        elif isinstance(value, IntEnum):
            value = int(value)
        values[name] = value
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            message.TYPE_NAME: [{"name": n, "type": t} for _, n, t in message.FIELDS],
        },
        "primaryType": message.TYPE_NAME,
        "domain": domain.as_dict(),
        "message": values,
    }


__all__ = [
    "DOMAIN_NAME",
    "DOMAIN_VERSION",
    "TYPEHASH",
    "Domain",
    "digest",
    "digest_of_encoding",
    "encode_data",
    "order_hash",
    "receipt_hash",
    "struct_hash",
    "type_string",
    "typed_data",
]
