"""The daemon wire format: every message round-trips, every malformation is a typed error."""

from __future__ import annotations

from typing import Any

import msgpack
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market.errors import (
    DecodeError,
    FrameTooLarge,
    InvalidField,
    ProtocolError,
    UnknownMessageType,
)
from market.matching import Change, Explanation, Reason, ReasonCode
from market.protocol import codec
from market.protocol.types import Offer
from nodes.wire import (
    MAX_FRAME_SIZE,
    BookQuery,
    ErrorCode,
    ErrorResponse,
    ExplainResponse,
    Message,
    SubmitOrders,
    decode,
    decode_as,
    encode,
)
from nodes.wire.frames import MESSAGES as CLASSES
from tests.unit.wire_strategies import BID, MESSAGES, OFFER, SAMPLES

pytestmark = pytest.mark.unit


def _tree(message: Message) -> dict[str, Any]:
    tree: dict[str, Any] = msgpack.unpackb(encode(message), raw=False)
    return tree


def _pack(tree: object) -> bytes:
    packed: bytes = msgpack.packb(tree, use_bin_type=True)
    return packed


@settings(max_examples=300, deadline=None)
@given(message=MESSAGES)
def test_every_message_round_trips(message: Message) -> None:
    data = encode(message)
    assert decode(data) == message
    assert encode(decode(data)) == data


def test_the_set_of_message_types_is_closed_and_sampled() -> None:
    assert set(SAMPLES) == set(CLASSES)
    for name, message in SAMPLES.items():
        assert decode(encode(message)) == message, name


def test_orders_travel_as_codec_frames() -> None:
    tree = _tree(SAMPLES["SubmitOrders"])
    inner = tree["body"]["orders"][0]["order"]
    assert codec.decode(inner) == SAMPLES["SubmitOrders"].orders[0].signed


# --- envelope ------------------------------------------------------------------------------------


def test_oversize_frame_is_refused_before_parsing() -> None:
    garbage = b"\xc1" * (MAX_FRAME_SIZE + 1)  # 0xc1 is never valid msgpack
    with pytest.raises(FrameTooLarge) as info:
        decode(garbage)
    assert (info.value.size, info.value.limit) == (MAX_FRAME_SIZE + 1, MAX_FRAME_SIZE)
    data = encode(SAMPLES["SubmitOrders"])
    with pytest.raises(FrameTooLarge):
        decode(data, max_size=len(data) - 1)
    assert decode(data, max_size=len(data)) == SAMPLES["SubmitOrders"]


def test_unknown_type_is_refused() -> None:
    tree = _tree(SAMPLES["BookQuery"])
    for bad in ("Transfer", "bookquery", 7, None):
        tree["type"] = bad
        with pytest.raises(UnknownMessageType) as info:
            decode(_pack(tree))
        assert info.value.type_name == bad


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"v": 2}, "unsupported wire version 2"),
        ({"v": True}, "unsupported wire version"),
        ({"extra": 1}, "unexpected keys \\['extra'\\]"),
    ],
)
def test_envelope_must_be_exactly_version_type_body(change: dict[str, Any], match: str) -> None:
    tree = _tree(SAMPLES["BookQuery"]) | change
    with pytest.raises(DecodeError, match=match):
        decode(_pack(tree))


@pytest.mark.parametrize("key", ["v", "type", "body"])
def test_envelope_key_missing_is_refused(key: str) -> None:
    tree = _tree(SAMPLES["BookQuery"])
    del tree[key]
    with pytest.raises(DecodeError):
        decode(_pack(tree))


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "malformed msgpack"),
        (b"\xc1", "malformed msgpack"),
        (_pack([1, 2]), "frame must be a map"),
        (
            _pack({"v": 1, "type": "BookQuery", "body": {"model": "H", "depth": 1}}) + b"\x00",
            "1 trailing",
        ),
        (b"\x83\xa1v\x01\xa1v\x01\xa4type\xa9BookQuery", "appears twice"),
        (b"\x81\x01\x01", "map key"),
        (_pack({"v": 1, "type": "BookQuery", "body": msgpack.ExtType(1, b"x")}), "extension types"),
        (_pack({"v": 1, "type": "BookQuery", "body": msgpack.ExtType(1, b"")}), "extension types"),
        (b"\xdd\xff\xff\xff\xff", "malformed msgpack|must be a map"),  # 4 billion items declared
        (b"\x91" * 100_000 + b"\x00", "nested too deeply|malformed|must be a map"),
    ],
    ids=[
        "empty",
        "reserved",
        "array",
        "trailing",
        "dup-key",
        "int-key",
        "ext",
        "ext0",
        "huge",
        "deep",
    ],
)
def test_bytes_that_are_not_one_msgpack_map_are_refused(data: bytes, match: str) -> None:
    with pytest.raises(DecodeError, match=match):
        decode(data)


