"""Merkle commitments to a period's output chunks, checkable on-chain by OpenZeppelin 5.

A receipt's ``outputRoot`` is the root of this tree. Leaf ``i`` commits to chunk ``i`` *at its
position*::

    leaf(i) = keccak256(bytes.concat(keccak256(abi.encode(uint256 i, bytes32 keccak256(chunk_i)))))

which is OpenZeppelin's ``StandardMerkleTree`` leaf for the value ``[i, keccak256(chunk_i)]`` with
the leaf encoding ``["uint256", "bytes32"]``. Two choices, both for safety:

* **Double hashing**, as ``StandardMerkleTree`` does: a leaf's last preimage is 32 bytes and an
  inner node's is 64, so no inner node can be passed off as a leaf (the second-preimage attack).
* **The index in the leaf.** Pairs are hashed sorted (``Hashes.commutativeKeccak256``), so a proof
  shows that a leaf is in the tree, not where. Without the index, swapping two sibling chunks
  leaves the root unchanged, and a proof accepts a chunk at any position it occupies anywhere;
  with it, a chunk only verifies at its own index, so reordered or repeated outputs are caught.

Shape: OpenZeppelin's ``makeMerkleTree`` layout, a complete binary tree of ``2n - 1`` nodes in an
array, leaf ``i`` at ``2n - 2 - i`` and node ``k`` the sorted-pair hash of nodes ``2k + 1`` and
``2k + 2``. Every count is handled without padding or duplicating a leaf; a single leaf is its own
root with an empty proof. The root equals ``StandardMerkleTree.of(values, ["uint256", "bytes32"],
{sortLeaves: false}).root``, and :func:`verify` is ``MerkleProof.verify(proof, root, leaf)``.
``tests/integration/test_merkle_openzeppelin.py`` checks roots, leaves, proofs and verdicts against
OpenZeppelin's own ``@openzeppelin/merkle-tree`` (``tools/merkle_reference.mjs``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from market.protocol.keccak import keccak
from market.protocol.types import ZERO_HASH


def chunk(data: bytes, size: int) -> list[bytes]:
    """``data`` cut into ``size``-byte chunks, the last one shorter; no chunks for no data."""
    if size <= 0:
        raise ValueError(f"chunk size must be positive, got {size}")
    return [data[i : i + size] for i in range(0, len(data), size)]


def chunk_hash(data: bytes) -> bytes:
    """keccak256 of one output chunk: what the provider commits to for each segment."""
    return keccak(data)


def leaf_hash(index: int, chunk_digest: bytes) -> bytes:
    """The leaf for chunk ``index`` whose keccak256 is ``chunk_digest`` (see the module doc)."""
    if not 0 <= index < 2**256:
        raise ValueError(f"leaf index {index} is out of range for uint256")
    if len(chunk_digest) != 32:
        raise ValueError("a chunk hash is 32 bytes")
    return keccak(keccak(index.to_bytes(32, "big") + chunk_digest))


def hash_pair(a: bytes, b: bytes) -> bytes:
    """OpenZeppelin's ``Hashes.commutativeKeccak256``: keccak256 of the pair, smaller first."""
    return keccak(a + b) if a < b else keccak(b + a)


def process_proof(leaf: bytes, proof: Iterable[bytes]) -> bytes:
    """The root that ``proof`` leads to from ``leaf`` (``MerkleProof.processProof``)."""
    node = leaf
    for sibling in proof:
        node = hash_pair(node, sibling)
    return node


def verify(root: bytes, leaf: bytes, proof: Iterable[bytes]) -> bool:
    """Whether ``proof`` proves ``leaf`` under ``root`` (``MerkleProof.verify``)."""
    return process_proof(leaf, proof) == root


def verify_chunk(root: bytes, index: int, data: bytes, proof: Iterable[bytes]) -> bool:
    """Whether ``data`` is chunk ``index`` of the outputs committed in ``root``."""
    return verify(root, leaf_hash(index, chunk_hash(data)), proof)


class MerkleTree:
    """The tree over a period's chunk hashes, in chunk order: built once, then proves any chunk."""

    __slots__ = ("_nodes", "count")

    def __init__(self, chunk_hashes: Sequence[bytes]) -> None:
        n = len(chunk_hashes)
        if n == 0:
            raise ValueError("a Merkle tree needs at least one chunk; no outputs commit to zero")
        nodes: list[bytes] = [b""] * (2 * n - 1)
        for i, digest in enumerate(chunk_hashes):
            nodes[2 * n - 2 - i] = leaf_hash(i, digest)
        for k in range(n - 2, -1, -1):
            nodes[k] = hash_pair(nodes[2 * k + 1], nodes[2 * k + 2])
        self._nodes = nodes
        self.count = n

    @classmethod
    def of_chunks(cls, chunks: Iterable[bytes]) -> MerkleTree:
        return cls([chunk_hash(c) for c in chunks])

    def __len__(self) -> int:
        return self.count

    @property
    def root(self) -> bytes:
        return self._nodes[0]

    def leaf(self, index: int) -> bytes:
        return self._nodes[self._position(index)]

    def proof(self, index: int) -> list[bytes]:
        """The sibling hashes from leaf ``index`` up to the root, for ``MerkleProof.verify``."""
        k = self._position(index)
        path = []
        while k > 0:
            path.append(self._nodes[k + 1 if k % 2 == 1 else k - 1])
            k = (k - 1) // 2
        return path

    def _position(self, index: int) -> int:
        if not 0 <= index < self.count:
            raise IndexError(f"chunk {index} is not in a tree of {self.count}")
        return 2 * self.count - 2 - index


def output_root(chunks: Sequence[bytes]) -> bytes:
    """A receipt's ``outputRoot`` for ``chunks``: their tree's root, or the zero hash for none."""
    return MerkleTree.of_chunks(chunks).root if chunks else ZERO_HASH


__all__ = [
    "MerkleTree",
    "chunk",
    "chunk_hash",
    "hash_pair",
    "leaf_hash",
    "output_root",
    "process_proof",
    "verify",
    "verify_chunk",
]
