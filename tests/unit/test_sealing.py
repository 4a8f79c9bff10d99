"""Sealed payloads open only for the recipient, the lease and the purpose they were sealed to."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market.errors import InvalidArgument, InvalidKey, SealMalformed, SealTampered
from market.sealing import (
    KEY_LENGTH,
    OVERHEAD,
    SEAL_VERSION,
    Purpose,
    associated_data,
    generate_keypair,
    open_sealed,
    public_key_of,
    seal,
)

pytestmark = pytest.mark.unit

KEYS = generate_keypair()
LEASE = bytes(range(32))
AAD = associated_data(LEASE, Purpose.JOB_SPEC)
PLAINTEXT = b"python -c 'print(42)'"
SEALED = seal(KEYS.public, PLAINTEXT, AAD)


@settings(max_examples=50, deadline=None)
@given(plaintext=st.binary(max_size=4096), aad=st.binary(max_size=128))
def test_open_returns_what_was_sealed(plaintext: bytes, aad: bytes) -> None:
    sealed = seal(KEYS.public, plaintext, aad)
    assert len(sealed) == len(plaintext) + OVERHEAD
    assert open_sealed(KEYS.private, sealed, aad) == plaintext


def test_layout_is_version_ephemeral_key_nonce_ciphertext() -> None:
    assert SEALED[0] == SEAL_VERSION
    assert SEALED[1 : 1 + KEY_LENGTH] != KEYS.public
    assert PLAINTEXT not in SEALED


def test_each_seal_uses_a_fresh_ephemeral_key_and_nonce() -> None:
    again = seal(KEYS.public, PLAINTEXT, AAD)
    assert again[1:45] != SEALED[1:45]
    assert open_sealed(KEYS.private, again, AAD) == PLAINTEXT


def test_public_key_is_32_bytes_derived_from_the_private_key() -> None:
    assert len(KEYS.public) == len(KEYS.private) == 32
    assert public_key_of(KEYS.private) == KEYS.public
    assert "private" not in repr(KEYS)


# Every byte of the payload is authenticated: the version byte is checked first, the ephemeral
# key, the nonce, the ciphertext and the tag by the AEAD.
@pytest.mark.parametrize(
    "position",
    [1, 16, 32, 33, 40, 44, 45, 45 + len(PLAINTEXT) // 2, len(SEALED) - 16, len(SEALED) - 1],
    ids=lambda p: f"byte{p}",
)
def test_flipping_any_byte_is_refused_as_tampered(position: int) -> None:
    tampered = bytearray(SEALED)
    tampered[position] ^= 0x01
    with pytest.raises(SealTampered):
        open_sealed(KEYS.private, bytes(tampered), AAD)


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_any_single_bit_flip_is_refused(data: st.DataObject) -> None:
    position = data.draw(st.integers(1, len(SEALED) - 1))
    bit = data.draw(st.integers(0, 7))
    tampered = bytearray(SEALED)
    tampered[position] ^= 1 << bit
    with pytest.raises(SealTampered):
        open_sealed(KEYS.private, bytes(tampered), AAD)


def test_another_version_is_malformed() -> None:
    with pytest.raises(SealMalformed, match="version 2"):
        open_sealed(KEYS.private, bytes([2]) + SEALED[1:], AAD)


@pytest.mark.parametrize("cut", [0, 1, OVERHEAD - 1])
def test_truncated_payload_is_malformed(cut: int) -> None:
    with pytest.raises(SealMalformed, match="shorter"):
        open_sealed(KEYS.private, SEALED[:cut], AAD)


def test_truncated_ciphertext_is_tampered() -> None:
    with pytest.raises(SealTampered):
        open_sealed(KEYS.private, SEALED[:-1], AAD)
    with pytest.raises(SealTampered):
        open_sealed(KEYS.private, SEALED + b"\x00", AAD)


def test_wrong_private_key_is_refused() -> None:
    with pytest.raises(SealTampered):
        open_sealed(generate_keypair().private, SEALED, AAD)


def test_another_lease_does_not_open() -> None:
    other = associated_data(bytes(32), Purpose.JOB_SPEC)
    with pytest.raises(SealTampered):
        open_sealed(KEYS.private, SEALED, other)


def test_another_purpose_does_not_open() -> None:
    with pytest.raises(SealTampered):
        open_sealed(KEYS.private, SEALED, associated_data(LEASE, Purpose.JOB_OUTPUT))


def test_swapped_ephemeral_key_from_another_payload_is_refused() -> None:
    other = seal(KEYS.public, PLAINTEXT, AAD)
    spliced = SEALED[:1] + other[1:33] + SEALED[33:]
    with pytest.raises(SealTampered):
        open_sealed(KEYS.private, spliced, AAD)


def test_low_order_ephemeral_key_is_refused() -> None:
    spliced = SEALED[:1] + bytes(32) + SEALED[33:]
    with pytest.raises(SealTampered):
        open_sealed(KEYS.private, spliced, AAD)


def test_sealing_to_an_unset_or_malformed_key_is_refused() -> None:
    with pytest.raises(InvalidKey, match="no encryption key"):
        seal(bytes(32), PLAINTEXT, AAD)
    with pytest.raises(InvalidKey, match="32 bytes"):
        seal(KEYS.public[:31], PLAINTEXT, AAD)
    with pytest.raises(InvalidKey, match="32 bytes"):
        open_sealed(KEYS.private[:31], SEALED, AAD)


def test_associated_data_needs_a_32_byte_lease_id() -> None:
    with pytest.raises(InvalidArgument, match="32 bytes"):
        associated_data(b"\x01" * 31, Purpose.JOB_SPEC)
    assert associated_data(LEASE, Purpose.JOB_SPEC) != associated_data(LEASE, Purpose.JOB_OUTPUT)
