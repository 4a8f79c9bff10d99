"""Merkle commitments: every proof verifies as OpenZeppelin's MerkleProof would; nothing else."""

from __future__ import annotations

import math

import pytest
from eth_abi.abi import encode as abi_encode
from eth_hash.auto import keccak
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from market.protocol.types import ZERO_HASH
from market.receipts.merkle import (
    MerkleTree,
    chunk,
    chunk_hash,
    hash_pair,
    leaf_hash,
    output_root,
    process_proof,
    verify,
    verify_chunk,
)

pytestmark = pytest.mark.unit

chunk_lists = st.lists(st.binary(max_size=24), min_size=1, max_size=40)


def oz_standard_tree_root(chunks: list[bytes]) -> bytes:
    """An independent transcription of @openzeppelin/merkle-tree (sortLeaves: false): the leaf
    ``keccak256(keccak256(abi.encode(["uint256", "bytes32"], [i, keccak256(chunk)])))``,
    ``makeMerkleTree``'s array layout and ``hashPair``'s sorted concatenation."""
    leaves = [
        keccak(keccak(abi_encode(["uint256", "bytes32"], [i, keccak(c)])))
        for i, c in enumerate(chunks)
    ]
    tree: list[bytes] = [b""] * (2 * len(leaves) - 1)
    for i, leaf in enumerate(leaves):
        tree[len(tree) - 1 - i] = leaf
    for i in range(len(tree) - 1 - len(leaves), -1, -1):
        left, right = tree[2 * i + 1], tree[2 * i + 2]
        tree[i] = keccak(b"".join(sorted((left, right))))
    return tree[0]


@given(chunks=chunk_lists)
@settings(max_examples=150)
def test_every_proof_verifies_and_the_root_is_openzeppelins(chunks: list[bytes]) -> None:
    tree = MerkleTree.of_chunks(chunks)
    assert tree.root == oz_standard_tree_root(chunks) == output_root(chunks)
    assert len(tree) == len(chunks)
    depth = math.ceil(math.log2(len(chunks))) if len(chunks) > 1 else 0
    for i, c in enumerate(chunks):
        proof = tree.proof(i)
        assert len(proof) <= depth
        assert verify_chunk(tree.root, i, c, proof)
        assert verify(tree.root, tree.leaf(i), proof)
        assert process_proof(leaf_hash(i, chunk_hash(c)), proof) == tree.root


@given(chunks=chunk_lists, data=st.data())
@settings(max_examples=150)
def test_a_tampered_chunk_fails_its_proof(chunks: list[bytes], data: st.DataObject) -> None:
    tree = MerkleTree.of_chunks(chunks)
    i = data.draw(st.integers(0, len(chunks) - 1))
    forged = data.draw(st.binary(max_size=24).filter(lambda b: b != chunks[i]))
    assert not verify_chunk(tree.root, i, forged, tree.proof(i))
    assert MerkleTree.of_chunks([*chunks[:i], forged, *chunks[i + 1 :]]).root != tree.root


@given(chunks=chunk_lists.filter(lambda c: len(c) > 1), data=st.data())
@settings(max_examples=150)
def test_a_chunk_does_not_verify_at_another_position(
    chunks: list[bytes], data: st.DataObject
) -> None:
    tree = MerkleTree.of_chunks(chunks)
    i = data.draw(st.integers(0, len(chunks) - 1))
    j = data.draw(st.integers(0, len(chunks) - 1).filter(lambda j: j != i))
    assert not verify_chunk(tree.root, j, chunks[i], tree.proof(i))
    if chunks[i] != chunks[j]:  # else chunk i's content *is* chunk j's
        assert not verify_chunk(tree.root, j, chunks[i], tree.proof(j))


@given(chunks=chunk_lists, data=st.data())
@settings(max_examples=150)
def test_a_tampered_proof_fails(chunks: list[bytes], data: st.DataObject) -> None:
    tree = MerkleTree.of_chunks(chunks)
    i = data.draw(st.integers(0, len(chunks) - 1))
    proof = tree.proof(i)
    leaf = tree.leaf(i)
    assume(proof)
    k = data.draw(st.integers(0, len(proof) - 1))
    bit = data.draw(st.integers(0, 255))
    flipped = bytearray(proof[k])
    flipped[bit // 8] ^= 1 << (bit % 8)
    assert not verify(tree.root, leaf, [*proof[:k], bytes(flipped), *proof[k + 1 :]])
    assert not verify(tree.root, leaf, proof[:-1])  # truncated
    assert not verify(tree.root, leaf, [*proof, proof[-1]])  # extended


def test_swapping_two_sibling_chunks_changes_the_root() -> None:
    # With leaves keccak(keccak(chunk)) and sorted pairs, this swap would keep the root.
    assert output_root([b"a", b"b"]) != output_root([b"b", b"a"])
    assert output_root([b"x", b"x"]) != output_root([b"x"])


def test_one_chunk_is_its_own_root_with_an_empty_proof() -> None:
    tree = MerkleTree.of_chunks([b"only"])
    assert tree.root == leaf_hash(0, keccak(b"only"))
    assert tree.proof(0) == []
    assert verify_chunk(tree.root, 0, b"only", [])


def test_leaf_is_the_double_hashed_abi_encoded_index_and_chunk_hash() -> None:
    digest = keccak(b"chunk")
    expected = keccak(keccak(abi_encode(["uint256", "bytes32"], [7, digest])))
    assert leaf_hash(7, digest) == expected


def test_hash_pair_is_commutative_keccak_of_the_sorted_pair() -> None:
    a, b = b"\x01" * 32, b"\x02" * 32
    assert hash_pair(a, b) == hash_pair(b, a) == keccak(a + b)


def test_odd_counts_build_deterministically_without_padding() -> None:
    for n in (3, 5, 7, 9):
        chunks = [bytes([i]) for i in range(n)]
        assert MerkleTree.of_chunks(chunks).root == MerkleTree.of_chunks(list(chunks)).root
        assert output_root(chunks) != output_root([*chunks, chunks[-1]])


def test_no_chunks_commit_to_the_zero_hash_and_build_no_tree() -> None:
    assert output_root([]) == ZERO_HASH
    with pytest.raises(ValueError, match="at least one chunk"):
        MerkleTree([])


def test_proof_of_a_missing_chunk_is_an_index_error() -> None:
    tree = MerkleTree.of_chunks([b"a", b"b", b"c"])
    for index in (-1, 3):
        with pytest.raises(IndexError, match=f"chunk {index} is not in a tree of 3"):
            tree.proof(index)


@given(data=st.binary(max_size=300), size=st.integers(1, 64))
@settings(max_examples=100)
def test_chunk_cuts_data_into_pieces_of_the_given_size(data: bytes, size: int) -> None:
    pieces = chunk(data, size)
    assert b"".join(pieces) == data
    assert all(len(p) == size for p in pieces[:-1])
    assert len(pieces) == -(-len(data) // size)


def test_chunk_refuses_a_size_below_one() -> None:
    with pytest.raises(ValueError, match="positive"):
        chunk(b"abc", 0)


def test_leaf_hash_refuses_bad_inputs() -> None:
    with pytest.raises(ValueError, match="uint256"):
        leaf_hash(-1, bytes(32))
    with pytest.raises(ValueError, match="32 bytes"):
        leaf_hash(0, bytes(31))
