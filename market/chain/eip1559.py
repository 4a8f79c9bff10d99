"""Signing EIP-1559 transactions without eth-account's dictionary formatters.

``LocalAccount.sign_transaction`` validates and normalizes its dictionary through eth-utils'
formatters before it encodes anything: 0.7 ms of CPU a transaction, more than the request that
sends it. The transactor fills every field itself with the right types already, so it signs here:
the EIP-2718 type byte ``0x02`` and the RLP list of EIP-1559 (``rlp``), hashed with keccak and
signed by libsecp256k1 (coincurve, through :class:`~market.protocol.signing.SigningKey`), whose
RFC 6979 signatures are eth-account's own, byte for byte.
``tests/unit/test_chain_eip1559.py`` checks the bytes and hash against eth-account's for generated
transactions.
"""

from __future__ import annotations

from dataclasses import dataclass

import rlp

from market.protocol.keccak import keccak
from market.protocol.signing import SigningKey

TX_TYPE = b"\x02"
"""EIP-2718's type of an EIP-1559 (dynamic fee) transaction."""


@dataclass(frozen=True, slots=True)
class DynamicFeeFields:
    """The fields of an EIP-1559 transaction with an empty access list; ``to`` is the 20-byte
    address, or empty for a contract creation."""

    chain_id: int
    nonce: int
    max_priority_fee_per_gas: int
    max_fee_per_gas: int
    gas: int
    to: bytes
    value: int
    data: bytes

    def payload(self) -> list[int | bytes | list[bytes]]:
        return [
            self.chain_id,
            self.nonce,
            self.max_priority_fee_per_gas,
            self.max_fee_per_gas,
            self.gas,
            self.to,
            self.value,
            self.data,
            [],  # the access list
        ]


def sign_dynamic_fee(key: SigningKey, fields: DynamicFeeFields) -> tuple[bytes, bytes]:
    """The signed transaction's bytes as nodes take them (``eth_sendRawTransaction``) and its
    hash."""
    payload = fields.payload()
    signature = key.unsafe_sign_hash(keccak(TX_TYPE + rlp.encode(payload)))
    y_parity = signature[64] - 27
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    raw = TX_TYPE + rlp.encode([*payload, y_parity, r, s])
    return raw, keccak(raw)


__all__ = ["TX_TYPE", "DynamicFeeFields", "sign_dynamic_fee"]
