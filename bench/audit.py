# ruff: noqa: E402  (the imports below numpy must wait until BLAS threads are pinned)
"""Audit figures: how often re-execution sampling catches work-skipping providers, how often it
wrongly accuses honest ones, and how much cheaper Freivalds' check is than the product it checks.

python -m bench.audit      -> bench/results/audit.json

Each simulated job runs ``SEGMENTS`` deterministic segments, commits to their output hashes in one
signed receipt, and is audited as a lab would: the receipt is verified, then ``DEFAULT_SAMPLES``
(44) segments drawn from the receipt hash and a per-job lab secret are re-executed and compared.
A cheating provider fakes a fraction ``f`` of the segments, chosen at random.

* ``detection_rate``: share of ``PROVIDERS`` cheaters caught, ``f`` uniform in [10%, 50%]
  (goal >= 0.99); ``detection_rate_f10`` and ``detection_rate_f05`` at exactly 10% and 5%, next to
  the bound ``1 - (1 - f) ** 44`` for sampling with replacement.
* ``false_alarms``: honest jobs, out of ``PROVIDERS``, that failed any check (goal 0).
* ``freivalds_speedup_n1024`` / ``_n2048``: median float64 ``A @ B`` time over the median
  ``freivalds_float`` time (20 rounds), same process, same matrices, both on one BLAS thread
  (``blas_threads``): the check is a few matrix-vector products, and on a small shared machine
  waking BLAS threads for each costs more than the work, so the ratio would be the scheduler's.
"""

from __future__ import annotations

import os
import random
import sys
import time

if "numpy" not in sys.modules:  # BLAS reads these once, when numpy loads
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")
BLAS_THREADS = os.environ.get("OPENBLAS_NUM_THREADS", "default")

import numpy as np
from eth_hash.auto import keccak
from eth_utils.address import to_checksum_address

from bench.results_file import median_seconds, write
from market.errors import AuditError, ReceiptError
from market.protocol.eip712 import Domain
from market.protocol.signing import SigningKey
from market.protocol.types import Lease
from market.receipts.audit import DEFAULT_SAMPLES, ReexecutionAuditor
from market.receipts.challenge import Challenge, check_answer, solve
from market.receipts.freivalds import DEFAULT_ROUNDS, freivalds_float
from market.receipts.issue import ReceiptChain
from market.receipts.merkle import MerkleTree, chunk_hash
from market.receipts.verify import ReceiptVerifier

DOMAIN = Domain(31337, to_checksum_address("0x" + "5f" * 20))
PROVIDER = SigningKey(b"\x42" * 32)
LAB = SigningKey(b"\x44" * 32)
PROVIDERS = 1_000
SEGMENTS = 500


def segment_output(job: int, i: int) -> bytes:
    return keccak(job.to_bytes(8, "big") + i.to_bytes(8, "big"))


def audit_job(job: int, faked: set[int], rng: random.Random) -> bool:
    """Run one job (faking the ``faked`` segments), audit it; True when an alarm is raised."""
    lease = Lease(PROVIDER.address, LAB.address, 1, 1000, 1_700_000_000, 3600, keccak(b"%d" % job))
    hashes = [
        chunk_hash(rng.randbytes(32) if i in faked else segment_output(job, i))
        for i in range(SEGMENTS)
    ]
    chain = ReceiptChain(PROVIDER, DOMAIN, lease)
    signed = chain.append(lease.start + 60, 60, output_root=MerkleTree(hashes).root)
    auditor = ReexecutionAuditor(DOMAIN, lambda i: segment_output(job, i), rng.randbytes(32))
    try:
        ReceiptVerifier(DOMAIN, lease).accept(signed)
        auditor.audit(signed.message, hashes).raise_for_mismatch()
    except (ReceiptError, AuditError):
        return True
    return False


def detection_rate(first_job: int, fraction: tuple[float, float], seed: int) -> float:
    rng = random.Random(seed)
    caught = 0
    for job in range(first_job, first_job + PROVIDERS):
        f = rng.uniform(*fraction)
        faked = set(rng.sample(range(SEGMENTS), max(1, round(f * SEGMENTS))))
        caught += audit_job(job, faked, rng)
    return caught / PROVIDERS


def freivalds_speedup(n: int, repeat: int) -> tuple[float, float, float]:
    """(matmul ms, Freivalds ms, ratio) for float64 ``n x n`` matrices."""
    g = np.random.default_rng(n)
    a, b = g.standard_normal((n, n)), g.standard_normal((n, n))
    c = a @ b
    assert freivalds_float(a, b, c)  # warm-up, and a correct product passes
    matmul_s = median_seconds(lambda: a @ b, repeat)
    check_s = median_seconds(lambda: freivalds_float(a, b, c), repeat * 3)
    return matmul_s * 1e3, check_s * 1e3, matmul_s / check_s


def main() -> None:
    started = time.perf_counter()
    rate = detection_rate(0, (0.10, 0.50), seed=1)
    rate_f10 = detection_rate(10**6, (0.10, 0.10), seed=2)
    rate_f05 = detection_rate(2 * 10**6, (0.05, 0.05), seed=3)
    honest = random.Random(4)
    false_alarms = sum(audit_job(3 * 10**6 + j, set(), honest) for j in range(PROVIDERS))
    audits_s = time.perf_counter() - started

    mm1024, fv1024, speedup1024 = freivalds_speedup(1024, repeat=5)
    mm2048, fv2048, speedup2048 = freivalds_speedup(2048, repeat=3)

    challenge = Challenge(bytes(range(32)), 2048, "cpu-test")
    answer = solve(challenge, backend="numpy")
    t0 = time.perf_counter()
    check_answer(challenge, answer.product, answer.elapsed_s)
    challenge_check_s = time.perf_counter() - t0

    figures: dict[str, float | int | str] = {
        "providers": PROVIDERS,
        "segments_per_job": SEGMENTS,
        "samples_per_audit": DEFAULT_SAMPLES,
        "detection_rate": round(rate, 4),
        "detection_rate_f10": round(rate_f10, 4),
        "detection_bound_f10": round(1 - 0.9**DEFAULT_SAMPLES, 4),
        "detection_rate_f05": round(rate_f05, 4),
        "detection_bound_f05": round(1 - 0.95**DEFAULT_SAMPLES, 4),
        "false_alarms": false_alarms,
        "audit_jobs_per_s": round(4 * PROVIDERS / audits_s, 1),
        "freivalds_rounds": DEFAULT_ROUNDS,
        "blas_threads": BLAS_THREADS,
        "matmul_ms_n1024": round(mm1024, 2),
        "freivalds_ms_n1024": round(fv1024, 2),
        "freivalds_speedup_n1024": round(speedup1024, 1),
        "matmul_ms_n2048": round(mm2048, 2),
        "freivalds_ms_n2048": round(fv2048, 2),
        "freivalds_speedup_n2048": round(speedup2048, 1),
        "challenge_solve_ms_n2048_numpy": round(answer.elapsed_s * 1e3, 2),
        "challenge_check_ms_n2048": round(challenge_check_s * 1e3, 2),
    }
    path = write("audit", figures)
    for key, value in figures.items():
        print(f"{key:32} {value}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
