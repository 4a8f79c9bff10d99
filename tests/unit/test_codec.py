"""The msgpack codec: every message survives a round trip, and every malformed frame is refused.

Each refusal test starts from a valid message's wire tree, changes one thing, and asserts the exact
error class, so a test cannot pass because of some other defect in its input.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from eth_utils.address import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from market.errors import (
    DecodeError,
    FrameTooLarge,
    InvalidField,
    ProtocolError,
    UnknownMessageType,
)
from market.protocol import codec
from market.protocol.codec import MAX_FRAME_SIZE, decode, decode_as, encode
from market.protocol.types import (
    UINT32_MAX,
    UINT64_MAX,
    UINT256_MAX,
    Bid,
    Lease,
    Offer,
    Signed,
    Voucher,
    unsafe_from_codec,
)
from tests.unit.test_protocol_types import (
    BASE,
    MESSAGE_CLASSES,
    bids,
    leases,
    messages,
    offers,
    signables,
    vouchers,
)

pytestmark = pytest.mark.unit

SIGNATURE = bytes(range(65))
Tree = dict[str, Any]


def _signed(message: Offer | Bid | Voucher, signature: bytes = SIGNATURE) -> Any:
    return Signed(message, signature)


# --- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "strategy", [offers(), bids(), vouchers(), leases()], ids=["Offer", "Bid", "Voucher", "Lease"]
)
@given(data=st.data())
@settings(max_examples=200)
def test_message_round_trips_to_an_equal_object(
    strategy: st.SearchStrategy[Offer | Bid | Voucher | Lease], data: st.DataObject
) -> None:
    message = data.draw(strategy)
    wire = encode(message)
    decoded = decode(wire)
    assert decoded == message
    assert type(decoded) is type(message)
    assert encode(decoded) == wire  # one encoding per message
    assert decode_as(wire, type(message)) == message


# ECDSA (65, or 64 in EIP-2098 form) and a contract signer's signature of any length up to the cap.
SIGNATURES = st.one_of(
    st.binary(min_size=64, max_size=65),
    st.binary(min_size=1, max_size=Signed.MAX_SIGNATURE_LENGTH),
    st.just(b"\x05" * Signed.MAX_SIGNATURE_LENGTH),
)


@given(message=signables(), signature=SIGNATURES)
@settings(max_examples=200)
def test_signed_message_round_trips_to_an_equal_object(
    message: Offer | Bid | Voucher, signature: bytes
) -> None:
    signed = _signed(message, signature)
    wire = encode(signed)
    decoded = decode(wire)
    assert decoded == signed
    assert type(decoded) is Signed
    assert type(decoded.message) is type(message)
    assert decoded.signature == signature
    assert encode(decoded) == wire


EDGE_MESSAGES = [
    Offer(
        provider=to_checksum_address(b"\xff" * 20),
        gpu_model="M" * 32,
        gpu_count=UINT32_MAX,
        memory_gib=UINT32_MAX,
        price_per_gpu_second=UINT256_MAX,
        min_duration=UINT64_MAX,
        max_duration=UINT64_MAX,
        expiry=UINT64_MAX,
        nonce=UINT256_MAX,
        bandwidth_gbps=UINT32_MAX,
        features=UINT256_MAX,
        billing_modes=255,
        receipt_signer=to_checksum_address(b"\xff" * 20),
    ),
    Offer(
        provider=to_checksum_address(bytes(20)),
        gpu_model="x",
        gpu_count=0,
        memory_gib=0,
        price_per_gpu_second=0,
        min_duration=0,
        max_duration=0,
        expiry=0,
        nonce=0,
    ),
    Bid(
        lab=to_checksum_address(b"\xff" * 20),
        gpu_model="~" * 32,
        gpu_count=UINT32_MAX,
        max_price_per_gpu_second=UINT256_MAX,
        duration=UINT64_MAX,
        expiry=UINT64_MAX,
        nonce=UINT256_MAX,
        job_spec_hash=b"\xff" * 32,
    ),
    Voucher(lease_id=bytes(32), cumulative_amount=2**64, receipt_hash=b"\xff" * 32),
    Voucher(lease_id=b"\xff" * 32, cumulative_amount=UINT64_MAX),
    Lease(
        provider=to_checksum_address(bytes(20)),
        lab=to_checksum_address(b"\xff" * 20),
        gpus=UINT32_MAX,
        price_per_gpu_second=UINT256_MAX,
        start=UINT64_MAX,
        duration=0,
        salt=b"\xff" * 32,
    ),
]


@pytest.mark.parametrize("message", EDGE_MESSAGES, ids=lambda m: type(m).__name__)
def test_edge_values_round_trip(message: Offer | Bid | Voucher | Lease) -> None:
    assert decode(encode(message)) == message
    if not isinstance(message, Lease):
        assert decode(encode(_signed(message))) == _signed(message)


def test_wire_layout_is_the_documented_one() -> None:
    offer = BASE[Offer]
    tree = msgpack.unpackb(encode(_signed(offer)), raw=False)
    assert list(tree) == ["v", "type", "body"]
    assert tree["v"] == 1
    assert tree["type"] == "SignedOffer"
    assert list(tree["body"]) == ["message", "signature"]
    assert tree["body"]["signature"] == SIGNATURE
    body = tree["body"]["message"]
    assert list(body) == [name for _, name, _ in Offer.FIELDS]
    assert body["provider"] == bytes.fromhex(offer.provider[2:])
    assert body["gpuModel"] == "H100"
    assert body["gpuCount"] == 8
    assert body["pricePerGpuSecond"] == (1000).to_bytes(32, "big")  # small uint256: still 32 bytes
    assert body["nonce"] == (1).to_bytes(32, "big")
    assert body["maxDuration"] == UINT64_MAX
    assert body["features"] == bytes(32)  # uint256: a 32-byte bin even when zero
    assert body["billingModes"] == 1  # rental only, the default
    assert body["receiptSigner"] == bytes(20)


def test_voucher_encoding_is_pinned_byte_for_byte() -> None:
    voucher = Voucher(lease_id=b"\x11" * 32, cumulative_amount=5, receipt_hash=b"\x22" * 32)
    expected = "".join(
        [
            "83a17601",  # map(3), "v", 1
            "a474797065" + "a7566f7563686572",  # "type", "Voucher"
            "a4626f6479" + "83",  # "body", map(3)
            "a76c656173654964" + "c420" + "11" * 32,  # "leaseId", bin8(32)
            "b0" + b"cumulativeAmount".hex() + "c420" + "00" * 31 + "05",
            "ab" + b"receiptHash".hex() + "c420" + "22" * 32,
        ]
    )
    assert encode(voucher).hex() == expected
    assert decode(bytes.fromhex(expected)) == voucher


# --- refusals --------------------------------------------------------------------------------


def _tree(obj: Any) -> Tree:
    tree: Tree = msgpack.unpackb(encode(obj), raw=False)
    return tree


def _pack(tree: object) -> bytes:
    packed: bytes = msgpack.packb(tree, use_bin_type=True)
    return packed


def _mutated(obj: Any, change: Callable[[Tree], object]) -> bytes:
    """``obj``'s wire form after ``change`` edits its tree (a return value replaces the tree)."""
    tree = _tree(obj)
    assert decode(_pack(tree)) == obj  # the unchanged tree is valid: only ``change`` can break it
    replaced = change(tree)
    return _pack(tree if replaced is None else replaced)


