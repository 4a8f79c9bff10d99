"""Audits: skipped work is caught by re-execution and by Freivalds; honest work raises no alarm.

Every random choice is seeded, so each test is deterministic.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np
import pytest
from eth_hash.auto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from market.errors import InvalidArgument, ReceiptOutputMismatch, WorkMismatch, WrongArgumentType
from market.protocol.eip712 import receipt_hash
from market.protocol.types import Lease
from market.receipts.audit import DEFAULT_SAMPLES, ReexecutionAuditor, min_stake
from market.receipts.freivalds import default_rtol, freivalds_exact, freivalds_float
from market.receipts.issue import ReceiptChain
from market.receipts.merkle import MerkleTree, chunk_hash
from market.receipts.sampling import audit_seed, sample_indices, samples_needed
from market.receipts.verify import ReceiptVerifier
from tests.unit.test_eip712_signing import DOMAIN, KEY
from tests.unit.test_receipts_chain import LEASE

pytestmark = pytest.mark.unit

SECRET = b"lab secret, 16+ bytes long"


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# --- how many samples, which ones -----------------------------------------------------------


@pytest.mark.parametrize(
    ("f", "d", "n"), [(0.1, 0.01, 44), (0.05, 0.01, 90), (0.5, 0.25, 2), (0.5, 0.001, 10)]
)
def test_samples_needed_is_ceil_ln_d_over_ln_1_minus_f(f: float, d: float, n: int) -> None:
    assert samples_needed(f, d) == n
    assert (1 - f) ** n <= d < (1 - f) ** (n - 1)
    assert DEFAULT_SAMPLES == 44


@pytest.mark.parametrize(("f", "d"), [(0, 0.01), (1, 0.01), (0.1, 0), (0.1, 1), (-0.1, 0.5)])
def test_samples_needed_refuses_probabilities_outside_0_1(f: float, d: float) -> None:
    with pytest.raises(InvalidArgument, match="strictly between 0 and 1"):
        samples_needed(f, d)


@given(
    seed=st.binary(min_size=32, max_size=32),
    population=st.integers(0, 500),
    count=st.integers(0, 60),
)
@settings(max_examples=150)
def test_sample_is_distinct_in_range_and_reproducible(
    seed: bytes, population: int, count: int
) -> None:
    sample = sample_indices(seed, population, count)
    assert len(sample) == min(count, population)
    assert len(set(sample)) == len(sample)
    assert all(0 <= i < population for i in sample)
    assert sample_indices(seed, population, count) == sample
    assert sample_indices(seed, population, count + 5)[: len(sample)] == sample  # a prefix


def test_sample_of_the_whole_population_is_a_permutation() -> None:
    assert sorted(sample_indices(bytes(32), 50, 50)) == list(range(50))


def test_sample_is_roughly_uniform() -> None:
    counts = np.zeros(10)
    for k in range(2000):
        for i in sample_indices(keccak(k.to_bytes(4, "big")), 10, 3):
            counts[i] += 1
    expected = 2000 * 3 / 10
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 30  # 9 degrees of freedom: p < 0.001 above 27.9


def test_seed_is_fixed_by_the_receipt_and_the_secret() -> None:
    h = keccak(b"receipt")
    assert audit_seed(h, SECRET) == keccak(h + SECRET)
    assert audit_seed(h, SECRET) != audit_seed(keccak(b"other"), SECRET)
    assert audit_seed(h, SECRET) != audit_seed(h, SECRET + b"!")
    with pytest.raises(InvalidArgument, match="at least 16"):
        audit_seed(h, b"short")
    with pytest.raises(InvalidArgument, match="32 bytes"):
        audit_seed(h[:31], SECRET)


# --- re-execution -----------------------------------------------------------------------------


def segment_output(job: int, i: int) -> bytes:
    """The deterministic output of segment ``i`` of job ``job``."""
    return keccak(f"job {job} segment {i}".encode()) * 4


def run_job(
    job: int, segments: int, skipped: frozenset[int] = frozenset()
) -> tuple[ReceiptChain, list[bytes]]:
    """A provider runs (or fakes) a job's segments and signs one receipt over their hashes."""
    outputs = [
        keccak(b"made up" + i.to_bytes(4, "big")) if i in skipped else segment_output(job, i)
        for i in range(segments)
    ]
    hashes = [chunk_hash(o) for o in outputs]
    chain = ReceiptChain(KEY, DOMAIN, LEASE)
    chain.append(LEASE.start + 60, 240, output_root=MerkleTree(hashes).root)
    return chain, hashes


def auditor_for(job: int, secret: bytes = SECRET) -> ReexecutionAuditor:
    return ReexecutionAuditor(DOMAIN, lambda i: segment_output(job, i), secret)


