"""The provider's side of a lab's hardware challenge (``POST /v1/challenge``, ``/open``).

A lab asks, signing with its lease's voucher key (:func:`market.receipts.challenge.
request_digest`), for the product of the two ``n x n`` matrices drawn from a fresh seed; the
agent computes it (:func:`market.receipts.challenge.solve`: torch or cupy on a GPU when
installed, else numpy) and answers at once with the Merkle root of the product's rows. The lab
times that round trip. It then names the rows to open, drawn from the root, and the agent
answers them with their proofs; the product is dropped once opened (one opening a challenge),
or after ``KEEP_S`` unopened.

Limits, so the endpoint cannot be used to make the provider burn its GPUs for strangers: only
the lease's lab can ask (the signature), only while the lease runs here, one challenge at a time
per lease, and no more often than ``min_interval_s``; ``n`` is at most ``MAX_CHALLENGE_N``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Final

import numpy.typing as npt

from market.protocol.eip712 import Domain
from market.protocol.signing import verify_signature
from market.protocol.types import Lease
from market.receipts.challenge import (
    Answer,
    Challenge,
    commit_rows,
    request_digest,
    row_bytes,
    solve,
)
from market.receipts.merkle import MerkleTree
from nodes.errors import ChallengeRefused
from nodes.wire import (
    MAX_CHALLENGE_N,
    ChallengeCommitment,
    ChallengeOpen,
    ChallengeRequest,
    ChallengeRow,
    ChallengeRows,
)

MIN_INTERVAL_S: Final = 5.0
"""The least time between two challenges of one lease."""
KEEP_S: Final = 60.0
"""How long a committed product waits to be opened before it is dropped."""


def compute(seed: bytes, n: int) -> Answer:
    """The product of the challenge ``(seed, n)`` on the best device here (the GPU class only
    sets the lab's deadline; the work is the same for any)."""
    return solve(Challenge(seed, n, "cpu-test"))


@dataclass
class _Committed:
    seed: bytes
    tree: MerkleTree
    product: npt.NDArray[Any]
    at: float


@dataclass
class ChallengeDesk:
    """Answers challenges; thread-safe (the product is computed off the event loop)."""

    domain: Domain
    min_interval_s: float = MIN_INTERVAL_S
    _committed: dict[bytes, _Committed] = field(default_factory=dict)
    _last: dict[bytes, float] = field(default_factory=dict)
    _busy: set[bytes] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def authenticate(self, m: ChallengeRequest, lease: Lease) -> None:
        """Refuse a request not signed by the lease's voucher key, or too large; raises
        InvalidSignature or ChallengeRefused."""
        if not 1 <= m.n <= MAX_CHALLENGE_N:
            raise ChallengeRefused(400, f"n must be in [1, {MAX_CHALLENGE_N}], got {m.n}")
        digest = request_digest(self.domain, m.lease_id, m.seed, m.n)
        verify_signature(digest, lease.voucher_key, m.signature)

    def commit(self, m: ChallengeRequest) -> ChallengeCommitment:
        """Compute the product and commit to its rows (call after :meth:`authenticate`)."""
        now = time.monotonic()
        with self._lock:
            if m.lease_id in self._busy:
                raise ChallengeRefused(429, "a challenge of this lease is already running")
            last = self._last.get(m.lease_id)
            if last is not None and now - last < self.min_interval_s:
                raise ChallengeRefused(
                    429, f"one challenge per {self.min_interval_s:g} s per lease"
                )
            self._busy.add(m.lease_id)
            self._last[m.lease_id] = now
            for lease_id, old in list(self._committed.items()):  # never opened: drop
                if now - old.at > KEEP_S:
                    del self._committed[lease_id]
        try:
            answer = compute(m.seed, m.n)
            tree = commit_rows(answer.product)
        finally:
            with self._lock:
                self._busy.discard(m.lease_id)
        with self._lock:
            self._committed[m.lease_id] = _Committed(m.seed, tree, answer.product, now)
        return ChallengeCommitment(m.lease_id, m.seed, tree.root, answer.backend)

    def open(self, m: ChallengeOpen) -> ChallengeRows:
        """The named rows of the lease's committed product, with proofs; the product is then
        dropped."""
        with self._lock:
            committed = self._committed.get(m.lease_id)
            if committed is None or committed.seed != m.seed:
                raise ChallengeRefused(404, "no committed challenge with this seed on the lease")
            del self._committed[m.lease_id]
        n = committed.product.shape[0]
        if not m.rows or any(not 0 <= i < n for i in m.rows):
            raise ChallengeRefused(400, f"rows must be in [0, {n})")
        rows = tuple(
            ChallengeRow(i, row_bytes(committed.product, i), tuple(committed.tree.proof(i)))
            for i in dict.fromkeys(m.rows)
        )
        return ChallengeRows(m.lease_id, m.seed, rows)

    def forget(self, lease_id: bytes) -> None:
        """Drop what is kept for a lease (it ended)."""
        with self._lock:
            self._committed.pop(lease_id, None)
            self._last.pop(lease_id, None)


__all__ = ["KEEP_S", "MIN_INTERVAL_S", "ChallengeDesk", "ChallengeRefused", "compute"]
