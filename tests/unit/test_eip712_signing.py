"""EIP-712 hashing and signing agree with eth-account, and every altered signature is refused."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from coincurve import PublicKey
from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_hash.auto import keccak
from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from market.errors import InvalidKey, InvalidSignature
from market.protocol.eip712 import (
    DOMAIN_NAME,
    DOMAIN_VERSION,
    TYPEHASH,
    Domain,
    digest,
    order_hash,
    struct_hash,
    type_string,
    typed_data,
)
from market.protocol.signing import (
    SECP256K1_N,
    SigningKey,
    recover,
    recover_with_eth_account,
    sign_with_eth_account,
    signer_of,
    verify,
    verify_many,
    verify_voucher,
)
from market.protocol.types import Bid, Offer, Signed, Voucher
from tests.unit.test_protocol_types import (
    BASE,
    addresses,
    bids,
    offers,
    orders,
    signables,
    uints,
    vouchers,
)

pytestmark = pytest.mark.unit

# The type strings written next to the type hashes in contracts/src/Market.sol.
CONTRACT_TYPE_STRINGS = {
    Offer: "Offer(address provider,bytes32 gpuModel,uint32 gpuCount,uint32 memoryGiB,"
    "uint32 bandwidthGbps,uint256 features,uint8 billingModes,uint256 pricePerGpuSecond,"
    "uint64 minDuration,uint64 maxDuration,uint64 expiry,uint256 nonce,address receiptSigner,"
    "address arbiter,uint16 minChargeBps)",
    Bid: "Bid(address lab,bytes32 gpuModel,uint32 gpuCount,uint32 minMemoryGiB,"
    "uint32 minBandwidthGbps,uint256 requiredFeatures,uint256 acceptedFeatures,uint8 billing,"
    "bool allOrNone,uint256 maxPricePerGpuSecond,uint64 duration,uint64 expiry,uint256 nonce,"
    "bytes32 jobSpecHash,address voucherSigner,address arbiter,uint16 maxMinChargeBps)",
    Voucher: "Voucher(bytes32 leaseId,uint256 cumulativeAmount,bytes32 receiptHash)",
}
DOMAIN_TYPE = b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
DOMAIN = Domain(31337, to_checksum_address("0x" + "5f" * 20))
KEY = SigningKey(b"\x42" * 32)
OTHER_KEY = SigningKey(b"\x43" * 32)
Signable = Offer | Bid | Voucher


def private_keys() -> st.SearchStrategy[bytes]:
    edges = st.sampled_from((1, 2, SECP256K1_N - 1))
    scalars = st.one_of(edges, st.integers(1, SECP256K1_N - 1))
    return scalars.map(lambda k: k.to_bytes(32, "big"))


@st.composite
def domains(draw: st.DrawFn) -> Domain:
    return Domain(draw(uints("uint256")), draw(addresses()))


def _signed_by(message: Signable, address: ChecksumAddress) -> Any:
    """``message`` with its signer field (provider or lab) set to ``address``."""
    if isinstance(message, Offer):
        return dataclasses.replace(message, provider=address)
    if isinstance(message, Bid):
        return dataclasses.replace(message, lab=address)
    return message


def _verify_as(domain: Domain, signed: Any, signer: ChecksumAddress) -> None:
    """Verify an order or a voucher against ``signer``, whatever the order's signer field."""
    if isinstance(signed.message, Voucher):
        verify_voucher(domain, signed, signer)
    else:
        verify(domain, signed, signer=signer)


def _verify(domain: Domain, signed: Any, key: SigningKey) -> None:
    """Verify an order against its own signer field, a voucher against ``key``'s address."""
    if isinstance(signed.message, Voucher):
        verify_voucher(domain, signed, key.address)
    else:
        verify(domain, signed)


# --- hashing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [Offer, Bid, Voucher])
def test_type_strings_and_hashes_match_the_contract(cls: type[Signable]) -> None:
    assert type_string(cls) == CONTRACT_TYPE_STRINGS[cls]
    assert TYPEHASH[cls] == keccak(CONTRACT_TYPE_STRINGS[cls].encode())