def test_every_truncation_is_refused() -> None:
    data = encode(SAMPLES["SubmitOrders"])
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            decode(data[:cut])


# --- bodies: derived from each message class, so every field of every type is covered ----------

_WRONG_VALUES: tuple[object, ...] = (None, 1.5, -1, "x" * 5000, b"\x00" * 31, (), {"k": 1}, True)


def _fields() -> list[tuple[str, str]]:
    return [(t, f.encode_name) for t, cls in CLASSES.items() for f in msgspec.structs.fields(cls)]


@pytest.mark.parametrize(("type_name", "key"), _fields())
def test_missing_field_is_refused(type_name: str, key: str) -> None:
    tree = _tree(SAMPLES[type_name])
    del tree["body"][key]
    with pytest.raises(DecodeError, match=f"missing keys \\['{key}'\\]"):
        decode(_pack(tree))


@pytest.mark.parametrize("type_name", sorted(CLASSES))
def test_unknown_field_is_refused(type_name: str) -> None:
    tree = _tree(SAMPLES[type_name])
    tree["body"]["sneaky"] = 1
    with pytest.raises(DecodeError, match="unexpected keys \\['sneaky'\\]"):
        decode(_pack(tree))


@pytest.mark.parametrize(("type_name", "key"), _fields())
def test_wrong_type_in_any_field_is_refused(type_name: str, key: str) -> None:
    tree = _tree(SAMPLES[type_name])
    for wrong in _WRONG_VALUES:
        if _takes(type_name, key, wrong):
            continue  # a valid details map, list, (variable-length) bin or bool
        tree["body"][key] = wrong
        with pytest.raises((DecodeError, InvalidField), match=key):
            decode(_pack(tree))


def _takes(type_name: str, key: str, value: object) -> bool:
    """Whether ``value`` is one the field takes: a details map, an empty list, a short bin where
    the length varies, a bool."""
    fields = msgspec.inspect.type_info(CLASSES[type_name]).fields  # type: ignore[attr-defined]
    info = next(f.type for f in fields if f.encode_name == key)
    lists = (msgspec.inspect.ListType, msgspec.inspect.VarTupleType)
    return (
        (isinstance(info, msgspec.inspect.DictType) and value == {"k": 1})
        or (isinstance(info, lists) and value == ())
        or (
            isinstance(info, msgspec.inspect.BytesType)
            and info.min_length is None
            and value == b"\x00" * 31
        )
        or (isinstance(info, msgspec.inspect.BoolType) and value is True)
    )


def test_body_must_be_a_map() -> None:
    tree = _tree(SAMPLES["BookQuery"])
    tree["body"] = ["H100", 1]
    with pytest.raises(DecodeError, match="BookQuery must be a map"):
        decode(_pack(tree))


# --- nested values ---------------------------------------------------------------------------


def _orders_tree() -> dict[str, Any]:
    return _tree(SAMPLES["SubmitOrders"])


def test_order_that_is_not_a_codec_frame_is_refused_with_its_path() -> None:
    tree = _orders_tree()
    tree["body"]["orders"][1]["order"] = b"\x01\x02"
    with pytest.raises(DecodeError, match=r"SubmitOrders\.orders\[1\]\.order"):
        decode(_pack(tree))


def test_unsigned_order_where_a_signed_one_belongs_is_refused() -> None:
    tree = _orders_tree()
    tree["body"]["orders"][0]["order"] = codec.encode(OFFER)
    with pytest.raises(DecodeError, match="SignedOffer or SignedBid, got Offer"):
        decode(_pack(tree))


