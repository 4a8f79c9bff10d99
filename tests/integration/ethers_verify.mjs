// An independent EIP-712 client for test_ethers_eip712.py: the pinned ethers 6 hashes each typed
// message and recovers its signer.
//
// Usage: node ethers_verify.mjs INPUT.json OUTPUT.json
// INPUT:  {"items": [{"domain": {...}, "types": {...}, "primaryType": "...", "message": {...},
//                     "signature": "0x..."}]}  (integers as decimal strings, bytes32 as 0x hex)
// OUTPUT: {"ethers": "<version>", "results": [{"digest": "0x...", "signer": "0x..."}]}

import { readFileSync, writeFileSync } from "node:fs";
import { TypedDataEncoder, verifyTypedData, version } from "ethers";

const [inputPath, outputPath] = process.argv.slice(2);
if (!inputPath || !outputPath) {
  console.error("usage: node ethers_verify.mjs INPUT.json OUTPUT.json");
  process.exit(2);
}

const { items } = JSON.parse(readFileSync(inputPath, "utf8"));
const results = items.map(({ domain, types, primaryType, message, signature }) => {
  // ethers infers the primary type; make sure it is the one the library meant.
  const primary = TypedDataEncoder.from(types).primaryType;
  if (primary !== primaryType) {
    throw new Error(`ethers sees primary type ${primary}, expected ${primaryType}`);
  }
  return {
    digest: TypedDataEncoder.hash(domain, types, message),
    signer: verifyTypedData(domain, types, message, signature),
  };
});
writeFileSync(outputPath, JSON.stringify({ ethers: version, results }));