@given(domain=domains())
@settings(max_examples=100)
def test_domain_separator_is_the_abi_encoded_domain(domain: Domain) -> None:
    encoded = abi_encode(
        ["bytes32", "bytes32", "bytes32", "uint256", "address"],
        [
            keccak(DOMAIN_TYPE),
            keccak(DOMAIN_NAME.encode()),
            keccak(DOMAIN_VERSION.encode()),
            domain.chain_id,
            domain.verifying_contract,
        ],
    )
    assert domain.separator == keccak(encoded)


@given(domain=domains(), message=signables())
@settings(max_examples=200)
def test_digest_equals_eth_accounts_typed_data_hash(domain: Domain, message: Signable) -> None:
    signable = encode_typed_data(full_message=typed_data(domain, message))
    assert signable.version == b"\x01"
    assert signable.header == domain.separator
    assert signable.body == struct_hash(message)
    expected = keccak(b"\x19" + signable.version + signable.header + signable.body)
    assert digest(domain, message) == expected


@given(domain=domains(), order=orders())
@settings(max_examples=50)
def test_order_hash_is_the_digest(domain: Domain, order: Offer | Bid) -> None:
    assert order_hash(domain, order) == digest(domain, order)
    assert len(order_hash(domain, order)) == 32


# --- signing and recovery agree with eth-account ---------------------------------------------


@given(domain=domains(), drawn=signables(), key=private_keys())
@settings(max_examples=200)
def test_signature_is_byte_identical_to_eth_accounts(
    domain: Domain, drawn: Signable, key: bytes
) -> None:
    signer = SigningKey(key)
    assert signer.address == Account.from_key(key).address
    message = _signed_by(drawn, signer.address)
    signed = signer.sign(domain, message)
    assert signed.message == message
    assert signed.signature == sign_with_eth_account(domain, message, key)
    assert signed.signature[64] in (27, 28)
    assert int.from_bytes(signed.signature[32:64], "big") <= SECP256K1_N // 2


@given(domain=domains(), drawn=signables(), key=private_keys())
@settings(max_examples=200)
def test_recover_and_verify_agree_with_eth_account(
    domain: Domain, drawn: Signable, key: bytes
) -> None:
    signer = SigningKey(key)
    message = _signed_by(drawn, signer.address)
    signed = signer.sign(domain, message)
    assert recover(digest(domain, message), signed.signature) == signer.address
    assert recover_with_eth_account(domain, message, signed.signature) == signer.address
    _verify(domain, signed, signer)  # does not raise


def test_signing_key_accepts_hex_and_refuses_a_wrong_length() -> None:
    assert SigningKey("0x" + "42" * 32).address == KEY.address
    assert SigningKey("42" * 32).address == KEY.address
    for bad in (b"\x42" * 31, b"\x42" * 33, "0x" + "42" * 31):
        with pytest.raises(InvalidKey, match="32 bytes"):
            SigningKey(bad)


def test_signer_of_an_order_is_its_provider_or_lab() -> None:
    assert signer_of(BASE[Offer]) == BASE[Offer].provider
    assert signer_of(BASE[Bid]) == BASE[Bid].lab


# --- tampering -------------------------------------------------------------------------------


def _other_value(value: object, attr: str) -> object:
    """A different value of the same field that the dataclass still accepts (one bit or char)."""
    if isinstance(value, bytes):
        return value[:-1] + bytes([value[-1] ^ 1])
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value ^ 1  # stays within uint32/uint64/uint256: each maximum is odd
    assert isinstance(value, str)
    if attr == "gpu_model":
        last = chr(0x20 + (ord(value[-1]) - 0x20 + 1) % 95)  # next printable ASCII character
        return value[:-1] + last
    raw = bytes.fromhex(value[2:])  # an address
    return to_checksum_address(raw[:-1] + bytes([raw[-1] ^ 1]))


def _tamper_params() -> list[Any]:
    return [
        pytest.param(strategy, attr, id=f"{cls.TYPE_NAME}.{attr}")
        for cls, strategy in (
            # strict min < max, so that flipping a duration's low bit keeps min <= max
            (Offer, offers().filter(lambda o: o.min_duration < o.max_duration)),
            (Bid, bids()),
            (Voucher, vouchers()),
        )
        for attr, _, _ in cls.FIELDS
    ]


