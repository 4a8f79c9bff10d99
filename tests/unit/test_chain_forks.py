"""Finding where the chain forked from the blocks a follower applied (``market.chain.forks``), and
the daemons' window of applied blocks (``nodes.state.blocks``)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from market.chain.forks import Reorg, detect_reorg, find_fork
from market.errors import InvalidArgument
from nodes.errors import StoreError
from nodes.state import blocks

pytestmark = pytest.mark.unit


def _hash(branch: int, number: int) -> bytes:
    return bytes([branch]) + number.to_bytes(31, "big")


class _Chain:
    """Block hashes by number, answering as ``MarketClient.block_hashes`` does; counts reads."""

    def __init__(self, hashes: dict[int, bytes]) -> None:
        self.hashes = hashes
        self.reads: list[list[int]] = []

    def block_hashes(self, numbers: Sequence[int]) -> dict[int, bytes | None]:
        self.reads.append(list(numbers))
        return {n: self.hashes.get(n) for n in numbers}


@given(
    length=st.integers(1, 60),
    data=st.data(),
)
def test_the_fork_is_one_past_the_newest_applied_block_the_chain_still_has(
    length: int, data: st.DataObject
) -> None:
    fork = data.draw(st.integers(0, length), label="first replaced block")
    new_length = data.draw(st.integers(fork, fork + 60), label="new branch's length")
    old = {n: _hash(0, n) for n in range(length)}
    new = {n: _hash(0 if n < fork else 1, n) for n in range(new_length)}
    numbers = data.draw(st.sets(st.integers(0, length - 1), min_size=1), label="applied")
    applied = {n: old[n] for n in numbers}
    kept = [n for n in numbers if n < fork]
    assert find_fork(applied, new) == (max(kept) + 1 if kept else None)


def test_a_chain_that_still_has_the_newest_applied_block_costs_one_read() -> None:
    chain = _Chain({n: _hash(0, n) for n in range(10)})
    assert detect_reorg(chain, {n: _hash(0, n) for n in (3, 6, 9)}) is None
    assert chain.reads == [[9]]
    assert detect_reorg(chain, {}) is None
    assert chain.reads == [[9]]


def test_a_reorg_names_the_fork_and_the_blocks_to_read_again() -> None:
    chain = _Chain({n: _hash(0 if n < 7 else 1, n) for n in range(12)})
    applied = {n: _hash(0, n) for n in (2, 5, 6, 8, 9)}
    assert detect_reorg(chain, applied) == Reorg(fork=7, depth=3)
    assert chain.reads == [[9], [2, 5, 6, 8, 9]]


def test_a_shorter_chain_replaced_the_blocks_past_its_head() -> None:
    chain = _Chain({n: _hash(0, n) for n in range(8)})  # blocks 8 and 9 are gone
    assert detect_reorg(chain, {n: _hash(0, n) for n in (7, 9)}) == Reorg(fork=8, depth=2)


def test_a_reorg_deeper_than_the_window_names_no_fork() -> None:
    chain = _Chain({n: _hash(1, n) for n in range(12)})
    assert detect_reorg(chain, {n: _hash(0, n) for n in (4, 7, 9)}) == Reorg(fork=None, depth=6)


@given(st.dictionaries(st.integers(0, 2**63), st.binary(min_size=32, max_size=32), max_size=20))
def test_a_daemons_window_of_applied_blocks_packs_and_unpacks_unchanged(
    window: dict[int, bytes],
) -> None:
    assert blocks.unpack(blocks.pack(window)) == window


def test_the_window_keeps_the_last_blocks_and_a_rewind_keeps_those_before_the_fork() -> None:
    window: dict[int, bytes] = {}
    for n in range(0, 20, 3):
        window = blocks.remember(window, n, _hash(0, n), window=10)
    assert sorted(window) == [9, 12, 15, 18]  # the blocks after 18 - 10
    assert blocks.before(window, 15) == {9: _hash(0, 9), 12: _hash(0, 12)}
    assert blocks.unpack(None) == {}
    with pytest.raises(StoreError, match="not a whole window"):
        blocks.unpack(b"\x00" * 41, "lab.sqlite")
    with pytest.raises(InvalidArgument, match="a block hash is 32 bytes, not 31"):
        blocks.remember(window, 19, b"\x00" * 31)
