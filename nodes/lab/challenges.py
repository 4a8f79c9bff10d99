"""The lab's hardware challenge of the GPUs it leases: when a lease starts, then at random times.

    outcome = await run_challenge(provider_url, session, domain, voucher_key, lease, settings, cls)

One challenge (:mod:`market.receipts.challenge`, commit-then-open):

1. the lab draws a fresh seed and signs the request with the lease's voucher key;
2. timed: the provider multiplies the two ``n x n`` matrices drawn from the seed on the leased
   machine and answers with the Merkle root of the product's rows (``POST /v1/challenge``);
3. the lab draws the rows to open from a secret of its own and that root, and the provider
   answers them with their proofs (``POST /v1/challenge/open``);
4. the opened rows must be under the root and equal to those rows of ``A @ B`` (Freivalds on
   ``A[rows] @ B``, exact), and the commitment must have come within the deadline.

The deadline is the GPU class's (``SLACK`` times the product's expected time plus a per-call
overhead) plus what is not the GPU's: the round trip of a plain request to the provider measured
just before, twice the host work the provider must also do (deriving the matrices from the seed
and hashing the product's rows, timed on the lab's own machine, once per ``n``) and the
configured ``allowance_s``. A commitment later than that, a wrong row, a row not opened, or a
refusal of the challenge fails it; a provider that cannot be reached at all is not challenged
(the lease's other checks deal with an outage) and is challenged again next tick.

When each lease is challenged is :class:`ChallengeSchedule`'s: at its first step, then after
``MIN_GAP_S`` plus an exponential wait of mean ``mean_interval_s``, so a provider cannot tell when
the next one comes. A provider may answer "busy" (429: a challenge already running, or one too
soon after the last, as after a lab's restart) ``MAX_BUSY - 1`` times in a row; the next such
answer fails the challenge, or a provider could dodge every one. A provider whose work on the lease
is over (the lease ended, or it stopped for want of payment, as while a lab was down) answers
``lease_ended``: it is not challenged again, and a receipt it signs afterwards for time past that
answer is refused, so the answer cannot dodge a challenge and bill on.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from dataclasses import dataclass, field
from functools import cache
from typing import Final

import aiohttp
import numpy as np

from market.protocol.eip712 import Domain
from market.protocol.signing import SigningKey
from market.protocol.types import Lease
from market.receipts.challenge import (
    Challenge,
    check_rows,
    commit_rows,
    pick_rows,
    request_digest,
)
from nodes.errors import PeerUnavailable, RequestRefused
from nodes.lab.config import ChallengeSettings
from nodes.lab.provider_client import ProviderClient
from nodes.lab.store import ChallengeOutcome
from nodes.wire import ChallengeOpen, ChallengeRequest

HOST_FACTOR: Final = 2.0
"""The provider's host work may take this many times the lab's own."""
MIN_GAP_S: Final = 10.0
"""The least time between two challenges of a lease (providers refuse them closer than
:data:`nodes.provider.challenges.MIN_INTERVAL_S`)."""
MAX_BUSY: Final = 3
"""Challenges in a row a provider may answer "busy" (429) before that counts as failing."""


BUSY: Final = ChallengeOutcome(0, "", False, 0.0, 0.0, "busy")
""":func:`run_challenge`'s answer when the provider said it is busy (HTTP 429)."""
ENDED: Final = ChallengeOutcome(0, "", False, 0.0, 0.0, "ended")
""":func:`run_challenge`'s answer when the provider said its work on the lease is over
(``lease_ended``: the lease ended, or payment stopped): no receipt may follow for later time."""


@dataclass
class ChallengeSchedule:
    """When each lease is next challenged (kept in memory: a restarted lab challenges its
    running leases again at once, which costs an honest provider nothing)."""

    settings: ChallengeSettings
    rng: random.Random = field(default_factory=random.SystemRandom)
    _next: dict[bytes, float] = field(default_factory=dict)
    _busy: dict[bytes, int] = field(default_factory=dict)

    def due(self, lease_id: bytes, now: float) -> bool:
        return now >= self._next.get(lease_id, 0.0)

    def ran(self, lease_id: bytes, now: float) -> None:
        wait = self.rng.expovariate(1.0 / self.settings.mean_interval_s)
        self._next[lease_id] = now + MIN_GAP_S + wait
        self._busy.pop(lease_id, None)

    def busy(self, lease_id: bytes, now: float) -> int:
        """The provider answered "busy": try again after the gap; how many times in a row."""
        self._next[lease_id] = now + MIN_GAP_S
        self._busy[lease_id] = self._busy.get(lease_id, 0) + 1
        return self._busy[lease_id]

    def forget(self, lease_id: bytes) -> None:
        self._next.pop(lease_id, None)
        self._busy.pop(lease_id, None)