def test_order_breaking_a_protocol_rule_is_an_invalid_field_with_its_path() -> None:
    tree = _orders_tree()
    inner = msgpack.unpackb(tree["body"]["orders"][0]["order"], raw=False)
    inner["body"]["message"]["minDuration"] = 10**9  # above maxDuration
    tree["body"]["orders"][0]["order"] = _pack(inner)
    with pytest.raises(InvalidField, match=r"at SubmitOrders\.orders\[0\]\.order") as info:
        decode(_pack(tree))
    assert (info.value.message_type, info.value.field) == ("Offer", "min_duration")


@pytest.mark.parametrize("length", [64, 65, 66, 1000, codec.MAX_SIGNATURE_LENGTH])
def test_order_with_an_ecdsa_or_contract_signature_travels(length: int) -> None:
    tree = _orders_tree()
    inner = msgpack.unpackb(tree["body"]["orders"][0]["order"], raw=False)
    inner["body"]["signature"] = b"\x09" * length
    tree["body"]["orders"][0]["order"] = _pack(inner)
    decoded = decode_as(_pack(tree), SubmitOrders)
    assert decoded.orders[0].signed.signature == b"\x09" * length
    assert decode(encode(decoded)) == decoded


@pytest.mark.parametrize("signature", [b"", b"\x09" * (codec.MAX_SIGNATURE_LENGTH + 1)])
def test_order_with_an_empty_or_oversize_signature_is_refused_with_its_path(
    signature: bytes,
) -> None:
    tree = _orders_tree()
    inner = msgpack.unpackb(tree["body"]["orders"][0]["order"], raw=False)
    inner["body"]["signature"] = signature
    tree["body"]["orders"][0]["order"] = _pack(inner)
    with pytest.raises(DecodeError, match=r"SubmitOrders\.orders\[0\]\.order"):
        decode(_pack(tree))


@pytest.mark.parametrize("key", ["attributes", "requirements"])
def test_terms_beside_an_order_are_refused_as_unknown_keys(key: str) -> None:
    """An order's terms are its signed fields; a relay never takes an unsigned one beside it."""
    tree = _orders_tree()
    tree["body"]["orders"][0][key] = {"region": "eu-west"}
    with pytest.raises(DecodeError, match=rf"orders\[0\]: unexpected keys \['{key}'\]"):
        decode(_pack(tree))
    request = _tree(SAMPLES["ExplainRequest"])
    request["body"][key] = {}
    with pytest.raises(DecodeError, match=f"unexpected keys \\['{key}'\\]"):
        decode(_pack(request))


def test_a_bid_with_an_unknown_billing_mode_is_an_invalid_field() -> None:
    tree = _orders_tree()
    inner = msgpack.unpackb(tree["body"]["orders"][1]["order"], raw=False)
    inner["body"]["message"]["billing"] = 7
    tree["body"]["orders"][1]["order"] = _pack(inner)
    with pytest.raises(InvalidField, match=r"not a billing mode") as info:
        decode(_pack(tree))
    assert (info.value.message_type, info.value.field) == ("Bid", "billing")


def test_explanations_carry_every_term_reason_code() -> None:
    reasons = tuple(Reason(code, str(code), {"lane": 2}) for code in ReasonCode)
    changes = (Change("accepted_features", 1 << 200, (1 << 200) | (1 << 33)),)
    message = ExplainResponse(Explanation(False, 0, reasons, changes))
    assert decode(encode(message)) == message
    tree = _tree(message)
    tree["body"]["explanation"]["reasons"][0]["code"] = "attributes_unmet"  # gone
    with pytest.raises(DecodeError, match=r"explanation\.reasons\[0\]\.code: Invalid enum value"):
        decode(_pack(tree))


def test_big_int_that_fits_msgpack_is_refused_as_non_canonical() -> None:
    tree = _tree(SAMPLES["ErrorResponse"])
    tree["body"]["details"]["retry_after_ms"] = (250).to_bytes(32, "big")
    with pytest.raises(DecodeError, match="must be sent as one"):
        decode(_pack(tree))


@pytest.mark.parametrize("model", ["", "H100\n", "é", "x" * 33])
def test_bad_gpu_model_is_refused(model: str) -> None:
    tree = _tree(SAMPLES["BookQuery"])
    tree["body"]["model"] = model
    with pytest.raises(DecodeError, match="model"):
        decode(_pack(tree))


