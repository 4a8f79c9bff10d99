"""Differential check: OpenZeppelin's ``@openzeppelin/merkle-tree`` (the pinned npm package, run by
``tools/merkle_reference.mjs``) builds the same trees as ``market.receipts.merkle``.

For generated lists of chunk hashes (1 to 40, duplicates included, so every tree shape up to the
powers of two on either side of 32 comes up), compared exactly:

* the root: ours equals ``StandardMerkleTree.of([[i, chunkHash_i]], ["uint256", "bytes32"],
  {sortLeaves: false}).root`` (our index-bound leaf is that tree's leaf for the value
  ``[i, chunkHash_i]``), and equals ``SimpleMerkleTree.of(ourLeaves, {sortLeaves: false}).root``;
* every leaf: ours equals OZ's ``leafHash([i, chunkHash_i])``;
* every proof: ours equals OZ's ``getProof(i)``, sibling by sibling;
* verification: for our proof of each chunk at its own index, at the next index, and with one
  bit of the chunk hash flipped, OZ's ``StandardMerkleTree.verify`` (which is ``MerkleProof.verify``
  over the double-hashed leaf, what ``Market.sol`` runs) gives the same verdict as our
  :func:`~market.receipts.merkle.verify`, true only for the genuine claim.
"""

from __future__ import annotations

import json
import selectors
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market.receipts.merkle import MerkleTree, leaf_hash, verify

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "tools" / "merkle_reference.mjs"
ANSWER_TIMEOUT_S = 30.0

digests = st.binary(min_size=32, max_size=32)
# A small pool drawn from often: repeated chunks (the same output twice) must still be told apart.
chunk_hash_lists = st.lists(
    st.one_of(digests, st.sampled_from([bytes(32), b"\xff" * 32, b"\x01" * 32])),
    min_size=1,
    max_size=40,
)


class Reference:
    """The node process: one JSON request per line in, one answer per line out."""

    def __init__(self) -> None:
        node = shutil.which("node")
        if node is None:
            pytest.fail("Node.js >= 20 is required: install it, then run `npm ci`")
        if not (REPO_ROOT / "node_modules" / "@openzeppelin" / "merkle-tree").is_dir():
            pytest.fail("@openzeppelin/merkle-tree is not installed: run `npm ci`")
        self.proc = subprocess.Popen(
            [node, str(SCRIPT)],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.stdout, selectors.EVENT_READ)

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        self.stdin.write(json.dumps(request) + "\n")
        self.stdin.flush()
        if not self.selector.select(ANSWER_TIMEOUT_S):
            pytest.fail(f"{SCRIPT.name} did not answer within {ANSWER_TIMEOUT_S} s")
        line = self.stdout.readline()
        if not line:
            pytest.fail(f"{SCRIPT.name} exited with {self.proc.wait()}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        self.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.selector.close()
        self.stdout.close()


@pytest.fixture(scope="module")
def reference() -> Iterator[Reference]:
    ref = Reference()
    yield ref
    ref.close()


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def _flip(digest: bytes) -> bytes:
    return bytes([digest[0] ^ 1]) + digest[1:]


@settings(max_examples=60, derandomize=True)
@given(hashes=chunk_hash_lists)
def test_trees_proofs_and_verdicts_equal_openzeppelins(
    reference: Reference, hashes: list[bytes]
) -> None:
    ours = MerkleTree(hashes)
    n = len(hashes)
    claims = [
        (index, digest, i)
        for i, h in enumerate(hashes)
        for index, digest in ((i, h), ((i + 1) % n, h), (i, _flip(h)))
    ]  # (index claimed, chunk hash claimed, whose proof)
    oz = reference.ask(
        {
            "chunkHashes": [_hex(h) for h in hashes],
            "checks": [
                {"index": index, "chunkHash": _hex(d), "proof": [_hex(p) for p in ours.proof(i)]}
                for index, d, i in claims
            ],
        }
    )
    assert oz["standardRoot"] == _hex(ours.root)
    assert oz["simpleRoot"] == _hex(ours.root)
    assert oz["leaves"] == [_hex(ours.leaf(i)) for i in range(n)]
    assert oz["proofs"] == [[_hex(p) for p in ours.proof(i)] for i in range(n)]
    mine = [verify(ours.root, leaf_hash(index, d), ours.proof(i)) for index, d, i in claims]
    assert oz["checks"] == mine
    genuine = [index == i and d == hashes[i] for index, d, i in claims]
    assert mine == genuine  # (with one chunk, "the next index" is its own)
