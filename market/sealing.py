"""Sealed payloads: job specs and outputs encrypted to the recipient's registered X25519 key.

    keys = generate_keypair()                       # the provider registers keys.public on-chain
    aad = associated_data(lease.id, Purpose.JOB_SPEC)
    sealed = seal(keys.public, spec_bytes, aad)     # the lab, from the registry's encryptionKey
    spec = open_sealed(keys.private, sealed, aad)   # the provider

Each payload uses a fresh ephemeral X25519 key (ephemeral-static Diffie-Hellman), so only the
recipient can open it and the sender keeps nothing secret. The shared secret goes through
HKDF-SHA256, whose ``info`` binds the version and both public keys, to a ChaCha20-Poly1305 key.
The AEAD's associated data is the payload's header followed by the caller's ``aad``, so every
byte of a sealed payload is authenticated and a payload bound to one lease and purpose does not
open for another. A relay that carries sealed bytes learns nothing of them.

The layout is fixed and self-describing by its first byte::

    version (1 byte, 0x01) || ephemeral public key (32) || nonce (12) || ciphertext || tag (16)

:func:`open_sealed` raises :class:`~market.errors.SealMalformed` for bytes that are not such a
payload and :class:`~market.errors.SealTampered` when authentication fails (altered bytes, another
key, another lease or purpose: by design these cannot be told apart).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from market.errors import InvalidArgument, InvalidKey, SealMalformed, SealTampered

SEAL_VERSION: Final = 1
KEY_LENGTH: Final = 32
"""Bytes of an X25519 key, public or private: a public key is the registry's ``bytes32``."""
NONCE_LENGTH: Final = 12
TAG_LENGTH: Final = 16
HEADER_LENGTH: Final = 1 + KEY_LENGTH + NONCE_LENGTH
OVERHEAD: Final = HEADER_LENGTH + TAG_LENGTH
"""How many bytes sealing adds to a plaintext."""
_KDF_LABEL: Final = b"gpumarket/seal/v1"
_AAD_LABEL: Final = b"gpumarket/sealed/v1"


class Purpose(StrEnum):
    """What a sealed payload is, bound into its associated data."""

    JOB_SPEC = "job-spec"
    JOB_OUTPUT = "job-output"
    OUTPUT_CHUNK = "output-chunk"


@dataclass(frozen=True, slots=True)
class SealingKeyPair:
    """An X25519 key pair as raw bytes; ``public`` is what the provider registers on-chain."""

    public: bytes
    private: bytes = field(repr=False)


def generate_keypair() -> SealingKeyPair:
    """A fresh X25519 key pair."""
    private = X25519PrivateKey.generate()
    return SealingKeyPair(
        public=private.public_key().public_bytes_raw(), private=private.private_bytes_raw()
    )


def public_key_of(private: bytes) -> bytes:
    """The 32-byte public key of a 32-byte private key."""
    return _private_key(private).public_key().public_bytes_raw()


def associated_data(lease_id: bytes, purpose: Purpose) -> bytes:
    """The ``aad`` that binds a payload to one lease and one purpose."""
    if len(lease_id) != 32:
        raise InvalidArgument("lease_id", lease_id, f"a lease id is 32 bytes, got {len(lease_id)}")
    return _AAD_LABEL + lease_id + Purpose(purpose).value.encode("ascii")


def chunk_associated_data(lease_id: bytes, seq: int, index: int) -> bytes:
    """The ``aad`` of one streamed output chunk: bound to the lease, the receipt ``seq`` and the
    chunk's index, so a chunk sealed for one place opens nowhere else (no swap, no replay)."""
    if not (0 <= seq < 2**64 and 0 <= index < 2**64):
        raise InvalidArgument(
            "seq, index", (seq, index), f"seq {seq} and chunk index {index} must be uint64"
        )
    return (
        associated_data(lease_id, Purpose.OUTPUT_CHUNK)
        + seq.to_bytes(8, "big")
        + index.to_bytes(8, "big")
    )


def seal(recipient_public: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Encrypt ``plaintext`` so that only the holder of ``recipient_public``'s key can open it,
    and only with the same ``aad``."""
    recipient = _public_key(recipient_public)
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = ephemeral.public_key().public_bytes_raw()
    try:
        shared = ephemeral.exchange(recipient)
    except ValueError as exc:  # a low-order point: no key can be agreed with it
        raise InvalidKey(
            "X25519 public", "the recipient's public key is not a usable X25519 key"
        ) from exc
    nonce = os.urandom(NONCE_LENGTH)
    header = bytes([SEAL_VERSION]) + ephemeral_public + nonce
    key = _derive_key(shared, ephemeral_public, recipient_public)
    return header + ChaCha20Poly1305(key).encrypt(nonce, plaintext, header + aad)


def open_sealed(private: bytes, sealed: bytes, aad: bytes) -> bytes:
    """The plaintext of ``sealed``; raises SealMalformed or SealTampered."""
    if len(sealed) < OVERHEAD:
        raise SealMalformed(f"{len(sealed)} bytes is shorter than the {OVERHEAD}-byte minimum")
    if sealed[0] != SEAL_VERSION:
        raise SealMalformed(f"version {sealed[0]}, this node reads version {SEAL_VERSION}")
    secret = _private_key(private)
    header = sealed[:HEADER_LENGTH]
    ephemeral_public = header[1 : 1 + KEY_LENGTH]
    nonce = header[1 + KEY_LENGTH :]
    try:
        shared = secret.exchange(X25519PublicKey.from_public_bytes(ephemeral_public))
    except ValueError as exc:  # a low-order ephemeral key was put in the header
        raise SealTampered() from exc
    key = _derive_key(shared, ephemeral_public, secret.public_key().public_bytes_raw())
    try:
        return ChaCha20Poly1305(key).decrypt(nonce, sealed[HEADER_LENGTH:], header + aad)
    except InvalidTag as exc:
        raise SealTampered() from exc


def _derive_key(shared: bytes, ephemeral_public: bytes, recipient_public: bytes) -> bytes:
    info = _KDF_LABEL + bytes([SEAL_VERSION]) + ephemeral_public + recipient_public
    return HKDF(algorithm=SHA256(), length=32, salt=None, info=info).derive(shared)


def _private_key(raw: bytes) -> X25519PrivateKey:
    if len(raw) != KEY_LENGTH:
        raise InvalidKey(
            "X25519 private", f"an X25519 private key is {KEY_LENGTH} bytes, got {len(raw)}"
        )
    return X25519PrivateKey.from_private_bytes(raw)


def _public_key(raw: bytes) -> X25519PublicKey:
    if len(raw) != KEY_LENGTH:
        raise InvalidKey(
            "X25519 public", f"an X25519 public key is {KEY_LENGTH} bytes, got {len(raw)}"
        )
    if raw == bytes(KEY_LENGTH):
        raise InvalidKey("X25519 public", "the recipient registered no encryption key (all zero)")
    return X25519PublicKey.from_public_bytes(raw)


__all__ = [
    "KEY_LENGTH",
    "OVERHEAD",
    "SEAL_VERSION",
    "Purpose",
    "SealingKeyPair",
    "associated_data",
    "chunk_associated_data",
    "generate_keypair",
    "open_sealed",
    "public_key_of",
    "seal",
]