def _refused(data: bytes, error: type[ProtocolError], **kwargs: Any) -> Any:
    """Decoding ``data`` raises exactly ``error`` (not a subclass or a sibling)."""
    with pytest.raises(ProtocolError) as info:
        decode(data, **kwargs)
    assert type(info.value) is error, repr(info.value)
    return info.value


def _drop(mapping: Tree, key: str) -> None:
    del mapping[key]


def _body(tree: Tree) -> Tree:
    body: Tree = tree["body"]
    return body


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # the reserved type byte
        encode(BASE[Offer])[:-1],  # truncated
        encode(BASE[Offer])[:1],
        b"\x81\xa1v\xa2\xff\xfe",  # {"v": <invalid UTF-8>}
        b"\x91" * 5000,  # nested arrays deeper than the parser's stack
    ],
    ids=["empty", "reserved-byte", "truncated", "header-only", "bad-utf8", "too-deep"],
)
def test_malformed_msgpack_is_a_decode_error(data: bytes) -> None:
    err = _refused(data, DecodeError)
    assert isinstance(err.__cause__, ValueError)  # the parser's error is kept as the cause


@pytest.mark.parametrize(
    "tree",
    [[], 1, "Offer", b"\x00" * 8, None, True, 1.5],
    ids=["array", "int", "str", "bin", "nil", "bool", "float"],
)
def test_message_that_is_not_a_map_is_a_decode_error(tree: object) -> None:
    assert "message must be a map" in str(_refused(_pack(tree), DecodeError))


