"""Job specs: canonical bytes a bid commits to, and a decoder that refuses anything else."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from market.errors import DecodeError
from market.protocol.keccak import keccak
from nodes.jobs import CommandParams, JobSpec, MatmulParams, TrainParams
from nodes.jobs.matmul import check_product, product
from nodes.jobs.spec import MAX_ARGS, MAX_N, MAX_SEGMENTS, MAX_STEPS, MAX_WIDTH

pytestmark = pytest.mark.unit
KEY = b"\x07" * 32
MATMUL = st.builds(
    MatmulParams, st.integers(1, MAX_N), st.integers(0, 2**63 - 1), st.integers(1, 100_000)
)
TRAIN = st.builds(
    TrainParams,
    st.integers(0, 2**63 - 1),
    st.integers(1, MAX_SEGMENTS),
    st.integers(1, MAX_STEPS),
    st.integers(1, MAX_WIDTH),
)
COMMAND = st.builds(
    CommandParams,
    st.lists(
        st.text(
            st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=40
        ).filter(bool),
        min_size=1,
        max_size=MAX_ARGS,
    ).map(tuple),
)


@given(st.one_of(MATMUL, TRAIN, COMMAND), st.booleans())
def test_every_spec_round_trips_through_its_canonical_bytes(params: object, network: bool) -> None:
    spec = JobSpec(KEY, params, network)  # type: ignore[arg-type]
    data = spec.encode()
    assert JobSpec.decode(data) == spec
    assert spec.hash == keccak(data)


def _pack(tree: object) -> bytes:
    packed: bytes = msgpack.packb(tree, use_bin_type=True)
    return packed


TRAIN_GOOD = {"seed": 1, "segments": 4, "steps": 2, "width": 3}
GOOD = {"v": 1, "kind": "matmul", "labKey": KEY, "params": {"n": 8, "seed": 1, "rounds": 2}}


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"v": 2}, "version"),
        ({"kind": "shell"}, "unknown kind"),
        ({"labKey": b"\x01" * 31}, "labKey"),
        ({"params": {"n": 0, "seed": 1, "rounds": 2}}, "params.n"),
        ({"params": {"n": MAX_N + 1, "seed": 1, "rounds": 2}}, "params.n"),
        ({"params": {"n": 8, "seed": -1, "rounds": 2}}, "params.seed"),
        ({"params": {"n": 8, "seed": 1}}, "exactly n, seed, rounds"),
        ({"params": {"n": 8, "seed": 1, "rounds": 2, "gpu": 1}}, "exactly n, seed, rounds"),
        ({"kind": "command", "params": {"argv": []}}, "argv"),
        ({"kind": "command", "params": {"argv": ["a\0b"]}}, "non-empty string"),
        ({"extra": 1}, "exactly v, kind, labKey, params"),
        ({"kind": "train"}, "exactly seed, segments, steps, width"),
        ({"kind": "train", "params": TRAIN_GOOD | {"width": MAX_WIDTH + 1}}, "params.width"),
        ({"kind": "train", "params": TRAIN_GOOD | {"segments": 0}}, "params.segments"),
        ({"kind": "train", "params": TRAIN_GOOD | {"steps": MAX_STEPS + 1}}, "params.steps"),
        ({"network": 1}, "network must be true or false"),
        ({"network": False}, "not in canonical form"),
    ],
)
def test_malformed_specs_are_refused_with_a_typed_error(
    change: dict[str, object], match: str
) -> None:
    with pytest.raises(DecodeError, match=match):
        JobSpec.decode(_pack(GOOD | change))


def test_bytes_that_are_not_msgpack_or_not_canonical_are_refused() -> None:
    with pytest.raises(DecodeError, match="malformed msgpack"):
        JobSpec.decode(b"\xc1")
    reordered = _pack({"kind": "matmul", "v": 1, "labKey": KEY, "params": GOOD["params"]})
    assert JobSpec.decode(_pack(GOOD)).encode() == _pack(GOOD)
    with pytest.raises(DecodeError, match="canonical"):
        JobSpec.decode(reordered)  # same content, other bytes: another hash, so refused


def test_freivalds_accepts_the_product_and_refuses_any_other() -> None:
    good = product(seed=3, k=1, n=16)
    assert check_product(3, 1, 16, good)
    bad = bytearray(good)
    bad[40] ^= 1
    assert not check_product(3, 1, 16, bytes(bad))
    assert not check_product(3, 2, 16, good)  # another round's product
    assert not check_product(3, 1, 16, good[:-8])  # a short one


def test_a_spec_without_network_keeps_the_bytes_and_hash_it_had_before_the_field() -> None:
    spec = JobSpec(KEY, MatmulParams(8, 1, 2))
    assert spec.encode() == _pack(GOOD)
    assert spec.hash == keccak(_pack(GOOD))


def test_network_is_signed_only_when_asked_for_and_changes_the_hash() -> None:
    offline = JobSpec(KEY, MatmulParams(8, 1, 2))
    online = JobSpec(KEY, MatmulParams(8, 1, 2), network=True)
    assert online.encode() == _pack(GOOD | {"network": True})
    assert JobSpec.decode(online.encode()).network is True
    assert online.hash != offline.hash
