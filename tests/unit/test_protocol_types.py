"""The protocol dataclasses refuse every value the contract's types cannot hold.

The Hypothesis strategies at the top are shared with ``test_codec`` and ``test_eip712_signing``:
every generator draws the edge values (0, the type's maximum, 32-character model names) often.
"""

from __future__ import annotations

import dataclasses
import string
from typing import Any

import pytest
from eth_abi.abi import encode as abi_encode
from eth_hash.auto import keccak
from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from market.errors import InvalidField
from market.protocol.types import (
    UINT8_MAX,
    UINT32_MAX,
    UINT64_MAX,
    UINT256_MAX,
    ZERO_HASH,
    Bid,
    Billing,
    Lease,
    Offer,
    Signed,
    Voucher,
    checksum_address,
    gpu_model_from_bytes32,
    gpu_model_to_bytes32,
)

pytestmark = pytest.mark.unit

MessageClass = type[Offer] | type[Bid] | type[Voucher] | type[Lease]
MESSAGE_CLASSES: tuple[MessageClass, ...] = (
    Offer,
    Bid,
    Voucher,
    Lease,
)
_MAX = {"uint8": UINT8_MAX, "uint32": UINT32_MAX, "uint64": UINT64_MAX, "uint256": UINT256_MAX}


# --- strategies, shared with the codec and signing tests ------------------------------------


def uints(solidity_type: str) -> st.SearchStrategy[int]:
    top = _MAX[solidity_type]
    return st.one_of(st.sampled_from((0, 1, top - 1, top)), st.integers(0, top))


def addresses() -> st.SearchStrategy[ChecksumAddress]:
    edges = st.sampled_from((bytes(20), b"\xff" * 20))
    return st.one_of(edges, st.binary(min_size=20, max_size=20)).map(to_checksum_address)


def bytes32s() -> st.SearchStrategy[bytes]:
    edges = st.sampled_from((bytes(32), b"\xff" * 32))
    return st.one_of(edges, st.binary(min_size=32, max_size=32))


PRINTABLE_ASCII = "".join(chr(c) for c in range(0x20, 0x7F))


def gpu_models() -> st.SearchStrategy[str]:
    edges = st.sampled_from(("H100", "A100-SXM4-80GB", "x", "M" * 32, string.ascii_letters[:32]))
    return st.one_of(edges, st.text(alphabet=PRINTABLE_ASCII, min_size=1, max_size=32))


@st.composite
def offers(draw: st.DrawFn) -> Offer:
    low, high = sorted((draw(uints("uint64")), draw(uints("uint64"))))
    return Offer(
        provider=draw(addresses()),
        gpu_model=draw(gpu_models()),
        gpu_count=draw(uints("uint32")),
        memory_gib=draw(uints("uint32")),
        price_per_gpu_second=draw(uints("uint256")),
        min_duration=low,
        max_duration=high,
        expiry=draw(uints("uint64")),
        nonce=draw(uints("uint256")),
        bandwidth_gbps=draw(uints("uint32")),
        features=draw(uints("uint256")),
        billing_modes=draw(uints("uint8")),
        receipt_signer=draw(addresses()),
    )


@st.composite
def bids(draw: st.DrawFn) -> Bid:
    return Bid(
        lab=draw(addresses()),
        gpu_model=draw(gpu_models()),
        gpu_count=draw(uints("uint32")),
        max_price_per_gpu_second=draw(uints("uint256")),
        duration=draw(uints("uint64")),
        expiry=draw(uints("uint64")),
        nonce=draw(uints("uint256")),
        job_spec_hash=draw(bytes32s()),
        min_memory_gib=draw(uints("uint32")),
        min_bandwidth_gbps=draw(uints("uint32")),
        required_features=draw(uints("uint256")),
        accepted_features=draw(uints("uint256")),
        billing=draw(st.sampled_from(Billing)),
        all_or_none=draw(st.booleans()),
        voucher_signer=draw(addresses()),
    )


@st.composite
def vouchers(draw: st.DrawFn) -> Voucher:
    return Voucher(
        lease_id=draw(bytes32s()),
        cumulative_amount=draw(uints("uint256")),
        receipt_hash=draw(bytes32s()),
    )


