"""The fuzz campaign's frames (``bench.fuzz_frames``): seeded, and of every kind."""

from __future__ import annotations

import random

import pytest

from bench.fuzz_frames import FrameMaker, type_name, valid_pool
from nodes.wire import decode

pytestmark = pytest.mark.unit
LIMIT = 4096


def _frames(seed: int, pool: list[bytes], n: int = 600) -> list[tuple[str, bytes]]:
    maker = FrameMaker(random.Random(seed), pool, LIMIT)
    return [maker.frame("BookQuery") for _ in range(n)]


@pytest.fixture(scope="module")
def pool() -> list[bytes]:
    return valid_pool(3, 30)


def test_same_seed_gives_the_same_frames_and_another_seed_others(pool: list[bytes]) -> None:
    assert valid_pool(3, 30) == pool
    assert _frames(1, pool) == _frames(1, pool)
    assert _frames(1, pool) != _frames(2, pool)


def test_pool_frames_are_valid_messages_of_many_types(pool: list[bytes]) -> None:
    assert all(type_name(frame) == decode(frame).TYPE_NAME for frame in pool)
    assert len({type_name(frame) for frame in pool}) >= 20


def test_every_kind_is_made_and_oversize_frames_pass_the_limit(pool: list[bytes]) -> None:
    frames = _frames(5, pool, n=3000)
    kinds = {kind for kind, _ in frames}
    assert kinds == {"valid", "bit_flip", "truncated", "field_swap", "envelope", "deep_nesting",
                     "random_bytes", "oversize"}  # fmt: skip
    assert all(len(frame) > LIMIT for kind, frame in frames if kind == "oversize")
    valid = [frame for kind, frame in frames if kind == "valid"]
    assert all(decode(frame) is not None for frame in valid)
