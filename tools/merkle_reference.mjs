// OpenZeppelin's @openzeppelin/merkle-tree as the reference for market/receipts/merkle.py.
//
// Reads one JSON request per line on stdin, writes one JSON answer per line on stdout:
//
//   {"chunkHashes": ["0x<32 bytes>", ...],                  the period's chunk hashes, in order
//    "checks": [{"index": i, "chunkHash": "0x..", "proof": ["0x..", ...]}, ...]}   claims to judge
//
//   {"standardRoot": "0x..",    StandardMerkleTree.of([[i, chunkHash_i]], ["uint256", "bytes32"],
//                               {sortLeaves: false}).root
//    "leaves": ["0x..", ...],   its leafHash([i, chunkHash_i]) for every i
//    "proofs": [["0x..", ...]], its getProof(i) for every i
//    "simpleRoot": "0x..",      SimpleMerkleTree.of(leaves, {sortLeaves: false}).root
//    "checks": [true, ...]}     StandardMerkleTree.verify(standardRoot, encoding, [index, chunkHash],
//                               proof) for every claim
//
//   node tools/merkle_reference.mjs < requests.jsonl
import { createInterface } from "node:readline";
import { SimpleMerkleTree, StandardMerkleTree } from "@openzeppelin/merkle-tree";

const ENCODING = ["uint256", "bytes32"];

function answer(request) {
  const values = request.chunkHashes.map((hash, i) => [i, hash]);
  const tree = StandardMerkleTree.of(values, ENCODING, { sortLeaves: false });
  const leaves = values.map((value) => tree.leafHash(value));
  const simple = SimpleMerkleTree.of(leaves, { sortLeaves: false });
  return {
    standardRoot: tree.root,
    leaves,
    proofs: values.map((_, i) => tree.getProof(i)),
    simpleRoot: simple.root,
    checks: (request.checks ?? []).map((c) =>
      StandardMerkleTree.verify(tree.root, ENCODING, [c.index, c.chunkHash], c.proof),
    ),
  };
}

for await (const line of createInterface({ input: process.stdin })) {
  if (line.trim() !== "") {
    process.stdout.write(JSON.stringify(answer(JSON.parse(line))) + "\n");
  }
}
