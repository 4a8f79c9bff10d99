"""Differential check: ethers.js hashes our EIP-712 messages and recovers their signers as we do.

The library signs generated offers, bids and vouchers (edge values included); the pinned ethers 6
reads them from a JSON file, computes ``TypedDataEncoder.hash`` and ``verifyTypedData``, and writes
its answers to another file.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address

from market.protocol.eip712 import Domain, digest, typed_data
from market.protocol.signing import SECP256K1_N, SigningKey, recover
from market.protocol.types import (
    UINT32_MAX,
    UINT64_MAX,
    UINT256_MAX,
    Bid,
    Billing,
    Offer,
    Signed,
    Voucher,
)

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("ethers_verify.mjs")
NODE_TIMEOUT_S = 60
KEYS = [SigningKey(k.to_bytes(32, "big")) for k in (1, 0xC0FFEE, SECP256K1_N - 1)]
DOMAINS = [
    Domain(31337, to_checksum_address("0x" + "5f" * 20)),
    Domain(1, to_checksum_address(bytes(20))),
    Domain(UINT256_MAX, to_checksum_address(b"\xff" * 20)),
]
Signable = Offer | Bid | Voucher


def _uint(rng: random.Random, top: int) -> int:
    """Half the time an edge value (0, 1, top - 1, top), otherwise any value up to ``top``."""
    if rng.random() < 0.5:
        return rng.choice((0, 1, top - 1, top))
    return rng.randint(0, top)


def _bytes32(rng: random.Random) -> bytes:
    return rng.choice((bytes(32), b"\xff" * 32, rng.randbytes(32)))


def _address(rng: random.Random) -> ChecksumAddress:
    return to_checksum_address(rng.choice((bytes(20), rng.randbytes(20))))


def _model(rng: random.Random) -> str:
    printable = [chr(c) for c in range(0x20, 0x7F)]
    length = rng.choice((1, 4, 32, rng.randint(1, 32)))
    return "".join(rng.choice(printable) for _ in range(length))


def _message(rng: random.Random, signer: SigningKey) -> Signable:
    kind = rng.choice(("offer", "bid", "voucher"))
    if kind == "offer":
        low, high = sorted((_uint(rng, UINT64_MAX), _uint(rng, UINT64_MAX)))
        return Offer(
            provider=signer.address,
            gpu_model=_model(rng),
            gpu_count=_uint(rng, UINT32_MAX),
            memory_gib=_uint(rng, UINT32_MAX),
            price_per_gpu_second=_uint(rng, UINT256_MAX),
            min_duration=low,
            max_duration=high,
            expiry=_uint(rng, UINT64_MAX),
            nonce=_uint(rng, UINT256_MAX),
            bandwidth_gbps=_uint(rng, UINT32_MAX),
            features=_uint(rng, UINT256_MAX),
            billing_modes=_uint(rng, 255),
            receipt_signer=_address(rng),
        )
    if kind == "bid":
        return Bid(
            lab=signer.address,
            gpu_model=_model(rng),
            gpu_count=_uint(rng, UINT32_MAX),
            max_price_per_gpu_second=_uint(rng, UINT256_MAX),
            duration=_uint(rng, UINT64_MAX),
            expiry=_uint(rng, UINT64_MAX),
            nonce=_uint(rng, UINT256_MAX),
            job_spec_hash=_bytes32(rng),
            min_memory_gib=_uint(rng, UINT32_MAX),
            min_bandwidth_gbps=_uint(rng, UINT32_MAX),
            required_features=_uint(rng, UINT256_MAX),
            accepted_features=_uint(rng, UINT256_MAX),
            billing=Billing(rng.randint(0, 1)),
            all_or_none=rng.random() < 0.5,
            voucher_signer=_address(rng),
        )
    return Voucher(
        lease_id=_bytes32(rng),
        cumulative_amount=_uint(rng, UINT256_MAX),
        receipt_hash=_bytes32(rng),
    )


def _json_value(value: object) -> object:
    """ethers' input: integers as decimal strings (uint256 exceeds JSON numbers), bytes as hex."""
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    return value


def _ethers_item(domain: Domain, signed: Signed[Any]) -> dict[str, Any]:
    data = typed_data(domain, signed.message)
    types = {k: v for k, v in data["types"].items() if k != "EIP712Domain"}
    return {
        "domain": {k: _json_value(v) for k, v in data["domain"].items()},
        "types": types,
        "primaryType": data["primaryType"],
        "message": {k: _json_value(v) for k, v in data["message"].items()},
        "signature": "0x" + signed.signature.hex(),
    }


def _run_ethers(items: list[dict[str, Any]], tmp_path: Path) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js >= 20 is required: install it, then run `npm ci`")
    if not (REPO_ROOT / "node_modules" / "ethers").is_dir():
        pytest.fail("the pinned ethers is not installed: run `npm ci` in the repository root")
    in_path, out_path = tmp_path / "input.json", tmp_path / "output.json"
    in_path.write_text(json.dumps({"items": items}), encoding="utf-8")
    proc = subprocess.run(
        [node, str(SCRIPT), str(in_path), str(out_path)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=NODE_TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    output: dict[str, Any] = json.loads(out_path.read_text(encoding="utf-8"))
    return output


def test_ethers_computes_our_digests_and_recovers_our_signers(tmp_path: Path) -> None:
    rng = random.Random(20240917)
    cases: list[tuple[Domain, Signed[Any], SigningKey]] = []
    for i in range(54):
        key = KEYS[i % len(KEYS)]
        domain = DOMAINS[(i // len(KEYS)) % len(DOMAINS)]
        cases.append((domain, key.sign(domain, _message(rng, key)), key))
    kinds = {type(signed.message) for _, signed, _ in cases}
    assert kinds == {Offer, Bid, Voucher}

    output = _run_ethers([_ethers_item(d, s) for d, s, _ in cases], tmp_path)

    pinned = json.loads((REPO_ROOT / "package.json").read_text())["devDependencies"]["ethers"]
    assert output["ethers"] == pinned
    assert len(output["results"]) == len(cases)
    for (domain, signed, key), result in zip(cases, output["results"], strict=True):
        assert result["digest"] == "0x" + digest(domain, signed.message).hex(), signed.message
        assert result["signer"] == key.address, signed.message


def test_ethers_recovers_the_same_wrong_signer_for_a_signature_over_other_terms(
    tmp_path: Path,
) -> None:
    rng = random.Random(7)
    key = KEYS[1]
    domain = DOMAINS[0]
    items, expected = [], []
    for _ in range(6):
        message: Any = _message(rng, key)
        other: Any = _message(rng, key)
        # The signature is over ``other``; a verifier of ``message`` must recover someone else.
        forged = Signed(message, key.sign(domain, other).signature)
        items.append(_ethers_item(domain, forged))
        expected.append(recover(digest(domain, message), forged.signature))

    output = _run_ethers(items, tmp_path)

    signers = [r["signer"] for r in output["results"]]
    assert signers == expected
    assert key.address not in signers