@st.composite
def leases(draw: st.DrawFn) -> Lease:
    return Lease(
        provider=draw(addresses()),
        lab=draw(addresses()),
        gpus=draw(uints("uint32")),
        price_per_gpu_second=draw(uints("uint256")),
        start=draw(uints("uint64")),
        duration=draw(uints("uint64")),
        salt=draw(bytes32s()),
        billing=draw(st.sampled_from(Billing)),
        receipt_signer=draw(addresses()),
        voucher_signer=draw(addresses()),
    )


def orders() -> st.SearchStrategy[Offer | Bid]:
    return st.one_of(offers(), bids())


def signables() -> st.SearchStrategy[Offer | Bid | Voucher]:
    return st.one_of(offers(), bids(), vouchers())


def messages() -> st.SearchStrategy[Offer | Bid | Voucher | Lease]:
    return st.one_of(offers(), bids(), vouchers(), leases())


# --- fixed, valid instances to vary one field at a time -----------------------------------

ALICE = "0x" + "a1" * 20
BOB = "0x" + "b0" * 20

BASE: dict[type, Any] = {
    Offer: Offer(
        provider=to_checksum_address(ALICE),
        gpu_model="H100",
        gpu_count=8,
        memory_gib=80,
        price_per_gpu_second=1000,
        min_duration=0,
        max_duration=UINT64_MAX,
        expiry=1_700_000_000,
        nonce=1,
    ),
    Bid: Bid(
        lab=to_checksum_address(BOB),
        gpu_model="H100",
        gpu_count=4,
        max_price_per_gpu_second=1200,
        duration=3600,
        expiry=1_700_000_000,
        nonce=2,
    ),
    Voucher: Voucher(lease_id=b"\x01" * 32, cumulative_amount=500),
    Lease: Lease(
        provider=to_checksum_address(ALICE),
        lab=to_checksum_address(BOB),
        gpus=4,
        price_per_gpu_second=1000,
        start=1_700_000_000,
        duration=3600,
        salt=b"\x02" * 32,
    ),
}


def _fields_of(solidity_types: tuple[str, ...], *, model: bool = False) -> list[Any]:
    return [
        pytest.param(cls, attr, t, id=f"{cls.TYPE_NAME}.{attr}")
        for cls in MESSAGE_CLASSES
        for attr, _, t in cls.FIELDS
        if t in solidity_types and (attr == "gpu_model") == model
    ]


UINT_FIELDS = _fields_of(("uint32", "uint64", "uint256"))
ADDRESS_FIELDS = _fields_of(("address",))
BYTES32_FIELDS = _fields_of(("bytes32",))
MODEL_FIELDS = _fields_of(("bytes32",), model=True)


def _refused(cls: type, attr: str, value: object) -> InvalidField:
    with pytest.raises(InvalidField) as info:
        dataclasses.replace(BASE[cls], **{attr: value})
    assert info.value.message_type == cls.__name__
    assert info.value.field == attr
    return info.value


def test_base_instances_are_valid() -> None:
    for cls, obj in BASE.items():
        assert cls.__name__ == obj.TYPE_NAME
        assert dataclasses.replace(obj) == obj


# --- uint fields -----------------------------------------------------------------------------


@pytest.mark.parametrize(("cls", "attr", "solidity_type"), UINT_FIELDS)
def test_uint_field_accepts_zero_and_its_maximum(cls: type, attr: str, solidity_type: str) -> None:
    for value in (0, _MAX[solidity_type]):  # the base offer's durations are 0..UINT64_MAX
        assert getattr(dataclasses.replace(BASE[cls], **{attr: value}), attr) == value


@pytest.mark.parametrize(("cls", "attr", "solidity_type"), UINT_FIELDS)
def test_uint_field_refuses_values_out_of_range(cls: type, attr: str, solidity_type: str) -> None:
    assert "out of range" in _refused(cls, attr, _MAX[solidity_type] + 1).reason
    assert "out of range" in _refused(cls, attr, -1).reason


@pytest.mark.parametrize(("cls", "attr", "solidity_type"), UINT_FIELDS)
@pytest.mark.parametrize("value", [True, False, 1.0, "1", None, b"\x01"])
def test_uint_field_refuses_non_int_values_including_bool(
    cls: type, attr: str, solidity_type: str, value: object
) -> None:
    assert "must be an int" in _refused(cls, attr, value).reason


