"""Signatures checked in worker processes give exactly the verdicts of the threads' path.

Real worker processes (a forkserver) check real secp256k1 signatures: good ones, forged, malleable,
malformed and a contract signer's, mixed in one batch; a worker killed with SIGKILL between
batches costs nothing but a restart.
"""

from __future__ import annotations

import dataclasses
import os
import signal
from collections.abc import Iterator

import msgpack
import pytest
from eth_utils.address import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from market.errors import InvalidSignature
from market.matching import Rejected, Submission, VerifiedOrder, verify_orders
from market.matching.pool import WORKER_NICENESS, VerifierPool, check_frames
from market.protocol.codec import decode, encode, signed_order_encoding
from market.protocol.eip712 import Domain, digest, digest_of_encoding
from market.protocol.signing import SECP256K1_N, SigningKey
from market.protocol.types import Bid, Offer, Signed
from tests.unit.test_contract_signers import OWNER, WALLET, TableChecker
from tests.unit.test_protocol_types import BASE, bids, offers, vouchers
from tests.waiting import wait_until

pytestmark = pytest.mark.unit

DOMAIN = Domain(31337, to_checksum_address("0x" + "5f" * 20))
KEYS = [SigningKey(bytes([i + 1]) * 32) for i in range(8)]


@pytest.fixture(scope="module")
def pool() -> Iterator[VerifierPool]:
    pool = VerifierPool(2, min_batch=1)
    yield pool
    pool.close()


def _orders(count: int) -> list[Signed[Offer] | Signed[Bid]]:
    out: list[Signed[Offer] | Signed[Bid]] = []
    for i in range(count):
        key = KEYS[i % len(KEYS)]
        if i % 2:
            bid = dataclasses.replace(BASE[Bid], lab=key.address, nonce=i)
            out.append(key.sign(DOMAIN, bid))
        else:
            offer = dataclasses.replace(BASE[Offer], provider=key.address, nonce=i)
            out.append(key.sign(DOMAIN, offer))
    return out


def _spoiled(orders: list[Signed[Offer] | Signed[Bid]]) -> list[Signed[Offer] | Signed[Bid]]:
    """Every fifth order forged (signed by another key), malleable (high s), cut short, or a
    contract signer's; the rest as signed. Each goes through the codec, as a relay's orders do."""
    out: list[Signed[Offer] | Signed[Bid]] = []
    for i, signed in enumerate(orders):
        sig, message = signed.signature, signed.message
        if i % 20 == 3:
            sig = KEYS[(i + 1) % len(KEYS)].unsafe_sign_hash(digest(DOMAIN, message))
        elif i % 20 == 8:
            s = SECP256K1_N - int.from_bytes(sig[32:64], "big")
            sig = sig[:32] + s.to_bytes(32, "big") + bytes([55 - sig[64]])
        elif i % 20 == 13:
            sig = sig[:40]
        elif i % 20 == 18:
            bid = dataclasses.replace(BASE[Bid], lab=WALLET, nonce=i, voucher_signer=OWNER.address)
            message, sig = bid, OWNER.unsafe_sign_hash(digest(DOMAIN, bid))
        out.append(decode(encode(Signed(message, sig))))  # type: ignore[arg-type]
    return out


def _verdicts(
    results: tuple[list[VerifiedOrder], list[Rejected]],
) -> tuple[list[bytes], list[tuple[int, type, str, str | None, str]]]:
    valid, rejected = results
    return [o.hash for o in valid], [
        (
            r.index,
            type(r.error),
            str(r.error),
            getattr(r.error, "recovered", None),
            getattr(r.error, "reason", ""),
        )
        for r in rejected
    ]


def test_pool_verdicts_are_the_threads_verdicts(pool: VerifierPool) -> None:
    batch = _spoiled(_orders(200))
    threads = _verdicts(verify_orders(DOMAIN, batch))
    workers = _verdicts(verify_orders(DOMAIN, batch, pool=pool))
    assert workers == threads
    assert pool.restarts == 0  # the workers answered: nothing fell back to this process
    hashes, rejected = workers
    assert len(hashes) == 160  # the 40 spoiled ones refused, every other one verified
    assert {kind for _, kind, *_ in rejected} == {InvalidSignature}
    reasons = {reason for *_, reason in rejected}
    assert any("malleable" in r for r in reasons)
    assert any("length 40" in r for r in reasons)
    assert any("another account" in r for r in reasons)


