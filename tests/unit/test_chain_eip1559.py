"""EIP-1559 transactions signed by ``market.chain.eip1559`` are eth-account's, byte for byte: the
same raw bytes and hash for any fields, and they decode to the fields signed."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account
from eth_account.typed_transactions.typed_transaction import TypedTransaction
from eth_utils.address import to_checksum_address
from hexbytes import HexBytes
from hypothesis import given, settings
from hypothesis import strategies as st

from market.chain.eip1559 import DynamicFeeFields, sign_dynamic_fee
from market.protocol.signing import SECP256K1_N, SigningKey

pytestmark = pytest.mark.unit

uint = st.integers(min_value=0, max_value=2**256 - 1)
fields = st.builds(
    DynamicFeeFields,
    chain_id=st.integers(min_value=1, max_value=2**64 - 1),
    nonce=st.integers(min_value=0, max_value=2**64 - 2),
    max_priority_fee_per_gas=uint,
    max_fee_per_gas=uint,
    gas=st.integers(min_value=0, max_value=2**64 - 1),
    to=st.one_of(st.just(b""), st.binary(min_size=20, max_size=20)),
    value=uint,
    data=st.binary(max_size=300),
)
keys = st.integers(min_value=1, max_value=SECP256K1_N - 1).map(lambda k: k.to_bytes(32, "big"))


def _as_eth_account_dict(f: DynamicFeeFields) -> dict[str, Any]:
    tx: dict[str, Any] = {
        "type": 2,
        "chainId": f.chain_id,
        "nonce": f.nonce,
        "maxPriorityFeePerGas": f.max_priority_fee_per_gas,
        "maxFeePerGas": f.max_fee_per_gas,
        "gas": f.gas,
        "value": f.value,
        "data": f.data,
        "accessList": [],
    }
    if f.to:
        tx["to"] = to_checksum_address(f.to)
    return tx


@settings(max_examples=60, deadline=None)
@given(key=keys, f=fields)
def test_signed_bytes_and_hash_are_eth_accounts(key: bytes, f: DynamicFeeFields) -> None:
    expected = Account.from_key(key).sign_transaction(_as_eth_account_dict(f))
    raw, tx_hash = sign_dynamic_fee(SigningKey(key), f)
    assert raw == bytes(expected.raw_transaction)
    assert tx_hash == bytes(expected.hash)


def test_signed_bytes_decode_to_the_fields_and_the_signer() -> None:
    key = SigningKey(b"\x11" * 32)
    f = DynamicFeeFields(31337, 7, 10**9, 3 * 10**9, 90_000, b"\xab" * 20, 5, b"\x01\x02")
    raw, _ = sign_dynamic_fee(key, f)
    decoded = TypedTransaction.from_bytes(HexBytes(raw)).as_dict()
    assert (decoded["chainId"], decoded["nonce"], decoded["gas"], decoded["value"]) == (
        31337,
        7,
        90_000,
        5,
    )
    assert (decoded["maxPriorityFeePerGas"], decoded["maxFeePerGas"]) == (10**9, 3 * 10**9)
    assert (bytes(decoded["to"]), bytes(decoded["data"])) == (b"\xab" * 20, b"\x01\x02")
    assert Account.recover_transaction(raw) == key.address