def test_array_is_refused_by_the_parser() -> None:
    err = _refused(_pack([1, "Offer", {}]), DecodeError)  # arrays appear nowhere in the format
    assert "must be a map, got array" in str(err)


@pytest.mark.parametrize("version", [0, 2, -1, True, "1", 1.0, None, b"\x01"])
def test_unsupported_version_is_a_decode_error(version: object) -> None:
    data = _mutated(BASE[Bid], lambda t: t.update(v=version))
    assert "unsupported wire version" in str(_refused(data, DecodeError))


def test_missing_version_is_a_decode_error() -> None:
    data = _mutated(BASE[Bid], lambda t: _drop(t, "v"))
    assert "unsupported wire version None" in str(_refused(data, DecodeError))


@pytest.mark.parametrize(
    "type_name", ["Order", "offer", "SignedLease", "Signed", "", 5, None, b"Offer", True]
)
def test_unknown_message_type_is_refused(type_name: object) -> None:
    data = _mutated(BASE[Offer], lambda t: t.update(type=type_name))
    assert _refused(data, UnknownMessageType).type_name == type_name


def test_body_of_another_type_is_a_decode_error() -> None:
    data = _mutated(BASE[Offer], lambda t: t.update(type="Bid"))
    assert re.search("missing keys|unexpected keys", str(_refused(data, DecodeError)))


@pytest.mark.parametrize("key", ["type", "body"])
def test_envelope_without_a_key_is_a_decode_error(key: str) -> None:
    data = _mutated(BASE[Voucher], lambda t: _drop(t, key))
    assert repr(key) in str(_refused(data, DecodeError))


def test_envelope_with_an_extra_key_is_a_decode_error() -> None:
    data = _mutated(BASE[Voucher], lambda t: t.update(sig=b"\x00"))
    assert "'sig'" in str(_refused(data, DecodeError))


def _field_params() -> list[Any]:
    return [
        pytest.param(cls, name, id=f"{cls.TYPE_NAME}.{name}")
        for cls in MESSAGE_CLASSES
        for _, name, _ in cls.FIELDS
    ]


@pytest.mark.parametrize(("cls", "name"), _field_params())
def test_missing_field_is_a_decode_error(cls: type, name: str) -> None:
    data = _mutated(BASE[cls], lambda t: _drop(_body(t), name))
    err = _refused(data, DecodeError)
    assert f"missing keys [{name!r}]" in str(err)


@pytest.mark.parametrize("cls", MESSAGE_CLASSES)
@pytest.mark.parametrize("extra", ["extra", "gpu_count", "Nonce"])
def test_extra_field_is_a_decode_error(cls: type, extra: str) -> None:
    data = _mutated(BASE[cls], lambda t: _body(t).update({extra: 1}))
    assert f"unexpected keys [{extra!r}]" in str(_refused(data, DecodeError))


def test_missing_field_in_a_signed_message_is_a_decode_error() -> None:
    data = _mutated(_signed(BASE[Offer]), lambda t: _drop(_body(t)["message"], "nonce"))
    assert "SignedOffer.message" in str(_refused(data, DecodeError))