def test_offer_refuses_min_duration_above_max_duration() -> None:
    offer = dataclasses.replace(BASE[Offer], min_duration=10, max_duration=10)
    assert offer.min_duration == offer.max_duration == 10
    with pytest.raises(InvalidField) as info:
        dataclasses.replace(BASE[Offer], min_duration=11, max_duration=10)
    assert (info.value.message_type, info.value.field) == ("Offer", "min_duration")


# --- addresses -------------------------------------------------------------------------------


@pytest.mark.parametrize(("cls", "attr", "solidity_type"), ADDRESS_FIELDS)
@given(raw=st.binary(min_size=20, max_size=20))
@settings(max_examples=25)
def test_address_in_one_case_is_normalised_to_its_checksum(
    cls: type, attr: str, solidity_type: str, raw: bytes
) -> None:
    checksummed = to_checksum_address(raw)
    for spelled in ("0x" + raw.hex(), "0x" + raw.hex().upper(), checksummed):
        assert getattr(dataclasses.replace(BASE[cls], **{attr: spelled}), attr) == checksummed


@pytest.mark.parametrize(("cls", "attr", "solidity_type"), ADDRESS_FIELDS)
def test_address_with_a_wrong_checksum_is_refused(cls: type, attr: str, solidity_type: str) -> None:
    good = to_checksum_address(ALICE)  # mixes upper and lower case letters
    flipped = next(i for i, c in enumerate(good) if c.isalpha() and i > 1)
    bad = good[:flipped] + good[flipped].swapcase() + good[flipped + 1 :]
    assert bad.lower() == good.lower()
    assert bad not in (bad.lower(), "0x" + bad[2:].upper())  # still mixed case
    assert "checksum" in _refused(cls, attr, bad).reason


@pytest.mark.parametrize(("cls", "attr", "solidity_type"), ADDRESS_FIELDS)
@pytest.mark.parametrize(
    "value",
    [
        "0x" + "g" * 40,  # not hex
        "0x" + "a1" * 19,  # 19 bytes
        "0x" + "a1" * 21,  # 21 bytes
        "a1" * 21,  # no 0x prefix (same length)
        "",
        bytes.fromhex("a1" * 20),  # raw bytes are the wire form, not the object's
        None,
    ],
)
def test_malformed_address_is_refused(
    cls: type, attr: str, solidity_type: str, value: object
) -> None:
    _refused(cls, attr, value)


# --- bytes32 and gpu model -------------------------------------------------------------------


@pytest.mark.parametrize(("cls", "attr", "solidity_type"), BYTES32_FIELDS)
@pytest.mark.parametrize(
    "value", [b"", b"\x01" * 31, b"\x01" * 33, bytearray(32), "0x" + "00" * 32, None]
)
def test_bytes32_field_refuses_anything_but_32_bytes(
    cls: type, attr: str, solidity_type: str, value: object
) -> None:
    assert _refused(cls, attr, value).reason == "must be 32 bytes"


@pytest.mark.parametrize(("cls", "attr", "solidity_type"), MODEL_FIELDS)
@pytest.mark.parametrize("model", ["x", "H100", "A100 SXM4 80GB", "M" * 32, PRINTABLE_ASCII[:32]])
def test_gpu_model_accepts_up_to_32_printable_ascii_characters(
    cls: type, attr: str, solidity_type: str, model: str
) -> None:
    obj = dataclasses.replace(BASE[cls], gpu_model=model)
    assert obj.gpu_model == model
    assert gpu_model_from_bytes32(gpu_model_to_bytes32(model)) == model
    assert len(gpu_model_to_bytes32(model)) == 32


@pytest.mark.parametrize(("cls", "attr", "solidity_type"), MODEL_FIELDS)
@pytest.mark.parametrize(
    "model",
    ["", "M" * 33, "H100\x00", "H100\n", "\x7f", "H100é", "\uff28100", b"H100", None, 100],
)
def test_gpu_model_refuses_empty_long_non_ascii_and_non_printable_names(
    cls: type, attr: str, solidity_type: str, model: object
) -> None:
    _refused(cls, attr, model)


def test_gpu_model_bytes32_is_left_aligned_and_zero_padded() -> None:
    assert gpu_model_to_bytes32("H100") == b"H100" + bytes(28)
    assert gpu_model_to_bytes32("M" * 32) == b"M" * 32