def test_honest_provider_over_many_jobs_raises_no_alarm() -> None:
    for job in range(150):
        chain, hashes = run_job(job, segments=20 + job % 50)
        signed = chain.head
        assert signed is not None
        ReceiptVerifier(DOMAIN, LEASE).accept(signed)
        report = auditor_for(job).audit(signed.message, hashes)
        assert report.passed
        assert len(report.sampled) == min(44, len(hashes))
        report.raise_for_mismatch()  # does not raise


def test_skipped_segments_are_caught_by_re_execution() -> None:
    skipped = frozenset(range(0, 200, 2))  # half of the work
    chain, hashes = run_job(7, 200, skipped)
    assert chain.head is not None
    report = auditor_for(7).audit(chain.head.message, hashes)
    assert not report.passed
    assert set(report.mismatched) == set(report.sampled) & skipped
    assert report.receipt_hash == receipt_hash(DOMAIN, chain.head.message)
    with pytest.raises(WorkMismatch) as info:
        report.raise_for_mismatch()
    assert (info.value.sampled, info.value.mismatched) == (report.sampled, report.mismatched)


def test_ten_percent_skipped_is_caught_at_least_99_percent_of_the_time() -> None:
    caught = 0
    for job in range(300):
        skipped = frozenset(
            sample_indices(keccak(b"cheat" + bytes([job % 256, job // 256])), 100, 10)
        )
        chain, hashes = run_job(job, 100, skipped)
        assert chain.head is not None
        caught += not auditor_for(job).audit(chain.head.message, hashes).passed
    assert caught >= 297  # without replacement, the miss rate is C(90,44)/C(100,44) < 1e-3


def test_hashes_that_do_not_match_the_root_are_refused_before_sampling() -> None:
    chain, hashes = run_job(1, 30)
    assert chain.head is not None
    swapped = [hashes[1], hashes[0], *hashes[2:]]
    with pytest.raises(ReceiptOutputMismatch) as info:
        auditor_for(1).audit(chain.head.message, swapped)
    assert info.value.computed_root == MerkleTree(swapped).root


def test_sample_depends_on_the_receipt_and_the_secret_only() -> None:
    chain, hashes = run_job(2, 500)
    assert chain.head is not None
    receipt = chain.head.message
    first = auditor_for(2).audit(receipt, hashes).sampled
    assert auditor_for(2).audit(receipt, hashes).sampled == first
    assert auditor_for(2, SECRET + b"x").audit(receipt, hashes).sampled != first
    other = dataclasses.replace(receipt, metrics_hash=b"\x01" * 32)
    assert auditor_for(2).audit(other, hashes).sampled != first


def test_auditor_refuses_nonsense() -> None:
    with pytest.raises(InvalidArgument, match="at least one"):
        ReexecutionAuditor(DOMAIN, lambda i: b"", SECRET, samples=0)
    chain, _ = run_job(3, 1)
    assert chain.head is not None
    with pytest.raises(InvalidArgument, match="no segments"):
        auditor_for(3).audit(chain.head.message, [])


# --- Freivalds, exact ---------------------------------------------------------------------------


def ints(shape: tuple[int, int], high: int, seed: int, dtype: type = np.int64) -> np.ndarray:
    return rng(seed).integers(-high, high + 1, size=shape).astype(dtype)


@pytest.mark.parametrize(
    ("high", "dtype"),
    [(3, np.int8), (1000, np.int64), (2**26, np.int64), (2**40, np.int64)],
    ids=["int8", "float64-path", "int64-path", "python-int-path"],
)
def test_exact_mode_accepts_the_product_and_catches_a_one_off_entry(high: int, dtype: type) -> None:
    a, b = ints((40, 30), high, 1, dtype), ints((30, 50), high, 2, dtype)
    c = (a.astype(object) @ b.astype(object)) if high > 2**20 else a.astype(np.int64) @ b
    assert freivalds_exact(a, b, c, rng=rng(3))
    wrong = c.copy()
    wrong[17, 23] += 1
    assert not freivalds_exact(a, b, wrong, rng=rng(3))


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 24), delta=st.integers(1, 5))
@settings(max_examples=100)
def test_exact_mode_catches_any_wrong_entry(seed: int, n: int, delta: int) -> None:
    a, b = ints((n, n), 9, seed), ints((n, n), 9, seed + 1)
    c = a @ b
    i, j = seed % n, (seed // n) % n
    c[i, j] += delta
    assert not freivalds_exact(a, b, c, rng=rng(seed))  # misses with probability 2**-20


def test_exact_mode_catches_skipped_work() -> None:
    a, b = ints((128, 128), 50, 4), ints((128, 128), 50, 5)
    c = a @ b
    c[64:] = 0  # half the rows never computed
    assert not freivalds_exact(a, b, c, rng=rng(6))


def test_modular_mode_checks_products_mod_a_prime() -> None:
    p = 2**31 - 1
    a, b = ints((30, 30), p, 7) % p, ints((30, 30), p, 8) % p
    c = np.array((a.astype(object) @ b.astype(object)) % p, dtype=np.int64)
    assert freivalds_exact(a, b, c, modulus=p, rng=rng(9))
    assert freivalds_exact(a, b, c + p, modulus=p, rng=rng(9))  # equal mod p
    c[3, 4] = (c[3, 4] + 1) % p
    assert not freivalds_exact(a, b, c, modulus=p, rng=rng(9))


def test_exact_mode_refuses_floats_and_misshapen_matrices() -> None:
    a = np.ones((3, 4), dtype=np.int64)
    with pytest.raises(WrongArgumentType, match="integers"):
        freivalds_exact(a, a.T.astype(float), np.ones((3, 3)))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="shapes"):
        freivalds_exact(a, a, a)
    with pytest.raises(InvalidArgument, match="at least one round"):
        freivalds_exact(a, a.T, a @ a.T, rounds=0)
    with pytest.raises(InvalidArgument, match="at least 2"):
        freivalds_exact(a, a.T, a @ a.T, modulus=1)


# --- Freivalds, float ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [1, 7, 64, 300])
def test_float_mode_never_fails_a_correct_product(dtype: type, n: int) -> None:
    for seed in range(5):
        g = rng(seed)
        a: np.ndarray = (g.standard_normal((n, n)) * 10.0 ** g.integers(-3, 4)).astype(dtype)
        b: np.ndarray = g.standard_normal((n, n)).astype(dtype)
        assert freivalds_float(a, b, a @ b, rng=rng(seed))


def test_float_mode_catches_an_entry_off_by_more_than_its_tolerance() -> None:
    g = rng(10)
    a, b = g.standard_normal((200, 200)), g.standard_normal((200, 200))
    c = a @ b
    tolerance = default_rtol(np.float64, 200) * float(np.abs(a[5]) @ np.abs(b).sum(axis=1))
    c[5, 9] += 2 * tolerance
    assert not freivalds_float(a, b, c, rng=rng(11))


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda c: c.__setitem__((slice(100, None),), 0.0), id="rows-skipped"),
        pytest.param(lambda c: c.__setitem__((3, 3), np.nan), id="nan"),
        pytest.param(lambda c: c.__setitem__((3, 3), np.inf), id="inf"),
        pytest.param(lambda c: c.__imul__(1.0001), id="scaled"),
    ],
)
def test_float_mode_catches_skipped_and_garbled_work(damage: object) -> None:
    g = rng(12)
    a, b = g.standard_normal((256, 256)), g.standard_normal((256, 256))
    c = a @ b
    damage(c)  # type: ignore[operator]
    assert not freivalds_float(a, b, c, rng=rng(13))