def test_enum_outside_its_closed_set_is_refused() -> None:
    tree = _tree(SAMPLES["ErrorResponse"])
    tree["body"]["code"] = "teapot"
    with pytest.raises(DecodeError, match=r"ErrorResponse\.code: Invalid enum value 'teapot'"):
        decode(_pack(tree))


def test_out_of_range_int_is_refused() -> None:
    tree = _tree(SAMPLES["BookQuery"])
    tree["body"]["depth"] = 2**32
    with pytest.raises(DecodeError, match=r"BookQuery\.depth: Expected `int` <= 4294967295"):
        decode(_pack(tree))


def test_decode_as_refuses_another_message_type() -> None:
    data = encode(BookQuery("H100-80GB", 1))
    assert decode_as(data, BookQuery) == BookQuery("H100-80GB", 1)
    with pytest.raises(DecodeError, match="expected a SubmitOrders message, got BookQuery"):
        decode_as(data, SubmitOrders)


def test_encode_refuses_what_is_not_a_daemon_message() -> None:
    with pytest.raises(TypeError):
        encode(OFFER)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="below"):
        encode(ErrorResponse(SAMPLES["ErrorResponse"].code, "x", {"n": -(2**64)}))
    assert decode(encode(SAMPLES["ExplainRequest"])).order == BID  # type: ignore[union-attr]
    assert isinstance(OFFER, Offer)


# --- fuzz: whatever arrives, the decoder answers with a message or a ProtocolError -------------


def _outcome(data: bytes) -> Message | ProtocolError:
    try:
        return decode(data)
    except ProtocolError as exc:  # any other exception fails the test
        return exc


def _valid(outcome: Message | ProtocolError) -> bool:
    """A refusal that says why, or a message that re-encodes to itself."""
    if isinstance(outcome, ProtocolError):
        return bool(str(outcome))
    return decode(encode(outcome)) == outcome


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=512))
def test_random_bytes_decode_or_raise_a_protocol_error(data: bytes) -> None:
    assert _valid(_outcome(data))


@settings(max_examples=300, deadline=None)
@given(message=MESSAGES, data=st.data())
def test_corrupted_frames_decode_or_raise_a_protocol_error(
    message: Message, data: st.DataObject
) -> None:
    frame = bytearray(encode(message))
    for _ in range(data.draw(st.integers(1, 4))):
        frame[data.draw(st.integers(0, len(frame) - 1))] = data.draw(st.integers(0, 255))
    assert _valid(_outcome(bytes(frame)))


def test_an_error_response_fits_its_schema_whatever_it_quotes() -> None:
    """Issue 14, bug A: a message or detail quoting hostile input is cut to the schema's limits
    (ending in an ellipsis), so the refusal always encodes and decodes."""
    error = ErrorResponse(
        ErrorCode.UNKNOWN_TYPE, "unknown type " + "T" * 20_000, {"type": "T" * 20_000, "n": 7}
    )
    assert len(error.message) == 4096
    assert error.message.endswith("…")
    assert error.details == {"type": "T" * 511 + "…", "n": 7}
    assert decode(encode(error)) == error
    short = ErrorResponse(ErrorCode.UNKNOWN_TYPE, "fine", {"type": "ok"})
    assert (short.message, dict(short.details)) == ("fine", {"type": "ok"})


def test_subclasses_of_plain_types_travel_as_those_types() -> None:
    """web3 hands out HexBytes, configs str subclasses: they encode as bytes and str."""

    class Hash(bytes):
        pass

    class Model(str):
        pass

    query = BookQuery(Model("H100-80GB"), 3)
    assert encode(query) == encode(BookQuery("H100-80GB", 3))
    accepted = ErrorResponse(ErrorCode.NOT_FOUND, Model("gone"), {"k": Model("v")})
    assert decode(encode(accepted)) == ErrorResponse(ErrorCode.NOT_FOUND, "gone", {"k": "v"})
    from nodes.wire import JobAccepted, JobState, encode_json

    job = JobAccepted(Hash(b"\x07" * 32), JobState.RUNNING)
    assert decode(encode(job)) == JobAccepted(b"\x07" * 32, JobState.RUNNING)
    assert b"0x0707" in encode_json(job)