@pytest.mark.parametrize("key", ["message", "signature"])
def test_signed_body_without_a_key_is_a_decode_error(key: str) -> None:
    data = _mutated(_signed(BASE[Bid]), lambda t: _drop(_body(t), key))
    assert repr(key) in str(_refused(data, DecodeError))


def test_signed_body_with_an_extra_key_is_a_decode_error() -> None:
    data = _mutated(_signed(BASE[Bid]), lambda t: _body(t).update(signer=b"\x00" * 20))
    assert "'signer'" in str(_refused(data, DecodeError))


@pytest.mark.parametrize("signature", [b"", "00" * 32, 1, None])
def test_signature_that_is_not_a_non_empty_bin_is_a_decode_error(signature: object) -> None:
    data = _mutated(_signed(BASE[Voucher]), lambda t: _body(t).update(signature=signature))
    assert "signature" in str(_refused(data, DecodeError))


def test_signature_over_the_maximum_length_is_a_decode_error() -> None:
    too_long = b"\x01" * (codec.MAX_SIGNATURE_LENGTH + 1)
    data = _mutated(_signed(BASE[Voucher]), lambda t: _body(t).update(signature=too_long))
    _refused(data, DecodeError)


@pytest.mark.parametrize("length", [1, 32, 64, 66, 1000, codec.MAX_SIGNATURE_LENGTH])
def test_signature_of_any_length_up_to_the_maximum_decodes(length: int) -> None:
    signature = bytes(range(256)) * 16
    data = encode(_signed(BASE[Bid], signature[:length]))
    decoded = decode_as(data, Signed[Bid])
    assert decoded == Signed(BASE[Bid], signature[:length])


def test_signed_message_that_is_not_a_map_is_a_decode_error() -> None:
    data = _mutated(_signed(BASE[Voucher]), lambda t: _body(t).update(message=b"\x00" * 32))
    assert "must be a map" in str(_refused(data, DecodeError))


def test_body_that_is_not_a_map_is_a_decode_error() -> None:
    data = _mutated(BASE[Lease], lambda t: t.update(body=[]))
    assert "must be a map" in str(_refused(data, DecodeError))


def _kind_params(kinds: tuple[str, ...]) -> list[Any]:
    return [
        pytest.param(cls, name, id=f"{cls.TYPE_NAME}.{name}")
        for cls in MESSAGE_CLASSES
        for attr, name, t in cls.FIELDS
        if codec._wire_kind(attr, t) in kinds
    ]


@pytest.mark.parametrize(("cls", "name"), _kind_params(("uint",)))
@pytest.mark.parametrize("value", ["1", True, False, 1.0, None, b"\x01", {"n": 1}], ids=repr)
def test_uint32_or_uint64_field_that_is_not_an_int_is_a_decode_error(
    cls: type, name: str, value: object
) -> None:
    data = _mutated(BASE[cls], lambda t: _body(t).update({name: value}))
    assert "must be a msgpack int" in str(_refused(data, DecodeError))


@pytest.mark.parametrize(("cls", "name"), _kind_params(("uint256",)))
@pytest.mark.parametrize("value", [0, 1, UINT64_MAX])
def test_uint256_field_as_a_msgpack_int_is_refused_as_non_canonical(
    cls: type, name: str, value: int
) -> None:
    data = _mutated(BASE[cls], lambda t: _body(t).update({name: value}))
    assert "uint256 is never a msgpack int" in str(_refused(data, DecodeError))


@pytest.mark.parametrize(("cls", "name"), _kind_params(("uint256", "bytes32", "address")))
@pytest.mark.parametrize("delta", [-1, 1])
def test_bin_field_of_the_wrong_length_is_a_decode_error(cls: type, name: str, delta: int) -> None:
    def change(tree: Tree) -> None:
        body = _body(tree)
        body[name] = body[name][:delta] if delta < 0 else body[name] + b"\x00"

    assert "-byte bin" in str(_refused(_mutated(BASE[cls], change), DecodeError))