def test_float_mode_refuses_integers() -> None:
    a = np.ones((2, 2), dtype=np.int64)
    with pytest.raises(WrongArgumentType, match="real float"):
        freivalds_float(a, a, a)  # type: ignore[arg-type]


# --- stake ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "p", "stake"),
    [
        (100, 0.1, 900),
        (100, "0.1", 900),
        (10**18, 0.1, 9 * 10**18),
        (100, Fraction(1, 3), 200),
        (7, 0.5, 7),
        (10, 1, 0),
        (1, Fraction(2, 3), 1),  # 0.5, rounded up
    ],
)
def test_min_stake_is_price_times_1_minus_p_over_p_rounded_up(
    price: int, p: Fraction | float | str, stake: int
) -> None:
    assert min_stake(price, p) == stake


@given(price=st.integers(0, 10**24), p=st.fractions(Fraction(1, 1000), 1))
@settings(max_examples=200)
def test_at_the_min_stake_cheating_does_not_pay(price: int, p: Fraction) -> None:
    stake = min_stake(price, p)
    assert (1 - p) * price - p * stake <= 0  # expected gain of faking, at zero cost
    assert stake == 0 or (1 - p) * price - p * (stake - 1) > 0  # and not a unit more than needed


@pytest.mark.parametrize("p", [0, -0.1, 1.5])
def test_min_stake_refuses_an_audit_rate_outside_0_1(p: float) -> None:
    with pytest.raises(InvalidArgument, match="audit rate"):
        min_stake(100, p)


def test_min_stake_refuses_a_negative_price() -> None:
    with pytest.raises(InvalidArgument, match="price"):
        min_stake(-1, 0.5)


def test_lease_fixture_is_the_shared_one() -> None:
    assert isinstance(LEASE, Lease)
    assert LEASE.provider == KEY.address