def test_pool_path_asks_the_contract_checker_as_the_threads_do(pool: VerifierPool) -> None:
    batch = _spoiled(_orders(40))
    wallet_orders = [o for o in batch if getattr(o.message, "lab", None) == WALLET]
    accepted = {(WALLET, digest(DOMAIN, o.message), o.signature) for o in wallet_orders}
    by_threads = TableChecker(accepted)
    by_pool = TableChecker(accepted)
    threads = _verdicts(verify_orders(DOMAIN, batch, checker=by_threads))
    workers = _verdicts(verify_orders(DOMAIN, batch, checker=by_pool, pool=pool))
    assert workers == threads
    assert by_pool.asked == by_threads.asked
    assert len(wallet_orders) == 2
    assert len(threads[0]) == 34


def test_small_batches_stay_in_the_callers_process() -> None:
    pool = VerifierPool(2)  # min_batch 64
    try:
        valid, rejected = verify_orders(DOMAIN, _orders(10), pool=pool)
        assert len(valid) == 10
        assert not rejected
        assert pool._executor is None  # no worker was started for them
    finally:
        pool.close()


def test_a_killed_worker_costs_a_restart_not_a_batch() -> None:
    pool = VerifierPool(2, min_batch=1)
    try:
        batch = [Submission(o) for o in _orders(300)]
        pids = pool.start()
        assert len(pids) >= 1
        assert os.getpid() not in pids
        os.kill(next(iter(pids)), signal.SIGKILL)
        wait_until(lambda: not _alive(next(iter(pids))), timeout_s=10, what="the worker's death")
        valid, rejected = verify_orders(DOMAIN, batch, pool=pool)
        assert len(valid) == 300
        assert not rejected
        assert pool.restarts == 1
        valid, rejected = verify_orders(DOMAIN, batch, pool=pool)  # a new pool's workers
        assert len(valid) == 300
        assert not rejected
        assert pool.restarts == 1
    finally:
        pool.close()
    valid, _ = verify_orders(DOMAIN, batch, pool=pool)  # a closed pool: in the caller
    assert len(valid) == 300


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@settings(max_examples=300, deadline=None)
@given(
    message=st.one_of(offers(), bids()),
    signature=st.binary(min_size=1, max_size=Signed.MAX_SIGNATURE_LENGTH),
)
def test_a_frame_read_without_building_its_order_hashes_as_the_order_does(
    message: Offer | Bid, signature: bytes
) -> None:
    """The workers' path (the frame's fields straight to their EIP-712 words) gives the digest
    of the order built from the same frame, for any order the types admit."""
    parts = signed_order_encoding(encode(Signed(message, signature)))  # type: ignore[arg-type]
    assert parts is not None
    cls, encoded, signer, sig = parts
    assert cls is type(message)
    assert digest_of_encoding(DOMAIN, cls, encoded) == digest(DOMAIN, message)
    assert signer == bytes.fromhex((message.provider if cls is Offer else message.lab)[2:])  # type: ignore[union-attr]
    assert sig == signature


@given(voucher=vouchers())
def test_only_signed_orders_frames_are_read_that_way(voucher: object) -> None:
    offer = BASE[Offer]
    assert signed_order_encoding(encode(voucher)) is None  # type: ignore[arg-type]
    assert signed_order_encoding(encode(offer)) is None  # unsigned
    assert signed_order_encoding(b"\x83garbage") is None


def test_a_frame_not_in_canonical_form_is_decoded_and_checked_alike() -> None:
    """A frame another writer made (keys in another order) falls back to the full decoding and
    gets the same verdicts."""
    orders = _spoiled(_orders(20))
    canonical = [encode(o) for o in orders]

    def reordered(frame: bytes) -> bytes:
        tree = msgpack.unpackb(frame, raw=False)
        tree["body"]["message"] = dict(reversed(tree["body"]["message"].items()))
        packed: bytes = msgpack.packb(tree, use_bin_type=True)
        assert packed != frame
        return packed

    other = [reordered(f) for f in canonical]
    assert all(signed_order_encoding(f) is None for f in other)
    assert check_frames(DOMAIN, other) == check_frames(DOMAIN, canonical)


@pytest.mark.parametrize("model", ["M" * 33, "H100-é"])
def test_a_frame_whose_model_no_order_holds_is_left_to_the_full_decoding(model: str) -> None:
    tree = msgpack.unpackb(encode(_orders(1)[0]), raw=False)
    tree["body"]["message"]["gpuModel"] = model
    frame: bytes = msgpack.packb(tree, use_bin_type=True)
    assert signed_order_encoding(frame) is None


def test_workers_yield_the_cores_to_the_caller(pool: VerifierPool) -> None:
    """The caller's loop is the serial part of the work: its workers run at a lower priority."""
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    workers = pool.start()
    assert workers
    for pid in workers:
        assert os.getpriority(os.PRIO_PROCESS, pid) == min(19, mine + WORKER_NICENESS)
