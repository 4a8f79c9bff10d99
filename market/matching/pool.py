"""Signature checks in worker processes, for a process whose own threads share a busy GIL.

:func:`~market.matching.verified.verify_orders` checks a batch on threads: libsecp256k1 releases
the GIL, but decoding, EIP-712 hashing and coincurve's wrappers hold it, so in a process whose
event loop is busy (a relay admitting orders from many clients) the verifying threads and the loop
queue for the one GIL and neither runs at the speed of its core. A :class:`VerifierPool` moves the
whole check to worker processes: the caller sends each order's canonical frame (a lookup: the
codec keeps the frames of the orders it decoded) and gets back, per order, its EIP-712 hash when
its signer's ECDSA signature is good, or what the check found when not. The caller builds its
typed results from those (``verify_orders(..., pool=pool)``); the ERC-1271 check of a contract
signer's order, which reads the chain, stays with the caller.

Workers start on first use, from a forkserver (never forked from a process with threads), and
live until :meth:`VerifierPool.close`. A pool whose worker died is restarted, and the batch that
met it is checked in the calling thread instead: a crash never loses or fails a batch. Workers
run at a lower scheduling priority than the caller (:data:`WORKER_NICENESS`).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Final

from market.errors import InvalidSignature
from market.protocol.codec import decode_as, encode, signed_order_encoding
from market.protocol.eip712 import Domain, digest_of_encoding, order_hash
from market.protocol.signing import verify_signature
from market.protocol.types import Bid, Offer, Signed, checksum_address

POOL_MIN_BATCH: Final = 64
"""Smaller batches are checked in the caller's process: a worker's round trip would cost more."""
MIN_CHUNK: Final = 64
"""A batch is split over the workers in chunks of at least this many orders."""
MAX_WORKERS: Final = 8
WORKER_NICENESS: Final = 10
"""How much lower the workers' scheduling priority is than the caller's: the caller's event loop
is the serial part of the work (it decodes every request and applies every check), so when the
cores are all busy it runs first and the workers take the rest (measured on 2 cores: the relay
used 1.70 cores instead of 1.57; ``bench.relay``'s ratio, median of five runs: 0.591, not 0.544)."""

Failure = tuple[bytes, str | None, str]
"""An order whose ECDSA check failed: its EIP-712 hash, who signed it (None: nobody could be
recovered) and why, as :class:`~market.errors.InvalidSignature` says them."""
Outcome = bytes | Failure
"""Per order: its hash (the signature is its signer's), or a :data:`Failure`."""


def check_frames(domain: Domain, frames: Sequence[bytes]) -> list[Outcome]:
    """Each signed order frame's :data:`Outcome`. Runs in a worker (or in the caller when the
    pool cannot); the frames are ones the caller's codec wrote from orders it built, so each
    is read for its hash without building the order again."""
    out: list[Outcome] = []
    for frame in frames:
        parts = signed_order_encoding(frame)
        if parts is None:  # not the codec's canonical frame: cannot happen, but decode it
            signed = decode_as(frame, Signed)
            message = signed.message
            assert isinstance(message, Offer | Bid)  # the caller's own frames of orders
            h: bytes = order_hash(domain, message)
            signer = message.provider if isinstance(message, Offer) else message.lab
            signature = signed.signature
        else:
            cls, encoded, raw_signer, signature = parts
            h = digest_of_encoding(domain, cls, encoded)
            signer = checksum_address("0x" + raw_signer.hex())
        try:
            verify_signature(h, signer, signature)
        except InvalidSignature as exc:
            out.append((h, exc.recovered, exc.reason))
            continue
        out.append(h)
    return out


def _yield_to_caller() -> None:
    os.nice(WORKER_NICENESS)


def _warm() -> int:
    return os.getpid()


class VerifierPool:
    """``workers`` processes (default: one per CPU, at most :data:`MAX_WORKERS`) that check
    batches of at least ``min_batch`` orders. Thread-safe; :meth:`close` when done."""

    def __init__(self, workers: int | None = None, *, min_batch: int = POOL_MIN_BATCH) -> None:
        self.workers = max(1, min(workers or os.cpu_count() or 1, MAX_WORKERS))
        self.min_batch = min_batch
        self._lock = threading.Lock()
        self._executor: ProcessPoolExecutor | None = None
        self._closed = False
        self.restarts = 0
        """Times a broken pool (a worker killed) was replaced."""

    def start(self) -> set[int]:
        """Start the workers now rather than on the first batch (each imports the library);
        returns the process ids that answered."""
        executor = self._running()
        return {future.result() for future in [executor.submit(_warm) for _ in range(self.workers)]}

    def check(self, domain: Domain, orders: Sequence[Signed[Offer] | Signed[Bid]]) -> list[Outcome]:
        """Each order's :data:`Outcome`, in order. Blocks the calling thread (not its GIL)."""
        frames = [encode(o) for o in orders]
        step = max(MIN_CHUNK, -(-len(frames) // self.workers))
        executor: ProcessPoolExecutor | None = None
        try:
            executor = self._running()
            futures = [
                executor.submit(check_frames, domain, frames[lo : lo + step])
                for lo in range(0, len(frames), step)
            ]
            return [outcome for future in futures for outcome in future.result()]
        except BrokenProcessPool:
            self._replace(executor)
            return check_frames(domain, frames)

    def close(self) -> None:
        """Stop the workers (waiting for batches in flight); later checks run in the caller."""
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    def _running(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._closed:
                raise BrokenProcessPool("the pool is closed")
            if self._executor is None:
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload([__name__])
                self._executor = ProcessPoolExecutor(
                    self.workers, mp_context=context, initializer=_yield_to_caller
                )
            return self._executor

    def _replace(self, broken: ProcessPoolExecutor | None) -> None:
        with self._lock:
            if broken is not None and self._executor is broken:
                self._executor = None
                self.restarts += 1
        if broken is not None:
            broken.shutdown(wait=False, cancel_futures=True)


__all__ = [
    "MIN_CHUNK",
    "POOL_MIN_BATCH",
    "WORKER_NICENESS",
    "Failure",
    "Outcome",
    "VerifierPool",
    "check_frames",
]
