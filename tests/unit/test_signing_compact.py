"""EIP-2098 compact signatures (64 bytes ``r || vs``): they recover as their 65-byte form does, as
eth-account and OpenZeppelin's ECDSA read them, and malleable ones are refused either way."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from eth_account import Account
from eth_utils.address import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from market.errors import InvalidArgument, InvalidSignature
from market.protocol.eip712 import Domain, digest
from market.protocol.signing import (
    SECP256K1_N,
    SigningKey,
    recover,
    recover_with_eth_account,
    sign_with_eth_account,
    to_compact,
    verify,
    verify_signature,
    verify_voucher,
)
from market.protocol.types import Bid, Offer, Signed, Voucher
from tests.unit.test_protocol_types import BASE, orders

pytestmark = pytest.mark.unit

DOMAIN = Domain(31337, to_checksum_address("0x" + "5f" * 20))
KEY = SigningKey(b"\x42" * 32)
HALF_N = SECP256K1_N // 2


def _eip2098(r: int, s: int, v: int) -> bytes:
    """The compact form written from EIP-2098's definition, independently of the library."""
    return r.to_bytes(32, "big") + ((v - 27) << 255 | s).to_bytes(32, "big")


def _own(message: Offer | Bid, address: str) -> Any:
    field = "provider" if isinstance(message, Offer) else "lab"
    return dataclasses.replace(message, **{field: address})


@given(
    message=orders(),
    secret=st.integers(1, SECP256K1_N - 1).map(lambda k: k.to_bytes(32, "big")),
)
@settings(max_examples=100)
def test_compact_signature_recovers_the_signer_as_eth_account_does(
    message: Offer | Bid, secret: bytes
) -> None:
    key = SigningKey(secret)
    message = _own(message, key.address)
    full = sign_with_eth_account(DOMAIN, message, secret)
    parts = Account.unsafe_sign_hash(digest(DOMAIN, message), secret)
    compact = _eip2098(parts.r, parts.s, parts.v)

    assert to_compact(full) == compact
    assert recover(digest(DOMAIN, message), compact) == key.address
    assert recover_with_eth_account(DOMAIN, message, full) == key.address
    verify(DOMAIN, Signed(message, compact))


def test_compact_voucher_signature_verifies() -> None:
    signed = KEY.sign(DOMAIN, BASE[Voucher])
    verify_voucher(DOMAIN, Signed(signed.message, to_compact(signed.signature)), KEY.address)


@given(
    r=st.integers(1, SECP256K1_N - 1),
    s=st.integers(1, HALF_N),
    v=st.sampled_from([27, 28]),
)
@settings(max_examples=200)
def test_random_compact_signature_recovers_as_its_65_byte_form_or_both_are_refused(
    r: int, s: int, v: int
) -> None:
    h = digest(DOMAIN, BASE[Voucher])
    full = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v])
    assert _outcome(h, _eip2098(r, s, v)) == _outcome(h, full)


def _outcome(h: bytes, signature: bytes) -> str:
    """Who recovers from ``signature``, or why it is refused."""
    try:
        return recover(h, signature)
    except InvalidSignature as exc:
        return f"refused: {exc.reason}"


@given(
    message=orders(),
    high_s=st.integers(HALF_N + 1, 2**255 - 1),
    parity=st.sampled_from([0, 1]),
)
@settings(max_examples=100)
def test_compact_signature_with_s_in_the_upper_half_order_is_refused_as_malleable(
    message: Offer | Bid, high_s: int, parity: int
) -> None:
    # vs leaves 255 bits for s, so the upper half order is representable only up to 2^255 - 1;
    # the contract and OpenZeppelin refuse all of it, whatever the parity bit says.
    message = _own(message, KEY.address)
    r = int.from_bytes(KEY.sign(DOMAIN, message).signature[:32], "big")
    compact = _eip2098(r, high_s, 27 + parity)
    with pytest.raises(InvalidSignature, match="malleable"):
        recover(digest(DOMAIN, message), compact)
    with pytest.raises(InvalidSignature, match="malleable") as info:
        verify(DOMAIN, Signed(message, compact))
    assert (info.value.expected, info.value.recovered) == (KEY.address, None)


@pytest.mark.parametrize(
    ("r", "s"),
    [(0, 1), (1, 0), (SECP256K1_N, 1), (2**256 - 1, 1)],
    ids=["r=0", "s=0", "r=n", "r=max"],
)
def test_compact_signature_with_r_or_s_out_of_range_is_refused(r: int, s: int) -> None:
    with pytest.raises(InvalidSignature, match="out of range"):
        recover(digest(DOMAIN, BASE[Voucher]), _eip2098(r, s, 27))


@pytest.mark.parametrize("length", [1, 32, 63, 66, 130])
def test_signature_of_neither_ecdsa_length_is_refused_without_a_contract_check(
    length: int,
) -> None:
    h = digest(DOMAIN, BASE[Voucher])
    with pytest.raises(InvalidSignature, match=f"length {length}"):
        recover(h, b"\x01" * length)
    with pytest.raises(InvalidSignature) as info:
        verify_signature(h, KEY.address, b"\x01" * length)
    assert info.value.recovered is None
    assert "ERC-1271 check, not made here" in info.value.reason


@pytest.mark.parametrize(
    "signature",
    [
        b"\x01" * 64,
        KEY.sign(DOMAIN, BASE[Voucher]).signature[:64] + b"\x1d",  # v = 29
        (SECP256K1_N - 1).to_bytes(32, "big") * 2 + b"\x1b",  # s in the upper half order
    ],
    ids=["64-bytes", "bad-v", "malleable"],
)
def test_to_compact_refuses_what_has_no_compact_form(signature: bytes) -> None:
    with pytest.raises(InvalidArgument, match=r"compact form|ECDSA signature"):
        to_compact(signature)
