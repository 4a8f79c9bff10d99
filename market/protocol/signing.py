"""Signing and verifying protocol messages: secp256k1 via coincurve, checked against eth-account.

:class:`SigningKey` signs 65 bytes ``r || s || v`` with ``v`` in {27, 28}, exactly what eth-account
produces. Recovery also reads EIP-2098's compact 64 bytes ``r || vs`` (the parity of ``v`` in the
top bit of ``s``), as the Market contract and OpenZeppelin's ECDSA do. Like them, it refuses
malleable signatures (``s`` in the upper half of the curve order) and any ``v`` but 27 or 28, so an
ECDSA signature verifies here if and only if it verifies on-chain.

An order's signer may also be a contract (a multisig, a smart wallet): the Market accepts what its
ERC-1271 ``isValidSignature`` accepts when the ECDSA check fails. :func:`verify_signature` makes
the contract's decision in that order; the ERC-1271 question goes to a
:class:`ContractSignatureChecker`, which ``market.chain.erc1271`` implements over an RPC endpoint
(this layer never talks to a chain).

The fast path (:func:`recover`, :func:`verify`, :func:`verify_many`) uses coincurve directly with
precomputed type hashes; :func:`recover_with_eth_account` is the reference implementation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from coincurve import PrivateKey, PublicKey
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address

from market.errors import InvalidArgument, InvalidKey, InvalidSignature
from market.protocol.eip712 import Domain, digest, typed_data
from market.protocol.keccak import keccak
from market.protocol.types import Bid, M, Offer, Receipt, Signed, Voucher

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N = SECP256K1_N // 2
_S_MASK = (1 << 255) - 1  # EIP-2098: vs without its top (parity) bit


class ContractSignatureChecker(Protocol):
    """Asks a contract signer whether it accepts a signature, as ERC-1271 defines it.

    ``market.chain.erc1271.Erc1271Checker`` answers through an RPC endpoint; tests may answer from
    a table.
    """

    def is_valid_signature(self, signer: str, digest: bytes, signature: bytes) -> bool:
        """Whether ``signer`` is a contract whose ``isValidSignature(digest, signature)`` accepts
        the signature (False for an account without code). Raises
        :class:`~market.errors.RpcUnavailable` when it cannot get an answer: an outage is never
        an invalid signature."""
        ...


class SigningKey:
    """A secp256k1 private key that signs EIP-712 digests; from 32 bytes or a 0x hex string."""

    __slots__ = ("_key", "address")

    def __init__(self, key: bytes | str) -> None:
        try:
            raw = bytes.fromhex(key.removeprefix("0x")) if isinstance(key, str) else key
        except ValueError as exc:
            raise InvalidKey("secp256k1 private", "a private key is 32 bytes of hex") from exc
        if len(raw) != 32:
            raise InvalidKey("secp256k1 private", "a private key is 32 bytes")
        try:
            self._key = PrivateKey(raw)
        except ValueError as exc:  # zero, or not below the curve order
            raise InvalidKey("secp256k1 private", f"not a secp256k1 private key: {exc}") from exc
        public = self._key.public_key.format(compressed=False)[1:]
        self.address: ChecksumAddress = to_checksum_address(keccak(public)[-20:])

    def __repr__(self) -> str:
        return f"SigningKey({self.address})"

    def unsafe_sign_hash(self, message_hash: bytes) -> bytes:
        """Sign a raw 32-byte hash. Unsafe: signs anything; prefer :meth:`sign`."""
        sig = self._key.sign_recoverable(message_hash, hasher=None)
        return sig[:64] + bytes([sig[64] + 27])

    def sign(self, domain: Domain, message: M) -> Signed[M]:
        """Sign ``message`` under ``domain``."""
        return Signed(message, self.unsafe_sign_hash(digest(domain, message)))


def recover_address_bytes(message_hash: bytes, signature: bytes) -> bytes:
    """The 20-byte address that produced the ECDSA ``signature`` over ``message_hash``: 65 bytes
    ``r || s || v`` or EIP-2098's 64 bytes ``r || vs``.

    Raises InvalidSignature for a malformed or malleable signature, as OpenZeppelin's ECDSA does.
    """
    if len(signature) == 65:
        v = signature[64]
        if v not in (27, 28):
            raise InvalidSignature(message_hash, "?", None, f"v is {v}, expected 27 or 28")
        s = int.from_bytes(signature[32:64], "big")
    elif len(signature) == 64:
        vs = int.from_bytes(signature[32:64], "big")
        v, s = 27 + (vs >> 255), vs & _S_MASK
    else:
        raise InvalidSignature(
            message_hash,
            "?",
            None,
            f"length {len(signature)}: an ECDSA signature is 65 bytes, or 64 in EIP-2098 form",
        )
    r = int.from_bytes(signature[:32], "big")
    if s > _HALF_N:
        raise InvalidSignature(message_hash, "?", None, "malleable: s is in the upper half order")
    if not 0 < r < SECP256K1_N or s == 0:
        raise InvalidSignature(message_hash, "?", None, "r or s out of range")
    try:
        public = PublicKey.from_signature_and_message(
            signature[:32] + s.to_bytes(32, "big") + bytes([v - 27]), message_hash, hasher=None
        )
    except ValueError as exc:
        raise InvalidSignature(message_hash, "?", None, f"unrecoverable: {exc}") from exc
    return keccak(public.format(compressed=False)[1:])[-20:]


def to_compact(signature: bytes) -> bytes:
    """A 65-byte ECDSA signature in EIP-2098's compact form, ``r || vs``. Raises InvalidArgument
    (a ValueError) for one that has no compact form (not 65 bytes, ``v`` not 27 or 28, or a
    malleable ``s``)."""
    if len(signature) != 65 or signature[64] not in (27, 28):
        raise InvalidArgument(
            "signature", signature, "not a 65-byte ECDSA signature with v in {27, 28}"
        )
    s = int.from_bytes(signature[32:64], "big")
    if s > _HALF_N:
        raise InvalidArgument(
            "signature",
            signature,
            "a malleable signature (s in the upper half order) has no compact form",
        )
    return signature[:32] + ((signature[64] - 27) << 255 | s).to_bytes(32, "big")


def verify_signature(
    digest: bytes,
    signer: str,
    signature: bytes,
    checker: ContractSignatureChecker | None = None,
) -> None:
    """Raise InvalidSignature unless ``signature`` over ``digest`` is ``signer``'s, decided as the
    Market contract decides (``_checkSignature``): the signer's ECDSA signature (65 bytes or 64 in
    EIP-2098 form, malleable ones refused), else, when a ``checker`` is given, the signer's ERC-1271
    approval. Without a checker only ECDSA is checked, and a contract signer's order is refused.

    Raises RpcUnavailable (from the checker) when the ERC-1271 question cannot be answered.
    """
    try:
        got = recover_address_bytes(digest, signature)
    except InvalidSignature as exc:
        recovered, reason = None, exc.reason
    else:
        if got == bytes.fromhex(signer[2:]):
            return
        recovered, reason = to_checksum_address(got), "signed by another account"
    if checker is None:
        if len(signature) not in (64, 65):
            reason += " (a contract signer's signature needs an ERC-1271 check, not made here)"
    elif checker.is_valid_signature(signer, digest, signature):
        return
    else:
        reason += "; nor does the signer accept it through ERC-1271"
    raise InvalidSignature(digest, signer, recovered, reason)


def recover(message_hash: bytes, signature: bytes) -> ChecksumAddress:
    """The checksummed address that signed ``message_hash`` (fast path)."""
    return to_checksum_address(recover_address_bytes(message_hash, signature))


def signer_of(message: Offer | Bid) -> ChecksumAddress:
    """Who must have signed an order: the provider of an offer, the lab of a bid."""
    return message.provider if isinstance(message, Offer) else message.lab


def verify(
    domain: Domain,
    signed: Signed[Offer] | Signed[Bid],
    *,
    signer: str | None = None,
    checker: ContractSignatureChecker | None = None,
) -> None:
    """Raise InvalidSignature unless the order's own signer (or ``signer``) signed it: by ECDSA,
    or, with a ``checker``, by ERC-1271 (see :func:`verify_signature`)."""
    expected = signer if signer is not None else signer_of(signed.message)
    verify_signature(digest(domain, signed.message), expected, signed.signature, checker)


def verify_voucher(domain: Domain, signed: Signed[Voucher], lab: str) -> None:
    """Raise InvalidSignature unless ``lab`` signed the voucher."""
    _verify_signer(domain, signed, lab)


def verify_receipt(domain: Domain, signed: Signed[Receipt], provider: str) -> None:
    """Raise InvalidSignature unless ``provider`` (the lease's provider) signed the receipt."""
    _verify_signer(domain, signed, provider)


def _verify_signer(
    domain: Domain,
    signed: Signed[Offer] | Signed[Bid] | Signed[Voucher] | Signed[Receipt],
    expected: str,
) -> None:
    verify_signature(digest(domain, signed.message), expected, signed.signature)


@dataclass(frozen=True, slots=True)
class Rejected:
    """An order that failed bulk verification, with why."""

    index: int
    error: InvalidSignature


def verify_many(
    domain: Domain, orders: Iterable[Signed[Offer] | Signed[Bid]]
) -> tuple[list[Signed[Offer] | Signed[Bid]], list[Rejected]]:
    """Verify a batch through the fast path: (valid orders, rejected ones with their errors)."""
    valid: list[Signed[Offer] | Signed[Bid]] = []
    rejected: list[Rejected] = []
    for i, signed in enumerate(orders):
        try:
            verify(domain, signed)
        except InvalidSignature as exc:
            rejected.append(Rejected(i, exc))
        else:
            valid.append(signed)
    return valid, rejected


def sign_with_eth_account(
    domain: Domain, message: Offer | Bid | Voucher | Receipt, key: bytes | str
) -> bytes:
    """Reference signer: eth-account's ``sign_typed_data`` over the standard EIP-712 JSON."""
    signed = Account.sign_typed_data(key, full_message=typed_data(domain, message))
    return bytes(signed.signature)


def recover_with_eth_account(
    domain: Domain, message: Offer | Bid | Voucher | Receipt, signature: bytes
) -> str:
    """Reference recovery: eth-account's ``recover_message(encode_typed_data(...))``."""
    encoded = encode_typed_data(full_message=typed_data(domain, message))
    return str(Account.recover_message(encoded, signature=signature))


__all__ = [
    "ContractSignatureChecker",
    "Rejected",
    "SigningKey",
    "recover",
    "recover_address_bytes",
    "recover_with_eth_account",
    "sign_with_eth_account",
    "signer_of",
    "to_compact",
    "verify",
    "verify_many",
    "verify_receipt",
    "verify_signature",
    "verify_voucher",
]