@pytest.mark.parametrize(("strategy", "attr"), _tamper_params())
@given(data=st.data())
@settings(max_examples=30)
def test_tampering_with_any_signed_field_fails_verification(
    strategy: st.SearchStrategy[Signable], attr: str, data: st.DataObject
) -> None:
    message = _signed_by(data.draw(strategy), KEY.address)
    signed = KEY.sign(DOMAIN, message)
    _verify(DOMAIN, signed, KEY)  # the untouched order verifies

    tampered = dataclasses.replace(message, **{attr: _other_value(getattr(message, attr), attr)})
    assert getattr(tampered, attr) != getattr(message, attr)
    assert digest(DOMAIN, tampered) != digest(DOMAIN, message)
    forged: Any = Signed(tampered, signed.signature)
    with pytest.raises(InvalidSignature) as info:
        _verify(DOMAIN, forged, KEY)
    assert info.value.digest == digest(DOMAIN, tampered)
    assert info.value.recovered != KEY.address
    with pytest.raises(InvalidSignature):  # also against the original signer, named explicitly
        _verify_as(DOMAIN, forged, KEY.address)


@given(drawn=signables(), chain_id=uints("uint256"))
@settings(max_examples=100)
def test_signature_for_another_chain_fails_verification(drawn: Signable, chain_id: int) -> None:
    message = _signed_by(drawn, KEY.address)
    other = Domain(chain_id ^ 1, DOMAIN.verifying_contract)
    signed: Any = KEY.sign(other, message)
    _verify(other, signed, KEY)
    with pytest.raises(InvalidSignature) as info:
        _verify(Domain(chain_id, DOMAIN.verifying_contract), signed, KEY)
    assert info.value.expected == KEY.address


@given(drawn=signables(), contract=addresses())
@settings(max_examples=100)
def test_signature_for_another_contract_fails_verification(
    drawn: Signable, contract: ChecksumAddress
) -> None:
    message = _signed_by(drawn, KEY.address)
    here = Domain(DOMAIN.chain_id, contract)
    elsewhere = Domain(DOMAIN.chain_id, _other_value(contract, "verifying_contract"))  # type: ignore[arg-type]
    signed: Any = KEY.sign(elsewhere, message)
    _verify(elsewhere, signed, KEY)
    with pytest.raises(InvalidSignature):
        _verify(here, signed, KEY)


def test_signature_by_another_key_names_who_signed() -> None:
    signed: Any = OTHER_KEY.sign(DOMAIN, _signed_by(BASE[Bid], KEY.address))
    with pytest.raises(InvalidSignature) as info:
        verify(DOMAIN, signed)
    assert (info.value.expected, info.value.recovered) == (KEY.address, OTHER_KEY.address)
    assert info.value.reason == "signed by another account"
    verify(DOMAIN, signed, signer=OTHER_KEY.address)  # an explicit signer takes precedence


# --- malformed and malleable signatures ------------------------------------------------------