@pytest.mark.parametrize(("cls", "name"), _kind_params(("uint256", "bytes32", "address")))
@pytest.mark.parametrize("value", ["0x" + "00" * 32, True, None, 0.0])
def test_bin_field_of_another_type_is_a_decode_error(cls: type, name: str, value: object) -> None:
    data = _mutated(BASE[cls], lambda t: _body(t).update({name: value}))
    _refused(data, DecodeError)


@pytest.mark.parametrize("cls", [Offer, Bid])
@pytest.mark.parametrize("value", [b"H100", 100, None, True])
def test_gpu_model_that_is_not_a_str_is_a_decode_error(cls: type, value: object) -> None:
    data = _mutated(BASE[cls], lambda t: _body(t).update(gpuModel=value))
    assert "gpuModel must be a str" in str(_refused(data, DecodeError))


@pytest.mark.parametrize("cls", [Offer, Bid])
@pytest.mark.parametrize("model", ["", "M" * 33, "H100\n", "H100\u00e9"])
def test_gpu_model_breaking_the_name_rules_is_an_invalid_field(cls: type, model: str) -> None:
    data = _mutated(BASE[cls], lambda t: _body(t).update(gpuModel=model))
    assert _refused(data, InvalidField).field == "gpu_model"


@pytest.mark.parametrize(("cls", "name"), _kind_params(("uint",)))
@pytest.mark.parametrize("value", [-1, -(2**63)])
def test_negative_int_is_an_invalid_field(cls: type, name: str, value: int) -> None:
    data = _mutated(BASE[cls], lambda t: _body(t).update({name: value}))
    err = _refused(data, InvalidField)
    assert (err.message_type, "out of range" in err.reason) == (cls.__name__, True)


@pytest.mark.parametrize(
    ("cls", "name", "attr"),
    [
        (Offer, "gpuCount", "gpu_count"),
        (Offer, "memoryGiB", "memory_gib"),
        (Bid, "gpuCount", "gpu_count"),
        (Lease, "gpus", "gpus"),
    ],
)
def test_uint32_field_over_its_range_is_an_invalid_field(cls: type, name: str, attr: str) -> None:
    data = _mutated(BASE[cls], lambda t: _body(t).update({name: UINT32_MAX + 1}))
    assert _refused(data, InvalidField).field == attr


def test_offer_with_min_duration_above_max_duration_is_an_invalid_field() -> None:
    data = _mutated(BASE[Offer], lambda t: _body(t).update(minDuration=11, maxDuration=10))
    assert _refused(data, InvalidField).field == "min_duration"


def test_oversize_frame_is_refused_before_parsing() -> None:
    garbage = b"\xc1" * (MAX_FRAME_SIZE + 1)  # not msgpack: parsing would fail differently
    err = _refused(garbage, FrameTooLarge)
    assert (err.size, err.limit) == (MAX_FRAME_SIZE + 1, MAX_FRAME_SIZE)
    assert "malformed" in str(_refused(b"\xc1" * MAX_FRAME_SIZE, DecodeError))  # parsed


def test_frame_size_limit_is_configurable() -> None:
    wire = encode(_signed(BASE[Offer]))
    assert decode(wire, max_size=len(wire)) == _signed(BASE[Offer])
    err = _refused(wire, FrameTooLarge, max_size=len(wire) - 1)
    assert (err.size, err.limit) == (len(wire), len(wire) - 1)


@pytest.mark.parametrize(
    "suffix", [b"\x00", b"\xc1", encode(BASE[Voucher])], ids=["nil", "reserved", "message"]
)
def test_trailing_bytes_are_a_decode_error(suffix: bytes) -> None:
    err = _refused(encode(BASE[Voucher]) + suffix, DecodeError)
    assert f"{len(suffix)} trailing bytes" in str(err)