@cache
def host_work_s(n: int) -> float:
    """Seconds this machine takes for the host work a challenge of size ``n`` asks besides the
    product: deriving the matrices from a seed and hashing the product's rows."""
    start = time.perf_counter()
    Challenge(bytes(32), n, "cpu-test").matrices()
    commit_rows(np.zeros((n, n), dtype=np.float32))
    return time.perf_counter() - start


async def _round_trip_s(provider: ProviderClient) -> float:
    start = time.perf_counter()
    # The round trip alone: a provider whose chain is down answers 503 as fast as 200.
    await provider.raw("GET", "/healthz", max_size=1024)
    return time.perf_counter() - start


async def run_challenge(
    url: str,
    session: aiohttp.ClientSession | None,
    domain: Domain,
    key: SigningKey,
    lease: Lease,
    settings: ChallengeSettings,
    gpu_class: str,
) -> ChallengeOutcome | None:
    """Challenge the provider at ``url`` on ``lease`` as ``gpu_class``; None when it could not
    be reached (not a failure: try again later)."""
    n = settings.n
    seed = secrets.token_bytes(32)
    challenge = Challenge(seed, n, gpu_class)
    host_s = await asyncio.to_thread(host_work_s, n)
    probe = ProviderClient(url, session=session)
    try:
        rtt_s = await _round_trip_s(probe)
    except (PeerUnavailable, RequestRefused):
        return None
    deadline = challenge.deadline_s + settings.allowance_s + rtt_s + HOST_FACTOR * host_s
    signature = key.unsafe_sign_hash(request_digest(domain, lease.id, seed, n))

    def failed(reason: str, elapsed: float) -> ChallengeOutcome:
        return ChallengeOutcome(n, gpu_class, False, elapsed, deadline, reason)

    provider = ProviderClient(url, session=session, timeout_s=max(10.0, 2 * deadline + 1))
    start = time.perf_counter()
    try:
        commitment = await provider.challenge(ChallengeRequest(lease.id, seed, n, signature))
    except PeerUnavailable:
        elapsed = time.perf_counter() - start
        if elapsed <= deadline:
            return None  # gone (a restart, an outage): not an answer, late or otherwise
        return failed(f"no answer within {elapsed:.3f} s", elapsed)
    except RequestRefused as exc:
        if exc.status == 429:  # one already running or too soon (a restarted lab): later
            return BUSY
        if exc.code == "lease_ended":
            return ENDED
        return failed(f"refused: {exc.code}: {exc.message}", time.perf_counter() - start)
    elapsed = time.perf_counter() - start
    if commitment.lease_id != lease.id or commitment.seed != seed:
        return failed("answered another challenge", elapsed)
    rows = pick_rows(secrets.token_bytes(32), commitment.root, n, settings.rows)
    try:
        opened = await provider.open_challenge(ChallengeOpen(lease.id, seed, rows))
    except PeerUnavailable:
        return None
    except RequestRefused as exc:
        return failed(f"refused to open rows: {exc.code}: {exc.message}", elapsed)
    got = {r.index: (r.data, list(r.proof)) for r in opened.rows}
    if opened.seed != seed or set(got) != set(rows):
        return failed("did not open the rows asked", elapsed)
    if not await asyncio.to_thread(check_rows, challenge, commitment.root, got):
        return failed("an opened row is not under the root or not that row of A @ B", elapsed)
    if elapsed > deadline:
        return failed(
            f"took {elapsed:.3f} s, over the {deadline:.3f} s deadline for {gpu_class}", elapsed
        )
    return ChallengeOutcome(n, gpu_class, True, elapsed, deadline)


__all__ = [
    "BUSY",
    "ENDED",
    "HOST_FACTOR",
    "MAX_BUSY",
    "MIN_GAP_S",
    "ChallengeSchedule",
    "host_work_s",
    "run_challenge",
]