def _malleable(signature: bytes) -> bytes:
    """The other valid signature of the same hash: s -> n - s, with v flipped."""
    s = int.from_bytes(signature[32:64], "big")
    v = 27 + 28 - signature[64]
    return signature[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([v])


@given(drawn=signables(), key=private_keys())
@settings(max_examples=100)
def test_malleable_signature_is_refused_though_it_is_valid(drawn: Signable, key: bytes) -> None:
    signer = SigningKey(key)
    message = _signed_by(drawn, signer.address)
    signed = signer.sign(DOMAIN, message)
    h = digest(DOMAIN, message)
    twin = _malleable(signed.signature)
    # The twin is a valid secp256k1 signature by the same key (libsecp256k1 recovers it) ...
    public = PublicKey.from_signature_and_message(
        twin[:64] + bytes([twin[64] - 27]), h, hasher=None
    )
    assert to_checksum_address(keccak(public.format(compressed=False)[1:])[-20:]) == signer.address
    # ... and recover, like OpenZeppelin's ECDSA, refuses it.
    with pytest.raises(InvalidSignature, match="malleable"):
        recover(h, twin)
    with pytest.raises(InvalidSignature, match="malleable"):
        _verify(DOMAIN, Signed(message, twin), signer)


@pytest.mark.parametrize("length", [0, 1, 63, 66, 130])
def test_signature_of_the_wrong_length_is_refused(length: int) -> None:
    signature = KEY.sign(DOMAIN, BASE[Voucher]).signature
    wrong = (signature * 3)[:length]
    with pytest.raises(InvalidSignature, match=f"length {length}"):
        recover(digest(DOMAIN, BASE[Voucher]), wrong)


@pytest.mark.parametrize("v", [0, 1, 26, 29, 35, 36, 255])
def test_signature_with_a_bad_v_is_refused(v: int) -> None:
    message = _signed_by(BASE[Offer], KEY.address)
    signature = KEY.sign(DOMAIN, message).signature
    bad = signature[:64] + bytes([v])
    with pytest.raises(InvalidSignature, match=f"v is {v}"):
        recover(digest(DOMAIN, message), bad)
    with pytest.raises(InvalidSignature) as info:
        verify(DOMAIN, Signed(message, bad))
    assert (info.value.expected, info.value.recovered) == (KEY.address, None)


@pytest.mark.parametrize(
    ("r", "s"),
    [(0, 1), (1, 0), (SECP256K1_N, 1), (2**256 - 1, 1), (0, 0)],
    ids=["r=0", "s=0", "r=n", "r=max", "both-zero"],
)
def test_signature_with_r_or_s_out_of_range_is_refused(r: int, s: int) -> None:
    bad = r.to_bytes(32, "big") + s.to_bytes(32, "big") + b"\x1b"
    with pytest.raises(InvalidSignature):
        recover(digest(DOMAIN, BASE[Voucher]), bad)


@given(
    r=st.integers(1, SECP256K1_N - 1),
    s=st.integers(1, SECP256K1_N // 2),
    v=st.sampled_from([27, 28]),
)
@settings(max_examples=200)
def test_random_signature_recovers_as_eth_account_does_or_is_refused(
    r: int, s: int, v: int
) -> None:
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v])
    h = digest(DOMAIN, BASE[Voucher])
    if _is_curve_x(r):
        assert recover(h, signature) == recover_with_eth_account(DOMAIN, BASE[Voucher], signature)
    else:
        with pytest.raises(InvalidSignature, match="unrecoverable"):
            recover(h, signature)


SECP256K1_P = 2**256 - 2**32 - 977


def _is_curve_x(x: int) -> bool:
    """Whether some point of secp256k1 (y^2 = x^3 + 7) has x as its x coordinate (Euler)."""
    y2 = (x**3 + 7) % SECP256K1_P
    return y2 == 0 or pow(y2, (SECP256K1_P - 1) // 2, SECP256K1_P) == 1


# --- bulk verification -----------------------------------------------------------------------


@given(
    batch=st.lists(orders(), max_size=12),
    corrupt=st.sets(st.integers(0, 11)),
    how=st.sampled_from(["tamper", "other-key", "malleable", "bad-v"]),
)
@settings(max_examples=100)
def test_verify_many_splits_valid_and_invalid_orders(
    batch: list[Offer | Bid], corrupt: set[int], how: str
) -> None:
    signed: list[Any] = []
    for i, order in enumerate(batch):
        order = _signed_by(order, KEY.address)
        good = KEY.sign(DOMAIN, order)
        if i not in corrupt:
            signed.append(good)
        elif how == "tamper":
            signed.append(Signed(dataclasses.replace(order, nonce=order.nonce ^ 1), good.signature))
        elif how == "other-key":
            signed.append(OTHER_KEY.sign(DOMAIN, order))
        elif how == "malleable":
            signed.append(Signed(order, _malleable(good.signature)))
        else:
            signed.append(Signed(order, good.signature[:64] + b"\x00"))

    valid, rejected = verify_many(DOMAIN, iter(signed))

    bad = sorted(i for i in corrupt if i < len(batch))
    assert valid == [s for i, s in enumerate(signed) if i not in corrupt]
    assert [r.index for r in rejected] == bad
    for r in rejected:
        assert isinstance(r.error, InvalidSignature)
        assert r.error.digest == digest(DOMAIN, signed[r.index].message)