@pytest.mark.parametrize(
    "value",
    [
        msgpack.ExtType(5, b"x"),
        msgpack.ExtType(1, b""),
        msgpack.Timestamp(1),
        msgpack.Timestamp(2**40),
    ],
    ids=["ext", "empty-ext", "timestamp32", "timestamp64"],
)
@pytest.mark.parametrize("where", ["field", "envelope", "top"])
def test_extension_types_are_a_decode_error(value: object, where: str) -> None:
    def change(tree: Tree) -> object:
        if where == "field":
            _body(tree)["expiry"] = value
        elif where == "envelope":
            tree["v"] = value
        else:
            return value
        return None

    err = _refused(_mutated(BASE[Bid], change), DecodeError)
    # an empty extension reaches the ext hook; a longer one is over the parser's ext limit of 0
    assert re.search("extension type|max_ext_len", str(err)), err


@pytest.mark.parametrize("key", [1, b"body", -1, True], ids=repr)
@pytest.mark.parametrize("where", ["envelope", "body"])
def test_non_str_map_key_is_a_decode_error(key: object, where: str) -> None:
    def change(tree: Tree) -> None:
        (tree if where == "envelope" else _body(tree))[key] = 1  # type: ignore[index]

    err = _refused(_mutated(BASE[Voucher], change), DecodeError)
    assert "map key" in str(err)  # refused as a key, not as an unexpected field


def _raw_map(pairs: list[tuple[str, object]]) -> bytes:
    """A msgpack map written pair by pair, so that a key may repeat."""
    assert len(pairs) < 16
    return bytes([0x80 | len(pairs)]) + b"".join(_pack(k) + _pack(v) for k, v in pairs)


def test_repeated_map_key_is_a_decode_error() -> None:
    tree = _tree(BASE[Voucher])
    pairs = list(tree.items())
    assert decode(_raw_map(pairs)) == BASE[Voucher]  # the hand-written map itself is valid
    err = _refused(_raw_map([*pairs, ("type", "Voucher")]), DecodeError)
    assert "'type' appears twice" in str(err)


def test_repeated_field_key_is_a_decode_error() -> None:
    tree = _tree(BASE[Voucher])
    body = list(_body(tree).items())
    envelope = _raw_map([("v", 1), ("type", "Voucher")])[1:]  # the pairs, without the header
    valid = b"\x83" + envelope + _pack("body") + _raw_map(body)
    assert decode(valid) == BASE[Voucher]
    twice = b"\x83" + envelope + _pack("body") + _raw_map([*body, body[1]])
    assert "'cumulativeAmount' appears twice" in str(_refused(twice, DecodeError))


# --- decode_as, encode's refusals, robustness ------------------------------------------------


def test_decode_as_returns_the_message_of_the_expected_type() -> None:
    assert decode_as(encode(BASE[Offer]), Offer) == BASE[Offer]
    assert decode_as(encode(_signed(BASE[Bid])), Signed[Bid]) == _signed(BASE[Bid])
    assert decode_as(encode(_signed(BASE[Voucher])), Signed) == _signed(BASE[Voucher])


@pytest.mark.parametrize(
    ("obj", "cls"),
    [
        (BASE[Offer], Bid),
        (BASE[Lease], Offer),
        (_signed(BASE[Offer]), Offer),
        (BASE[Offer], Signed[Offer]),
        (_signed(BASE[Offer]), Signed[Bid]),
        (_signed(BASE[Voucher]), Signed[Offer]),
        (BASE[Voucher], Signed),
    ],
    ids=repr,
)
def test_decode_as_refuses_a_message_of_another_type(obj: Any, cls: Any) -> None:
    data = encode(obj)
    with pytest.raises(DecodeError) as info:
        decode_as(data, cls)
    assert type(info.value) is DecodeError
    assert "expected a" in str(info.value)


def test_decode_as_refuses_a_class_that_is_not_a_message() -> None:
    with pytest.raises(TypeError):
        decode_as(encode(BASE[Offer]), dict)  # type: ignore[type-var]


@pytest.mark.parametrize("obj", [{"v": 1}, "Offer", None, Signed(BASE[Lease], SIGNATURE)], ids=repr)
def test_encode_refuses_what_is_not_a_protocol_message(obj: Any) -> None:
    with pytest.raises(TypeError):
        encode(obj)


