"""The Receipt message: EIP-712 hashing and signing agree with eth-account; strict wire format.

The Hypothesis strategy :func:`receipts` is shared with the other receipt tests.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import msgpack
import pytest
from eth_account.messages import encode_typed_data
from eth_hash.auto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from market.errors import DecodeError, InvalidField, InvalidSignature
from market.protocol.codec import decode, decode_as, encode
from market.protocol.eip712 import TYPEHASH, Domain, digest, receipt_hash, struct_hash, typed_data
from market.protocol.eip712 import type_string as eip712_type_string
from market.protocol.signing import (
    SigningKey,
    recover_with_eth_account,
    sign_with_eth_account,
    verify_receipt,
)
from market.protocol.types import UINT64_MAX, ZERO_HASH, Receipt, Signed, Voucher
from tests.unit.test_eip712_signing import DOMAIN, KEY, OTHER_KEY, domains, private_keys
from tests.unit.test_protocol_types import bytes32s, uints

pytestmark = pytest.mark.unit

# The type string the contract side must use verbatim (stated in Receipt's docstring).
RECEIPT_TYPE_STRING = (
    "Receipt(bytes32 leaseId,uint64 seq,bytes32 prevHash,uint64 periodStart,uint64 periodEnd,"
    "uint64 gpuSecondsCumulative,bytes32 outputRoot,bytes32 metricsHash,bytes32 attestationHash)"
)
BASE_RECEIPT = Receipt(
    lease_id=b"\x01" * 32,
    seq=3,
    prev_hash=b"\x02" * 32,
    period_start=1_700_000_000,
    period_end=1_700_000_060,
    gpu_seconds_cumulative=960,
    output_root=b"\x03" * 32,
    metrics_hash=b"\x04" * 32,
)


@st.composite
def receipts(draw: st.DrawFn) -> Receipt:
    return Receipt(
        lease_id=draw(bytes32s()),
        seq=draw(uints("uint64")),
        prev_hash=draw(bytes32s()),
        period_start=draw(uints("uint64")),
        period_end=draw(uints("uint64")),
        gpu_seconds_cumulative=draw(uints("uint64")),
        output_root=draw(bytes32s()),
        metrics_hash=draw(bytes32s()),
        attestation_hash=draw(bytes32s()),
    )


# --- the type ---------------------------------------------------------------------------------


def test_type_string_and_hash_are_the_documented_ones() -> None:
    assert eip712_type_string(Receipt) == RECEIPT_TYPE_STRING
    assert TYPEHASH[Receipt] == keccak(RECEIPT_TYPE_STRING.encode())
    # The docstring states it for the contract's authors (wrapped over two lines).
    assert RECEIPT_TYPE_STRING.replace(" ", "") in "".join((Receipt.__doc__ or "").split())


def test_attestation_defaults_to_the_zero_hash() -> None:
    fields = {f.name: getattr(BASE_RECEIPT, f.name) for f in dataclasses.fields(Receipt)}
    del fields["attestation_hash"]
    assert Receipt(**fields).attestation_hash == ZERO_HASH


@pytest.mark.parametrize(
    ("attr", "value"),
    [
        ("seq", UINT64_MAX + 1),
        ("seq", -1),
        ("seq", True),
        ("period_end", 1.5),
        ("gpu_seconds_cumulative", UINT64_MAX + 1),
        ("lease_id", b"\x01" * 31),
        ("prev_hash", "00" * 32),
        ("output_root", b"\x01" * 33),
        ("attestation_hash", bytearray(32)),
    ],
)
def test_field_out_of_its_solidity_type_is_refused(attr: str, value: object) -> None:
    with pytest.raises(InvalidField) as info:
        dataclasses.replace(BASE_RECEIPT, **{attr: value})  # type: ignore[arg-type]
    assert (info.value.message_type, info.value.field) == ("Receipt", attr)


def test_receipt_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        BASE_RECEIPT.seq = 4  # type: ignore[misc]


# --- EIP-712 ----------------------------------------------------------------------------------


@given(domain=domains(), receipt=receipts())
@settings(max_examples=150)
def test_digest_equals_eth_accounts_typed_data_hash(domain: Domain, receipt: Receipt) -> None:
    signable = encode_typed_data(full_message=typed_data(domain, receipt))
    assert signable.header == domain.separator
    assert signable.body == struct_hash(receipt)
    expected = keccak(b"\x19" + signable.version + signable.header + signable.body)
    assert digest(domain, receipt) == expected
    assert receipt_hash(domain, receipt) == expected


@given(domain=domains(), receipt=receipts(), key=private_keys())
@settings(max_examples=60)
def test_signature_is_eth_accounts_and_verifies_as_the_provider(
    domain: Domain, receipt: Receipt, key: bytes
) -> None:
    provider = SigningKey(key)
    signed = provider.sign(domain, receipt)
    assert signed.signature == sign_with_eth_account(domain, receipt, key)
    assert recover_with_eth_account(domain, receipt, signed.signature) == provider.address
    verify_receipt(domain, signed, provider.address)  # does not raise


def test_receipt_signed_by_another_key_names_who_signed() -> None:
    signed = OTHER_KEY.sign(DOMAIN, BASE_RECEIPT)
    with pytest.raises(InvalidSignature) as info:
        verify_receipt(DOMAIN, signed, KEY.address)
    assert (info.value.expected, info.value.recovered) == (KEY.address, OTHER_KEY.address)
    assert info.value.digest == receipt_hash(DOMAIN, BASE_RECEIPT)


def test_malformed_receipt_signature_is_refused_without_a_signer() -> None:
    good = KEY.sign(DOMAIN, BASE_RECEIPT).signature
    with pytest.raises(InvalidSignature) as info:
        verify_receipt(DOMAIN, Signed(BASE_RECEIPT, good[:64] + b"\x00"), KEY.address)
    assert info.value.recovered is None


def _flipped(value: object) -> object:
    if isinstance(value, bytes):
        return value[:-1] + bytes([value[-1] ^ 1])
    assert isinstance(value, int)
    return value ^ 1


@pytest.mark.parametrize("attr", [attr for attr, _, _ in Receipt.FIELDS])
def test_tampering_with_any_receipt_field_fails_verification(attr: str) -> None:
    signed = KEY.sign(DOMAIN, BASE_RECEIPT)
    changes: dict[str, Any] = {attr: _flipped(getattr(BASE_RECEIPT, attr))}
    tampered = dataclasses.replace(BASE_RECEIPT, **changes)
    with pytest.raises(InvalidSignature) as info:
        verify_receipt(DOMAIN, Signed(tampered, signed.signature), KEY.address)
    assert info.value.digest == digest(DOMAIN, tampered)
    assert info.value.recovered != KEY.address


def test_adding_receipt_left_the_other_type_hashes_alone() -> None:
    assert TYPEHASH[Voucher] == keccak(
        b"Voucher(bytes32 leaseId,uint256 cumulativeAmount,bytes32 receiptHash)"
    )


# --- msgpack ----------------------------------------------------------------------------------


@given(receipt=receipts(), signature=st.binary(min_size=65, max_size=65))
@settings(max_examples=150)
def test_receipt_and_signed_receipt_round_trip(receipt: Receipt, signature: bytes) -> None:
    wire = encode(receipt)
    assert decode(wire) == receipt
    assert decode_as(wire, Receipt) == receipt
    assert encode(decode(wire)) == wire
    signed = Signed(receipt, signature)
    signed_wire = encode(signed)
    assert decode(signed_wire) == signed
    assert decode_as(signed_wire, Signed[Receipt]) == signed


def test_receipt_wire_layout_is_the_documented_one() -> None:
    tree = msgpack.unpackb(encode(KEY.sign(DOMAIN, BASE_RECEIPT)), raw=False)
    assert tree["type"] == "SignedReceipt"
    body = tree["body"]["message"]
    assert list(body) == [name for _, name, _ in Receipt.FIELDS]
    assert body["seq"] == 3
    assert body["gpuSecondsCumulative"] == 960  # uint64: a msgpack int
    assert body["leaseId"] == b"\x01" * 32


def _with_body(change: dict[str, Any], drop: str | None = None) -> bytes:
    tree = msgpack.unpackb(encode(BASE_RECEIPT), raw=False)
    tree["body"].update(change)
    if drop is not None:
        del tree["body"][drop]
    packed: bytes = msgpack.packb(tree, use_bin_type=True)
    return packed


@pytest.mark.parametrize(
    ("change", "drop", "error"),
    [
        ({}, "attestationHash", DecodeError),
        ({"extra": 1}, None, DecodeError),
        ({"seq": (3).to_bytes(32, "big")}, None, DecodeError),
        ({"seq": 3.0}, None, DecodeError),
        ({"seq": None}, None, DecodeError),
        ({"prevHash": b"\x02" * 31}, None, DecodeError),
        ({"outputRoot": "03" * 32}, None, DecodeError),
        ({"periodEnd": -1}, None, InvalidField),
        ({"gpuSecondsCumulative": UINT64_MAX}, None, None),
    ],
    ids=[
        "missing",
        "extra",
        "uint64-as-bin",
        "float",
        "nil",
        "short-hash",
        "hash-as-str",
        "negative",
        "max-is-fine",
    ],
)
def test_malformed_receipt_is_refused(
    change: dict[str, Any], drop: str | None, error: type[Exception] | None
) -> None:
    data = _with_body(change, drop)
    if error is None:
        assert decode(data) == dataclasses.replace(BASE_RECEIPT, gpu_seconds_cumulative=UINT64_MAX)
        return
    with pytest.raises(error) as info:
        decode(data)
    assert type(info.value) is error


def test_decode_as_tells_a_receipt_from_a_voucher() -> None:
    with pytest.raises(DecodeError, match="expected a Receipt message, got Voucher"):
        decode_as(encode(Voucher(b"\x01" * 32, 5)), Receipt)
    with pytest.raises(DecodeError, match="expected a SignedReceipt"):
        decode_as(encode(KEY.sign(DOMAIN, Voucher(b"\x01" * 32, 5))), Signed[Receipt])
