"""Turning revert data into typed Python exceptions.

Custom errors are looked up by selector in the generated ``contract_errors.ERRORS`` and decoded
with their ABI types; ``Panic(uint256)`` and ``Error(string)`` get their own classes; anything
else stays a plain :class:`~market.errors.TransactionReverted` with the raw data.
"""

from __future__ import annotations

from eth_abi.abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_utils.address import to_checksum_address

from market.chain.contract_errors import ERRORS
from market.errors import ContractPanic, ContractRevertMessage, TransactionReverted

PANIC_SELECTOR = bytes.fromhex("4e487b71")  # Panic(uint256)
ERROR_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)


def decode_revert(data: bytes, what: str, tx_hash: str | None = None) -> TransactionReverted:
    """The most specific exception for revert ``data`` of ``what`` (e.g. "openLease")."""
    selector, payload = data[:4], data[4:]
    exc: TransactionReverted
    try:
        if selector == PANIC_SELECTOR:
            (code,) = abi_decode(["uint256"], payload)
            exc = ContractPanic(what, code, tx_hash)
        elif selector == ERROR_SELECTOR:
            (reason,) = abi_decode(["string"], payload)
            exc = ContractRevertMessage(what, reason, tx_hash)
        elif (cls := ERRORS.get(selector)) is not None:
            types = [t for _, t in cls.PARAMS]
            values = [
                to_checksum_address(v) if t == "address" else v
                for v, t in zip(abi_decode(types, payload), types, strict=True)
            ]
            exc = cls.from_values(values, what, tx_hash)
        else:
            exc = TransactionReverted(what, data, tx_hash)
    except DecodingError:
        exc = TransactionReverted(what, data, tx_hash)
    exc.data = data
    return exc


__all__ = ["decode_revert"]