def test_decode_error_leaves_the_codec_usable() -> None:
    good = encode(BASE[Lease])
    for bad in (b"", good[:-1], good + b"\x00", b"\xc1" * (MAX_FRAME_SIZE + 1)):
        with pytest.raises(DecodeError):
            decode(bad)
        assert decode(good) == BASE[Lease]


@given(data=st.binary(max_size=512))
@settings(max_examples=300)
def test_arbitrary_bytes_decode_or_raise_a_protocol_error(data: bytes) -> None:
    try:
        decoded = decode(data)
    except ProtocolError:
        return
    assert encode(decoded) != b""  # whatever decoded is a real message


@given(message=messages(), position=st.integers(min_value=0), byte=st.integers(0, 255))
@settings(max_examples=300)
def test_corrupted_frames_decode_or_raise_a_protocol_error(
    message: Offer | Bid | Voucher | Lease, position: int, byte: int
) -> None:
    wire = bytearray(encode(message))
    wire[position % len(wire)] = byte
    try:
        decoded = decode(bytes(wire))
    except ProtocolError:
        return
    assert decode(encode(decoded)) == decoded


def test_field_values_keep_their_dataclass_types() -> None:
    decoded = decode(encode(BASE[Offer]))
    assert isinstance(decoded, Offer)
    for field in dataclasses.fields(decoded):
        assert type(getattr(decoded, field.name)) is type(getattr(BASE[Offer], field.name))


def test_all_names_are_exported() -> None:
    assert set(codec.__all__) == {
        "MAX_FRAME_SIZE",
        "MAX_SIGNATURE_LENGTH",
        "WIRE_VERSION",
        "Decoded",
        "Envelope",
        "Unreadable",
        "check_map",
        "decode",
        "decode_as",
        "encode",
        "open_frame",
        "plain",
        "read_body",
        "refusal",
        "scalar",
        "seal_frame",
        "signed_order_encoding",
    }
    assert all(hasattr(codec, name) for name in codec.__all__)


def test_other_key_order_and_wide_int_headers_decode_to_the_canonical_message() -> None:
    body = list(_body(_tree(BASE[Bid])).items())[::-1]  # fields in reverse order
    envelope = [("body", None), ("type", "Bid"), ("v", 1)]
    wide_gpu_count = b"\xce" + (4).to_bytes(4, "big")  # uint32 header for a fixint value
    header = bytes([0x80 | len(body)]) if len(body) < 16 else b"\xde" + len(body).to_bytes(2, "big")
    packed_body = header + b"".join(
        _pack(k) + (wide_gpu_count if k == "gpuCount" else _pack(v)) for k, v in body
    )
    data = bytes([0x83]) + b"".join(
        _pack(k) + (packed_body if k == "body" else _pack(v)) for k, v in envelope
    )
    assert data != encode(BASE[Bid])
    assert decode(data) == BASE[Bid]
    assert encode(decode(data)) == encode(BASE[Bid])


def test_a_str_subclass_travels_as_a_str() -> None:
    """A daemon's config names its GPU model with a str subclass."""

    class Model(str):
        pass

    offer = dataclasses.replace(BASE[Offer], gpu_model=Model(BASE[Offer].gpu_model))
    assert encode(offer) == encode(BASE[Offer])
    assert decode(encode(offer)) == BASE[Offer]


# --- the one-pass path of canonical signed frames (the relay's) ------------------------------


def _signed_tree(cls: type) -> Tree:
    return _tree(_signed(BASE[cls]))


def _inner(tree: Tree) -> Tree:
    inner: Tree = tree["body"]["message"]
    return inner