# --- lease id, signed, immutability ----------------------------------------------------------


@given(lease=leases())
@settings(max_examples=200)
def test_lease_id_is_keccak_of_the_abi_encoded_terms(lease: Lease) -> None:
    types = ["address", "address", "uint32", "uint256", "uint64", "uint64", "bytes32", "uint8"]
    types += ["address", "address", "address", "uint256"]
    values = [
        lease.provider,
        lease.lab,
        lease.gpus,
        lease.price_per_gpu_second,
        lease.start,
        lease.duration,
        lease.salt,
        int(lease.billing),
        lease.receipt_signer,
        lease.voucher_signer,
        lease.arbiter,
        lease.min_charge,
    ]
    # A static tuple is encoded in place, so abi.encode(lease) is the fields' words in order.
    encoded = abi_encode(types, values)
    assert len(encoded) == 12 * 32
    assert lease.id == keccak(encoded)
    assert lease.end == lease.start + lease.duration
    assert lease.escrow == lease.price_per_gpu_second * lease.gpus * lease.duration


def test_lease_id_changes_with_every_term() -> None:
    lease = BASE[Lease]
    changed = {
        "provider": to_checksum_address(BOB),
        "lab": to_checksum_address(ALICE),
        "gpus": 5,
        "price_per_gpu_second": 1001,
        "start": 1_700_000_001,
        "duration": 3601,
        "salt": b"\x03" * 32,
        "billing": Billing.METERED,
        "receipt_signer": to_checksum_address(ALICE),
        "voucher_signer": to_checksum_address(BOB),
        "arbiter": to_checksum_address(BOB),
        "min_charge": 7,
    }
    assert set(changed) == {attr for attr, _, _ in Lease.FIELDS}
    ids = {lease.id} | {dataclasses.replace(lease, **{k: v}).id for k, v in changed.items()}
    assert len(ids) == 1 + len(changed)


@pytest.mark.parametrize(
    "signature",
    [b"", b"\x01" * (Signed.MAX_SIGNATURE_LENGTH + 1), bytearray(65), "00" * 65, None],
    ids=["empty", "over-the-cap", "bytearray", "str", "None"],
)
def test_signed_refuses_a_signature_that_is_not_1_to_max_bytes(signature: object) -> None:
    with pytest.raises(InvalidField) as info:
        Signed(BASE[Voucher], signature)  # type: ignore[arg-type]
    assert (info.value.message_type, info.value.field) == ("Voucher", "signature")


@pytest.mark.parametrize("length", [1, 64, 65, 66, Signed.MAX_SIGNATURE_LENGTH])
def test_signed_accepts_ecdsa_lengths_and_contract_signatures_up_to_the_cap(length: int) -> None:
    assert Signed.MAX_SIGNATURE_LENGTH == 4096
    assert len(Signed(BASE[Bid], b"\x07" * length).signature) == length


def test_signed_accepts_65_bytes_and_hides_them_from_repr() -> None:
    signed = Signed(BASE[Bid], b"\x07" * 65)
    assert signed.signature == b"\x07" * 65
    assert "signature" not in repr(signed)


@pytest.mark.parametrize("cls", MESSAGE_CLASSES)
def test_messages_are_frozen(cls: MessageClass) -> None:
    attr = cls.FIELDS[0][0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(BASE[cls], attr, getattr(BASE[cls], attr))


def test_default_hashes_are_zero() -> None:
    assert BASE[Bid].job_spec_hash == ZERO_HASH == bytes(32)
    assert BASE[Voucher].receipt_hash == ZERO_HASH


@given(message=messages())
@settings(max_examples=100)
def test_generated_messages_hold_every_declared_field(
    message: Offer | Bid | Voucher | Lease,
) -> None:
    # FIELDS is the ABI order; terms with defaults come last among the attributes.
    names = {f.name for f in dataclasses.fields(message)}
    assert names == {attr for attr, _, _ in message.FIELDS}
    assert dataclasses.replace(message) == message


@given(st.binary(min_size=20, max_size=20))
def test_checksum_address_equals_eth_utils(raw: bytes) -> None:
    hex_address = "0x" + raw.hex()
    assert checksum_address(hex_address) == to_checksum_address(hex_address)
    assert checksum_address("0x" + raw.hex().upper()) == to_checksum_address(hex_address)