@pytest.mark.parametrize("cls", [Offer, Bid, Voucher])
def test_a_canonical_signed_frame_takes_the_one_pass_path(cls: type) -> None:
    wire = encode(_signed(BASE[cls]))
    fast = next(f for f in codec._CANONICAL if wire.startswith(f.prefix))
    assert fast.type_name == "Signed" + cls.__name__
    assert fast.decode(wire) == _signed(BASE[cls]) == decode(wire)
    # Not canonical (a wider int header for v): the one-pass path declines, the general decodes.
    wide = b"\x83\xa1v\xcc\x01" + wire[4:]
    assert fast.decode(wide) is None
    assert decode(wide) == _signed(BASE[cls])


@pytest.mark.parametrize(
    ("cls", "change", "attr"),
    [
        (Offer, {"gpuCount": UINT32_MAX + 1}, "gpu_count"),
        (Offer, {"minDuration": 11, "maxDuration": 10}, "min_duration"),
        (Offer, {"minChargeBps": 10_001}, "min_charge_bps"),
        (Offer, {"gpuModel": "H100\n", "gpuCount": -1}, "gpu_model"),  # the first field's error
        (Offer, {"billingModes": 256}, "billing_modes"),
        (Bid, {"gpuModel": ""}, "gpu_model"),
        (Bid, {"minMemoryGiB": UINT32_MAX + 1}, "min_memory_gib"),
        (Bid, {"billing": 7}, "billing"),
        (Bid, {"maxMinChargeBps": -1}, "max_min_charge_bps"),
    ],
)
def test_a_canonical_signed_frame_breaking_a_field_rule_is_an_invalid_field(
    cls: type, change: Tree, attr: str
) -> None:
    tree = _signed_tree(cls)
    _inner(tree).update(change)
    data = _pack(tree)
    assert any(data.startswith(f.prefix) for f in codec._CANONICAL)  # the one-pass path sees it
    err = _refused(data, InvalidField)
    assert (err.message_type, err.field) == (cls.__name__, attr)


@pytest.mark.parametrize("cls", [Offer, Bid])
def test_a_signed_frame_repeating_a_field_key_is_refused_although_it_starts_canonically(
    cls: type,
) -> None:
    wire = encode(_signed(BASE[cls]))
    inner = list(_inner(_tree(_signed(BASE[cls]))).items())
    assert len(inner) < 32
    message = bytes([0xDE]) + (len(inner) + 1).to_bytes(2, "big")
    message += b"".join(_pack(k) + _pack(v) for k, v in [*inner, inner[2]])
    envelope = _pack({"v": 1, "type": "Signed" + cls.__name__})[1:]
    data = b"\x83" + envelope + _pack("body") + b"\x82" + _pack("message") + message
    data += _pack("signature") + _pack(SIGNATURE)
    assert data.startswith(wire[:12])
    assert f"'{inner[2][0]}' appears twice" in str(_refused(data, DecodeError))


def test_a_canonical_signed_frame_with_trailing_bytes_is_a_decode_error() -> None:
    err = _refused(encode(_signed(BASE[Bid])) + b"\x00", DecodeError)
    assert "1 trailing bytes" in str(err)


@pytest.mark.parametrize("version", [2, 0])
def test_a_signed_frame_of_another_version_is_refused(version: int) -> None:
    tree = _signed_tree(Offer)
    tree["v"] = version
    assert "unsupported wire version" in str(_refused(_pack(tree), DecodeError))


@given(message=messages(), bad=st.integers(min_value=2**64, max_value=2**70))
@settings(max_examples=200)
def test_unsafe_from_codec_builds_what_the_constructor_builds_and_refuses_alike(
    message: Offer | Bid | Voucher | Lease, bad: int
) -> None:
    cls = type(message)
    values = {attr: getattr(message, attr) for attr, _, _ in cls.FIELDS}
    assert unsafe_from_codec(cls, dict(values)) == message
    narrow = [a for a, _, t in cls.FIELDS if t.startswith("uint") and t != "uint256"]
    for attr in narrow:
        broken = {**values, attr: bad}
        with pytest.raises(InvalidField) as built:
            cls(**broken)
        with pytest.raises(InvalidField) as fast:
            unsafe_from_codec(cls, broken)
        assert (fast.value.field, fast.value.reason) == (built.value.field, built.value.reason)
