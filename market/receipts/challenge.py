"""A timed hardware challenge: does the machine multiply matrices as fast as its GPU class should?

From a fresh 32-byte seed both sides derive ``A`` and ``B`` (``n x n``) from numpy's PCG64; the
provider computes ``C = A @ B`` (:func:`solve`); the verifier checks ``C`` by Freivalds in O(n^2)
and the time against the class's deadline (:func:`check_answer`).

Entries are integers in ``[-ENTRY_BOUND, ENTRY_BOUND]``, computed as float32. Every product and
partial sum is then an integer below 2**24, which float32 holds exactly (as do TF32 and bf16
inputs with float32 accumulation), so a correct answer is exact on any hardware and in any
summation order, and the check is Freivalds' exact one: a wrong answer passes with probability at
most ``2**-rounds``, with no tolerance to hide in.

Over a network the product is too large to send within a deadline that means anything for a
GPU, so the daemons run it as commit-then-open (:func:`commit_rows`, :func:`check_rows`): the
provider answers the timed request with the Merkle root of the product's rows, and only then
learns which rows to open; the lab checks their proofs against the root and checks the opened
rows by Freivalds against ``A[rows] @ B``. A provider that committed to a product it computed
only in part is caught unless every opened row happens to be a computed one.

Only the multiplication is timed (generating the matrices is O(n^2) host work that says nothing
about the GPU), after one untimed warm-up product. ``elapsed_s`` must be the verifier's own
measurement: its code runs :func:`solve` on the leased machine (a lab's job does) or it times the
round trip and passes the transfer time as ``allowance_s``. torch or cupy is used when importable
with a GPU present, else numpy; neither is a dependency.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from market.errors import BackendUnavailable, ChallengeFailed, InvalidArgument
from market.protocol.eip712 import Domain
from market.protocol.keccak import keccak
from market.receipts.freivalds import DEFAULT_ROUNDS, freivalds_exact
from market.receipts.merkle import MerkleTree, chunk_hash, verify_chunk

ENTRY_BOUND = 2
MAX_N = 2**24 // ENTRY_BOUND**2
SLACK = 2.0
"""A machine passes at half its class's expected throughput: clocks, thermals, shared hosts."""

Backend = Literal["auto", "torch", "cupy", "numpy"]


SUSTAINED_FRACTION = 0.6
"""The share of a card's datasheet FP32 peak that SGEMM is expected to sustain on large squares."""


@dataclass(frozen=True, slots=True)
class GpuClass:
    """A card's datasheet FP32 (non-tensor) peak in TFLOPS and a fixed per-call overhead (s)."""

    name: str
    peak_tflops: float
    overhead_s: float = 0.05

    @property
    def expected_flops(self) -> float:
        return self.peak_tflops * 1e12 * SUSTAINED_FRACTION


# Datasheet FP32 peaks (H100: the PCIe card, so SXM cards pass easily); to be calibrated on real
# cards. "cpu-test" is any CPU with a BLAS, with a whole second of overhead, for tests.
GPU_CLASSES: dict[str, GpuClass] = {
    c.name: c
    for c in (
        GpuClass("cpu-test", 0.01, overhead_s=1.0),
        GpuClass("T4", 8.1),
        GpuClass("V100", 15.7),
        GpuClass("A10", 31.2),
        GpuClass("A100", 19.5),
        GpuClass("L4", 30.3),
        GpuClass("L40S", 91.6),
        GpuClass("RTX4090", 82.6),
        GpuClass("H100", 51.2),
        GpuClass("H200", 66.9),
    )
}


def deadline_s(n: int, gpu_class: str | GpuClass) -> float:
    """The time allowed for one ``n x n`` product: ``SLACK x 2n^3 / expected + overhead``."""
    cls = GPU_CLASSES[gpu_class] if isinstance(gpu_class, str) else gpu_class
    return SLACK * 2.0 * n**3 / cls.expected_flops + cls.overhead_s


@dataclass(frozen=True, slots=True)
class Challenge:
    """Multiply two seeded ``n x n`` matrices within the deadline of ``gpu_class``."""

    seed: bytes
    n: int
    gpu_class: str

    def __post_init__(self) -> None:
        if type(self.seed) is not bytes or len(self.seed) != 32:
            raise InvalidArgument("seed", self.seed, "a challenge seed is 32 bytes")
        if not 1 <= self.n <= MAX_N:
            raise InvalidArgument(
                "n", self.n, f"n must be in [1, {MAX_N}] for exact float32 products, got {self.n}"
            )
        if self.gpu_class not in GPU_CLASSES:
            raise InvalidArgument(
                "gpu_class",
                self.gpu_class,
                f"unknown GPU class {self.gpu_class!r}; known: {sorted(GPU_CLASSES)}",
            )

    @property
    def deadline_s(self) -> float:
        return deadline_s(self.n, self.gpu_class)

    def matrices(self) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.int8]]:
        """``A`` then ``B``, row by row, from the bytes of PCG64's raw stream seeded with the seed
        (as a big-endian integer): each little-endian byte mod ``2 * ENTRY_BOUND + 1``, minus
        ``ENTRY_BOUND`` (slightly biased, which the check does not mind). numpy keeps raw
        bit-generator streams stable across releases, unlike ``Generator`` methods, so every
        machine derives the same matrices."""
        n2 = self.n * self.n
        bits = np.random.PCG64(int.from_bytes(self.seed, "big"))
        raw = bits.random_raw(-(-2 * n2 // 8)).astype("<u8").view(np.uint8)[: 2 * n2]
        entries = (raw % (2 * ENTRY_BOUND + 1)).astype(np.int8) - np.int8(ENTRY_BOUND)
        return entries[:n2].reshape(self.n, self.n), entries[n2:].reshape(self.n, self.n)


@dataclass(frozen=True, slots=True)
class Answer:
    """The product, the seconds its multiplication took, and which backend computed it."""

    product: npt.NDArray[np.float32]
    elapsed_s: float
    backend: str


def solve(challenge: Challenge, *, backend: Backend = "auto") -> Answer:
    """The provider's side: compute ``A @ B`` on the best device available, timing the product."""
    a8, b8 = challenge.matrices()
    a, b = a8.astype(np.float32), b8.astype(np.float32)
    for name in ("torch", "cupy") if backend == "auto" else (backend,):
        if name == "numpy":
            break
        module = _gpu_module(name)
        if module is not None:
            return _solve_on_gpu(name, module, a, b)
        if backend != "auto":
            raise BackendUnavailable(name)
    _matmul_numpy(a, b)  # warm-up
    start = time.perf_counter()
    c = _matmul_numpy(a, b)
    return Answer(c, time.perf_counter() - start, "numpy")


def check_answer(
    challenge: Challenge,
    product: npt.NDArray[Any],
    elapsed_s: float,
    *,
    allowance_s: float = 0.0,
    rounds: int = DEFAULT_ROUNDS,
    rng: np.random.Generator | None = None,
) -> None:
    """Raise ChallengeFailed unless ``product`` is ``A @ B`` and came within the deadline."""
    deadline = challenge.deadline_s + allowance_s
    correct = _is_product(challenge, product, rounds, rng)
    if not correct or elapsed_s > deadline:
        raise ChallengeFailed(challenge.seed, challenge.gpu_class, correct, elapsed_s, deadline)


def _is_product(
    challenge: Challenge, product: npt.NDArray[Any], rounds: int, rng: np.random.Generator | None
) -> bool:
    n = challenge.n
    real = np.issubdtype(product.dtype, np.integer) or np.issubdtype(product.dtype, np.floating)
    if product.shape != (n, n) or not real:
        return False
    if not np.all(np.abs(product) <= n * ENTRY_BOUND**2) or not np.all(np.rint(product) == product):
        return False  # out of range, fractional, NaN or infinite: not a product of these matrices
    a, b = challenge.matrices()
    return freivalds_exact(a, b, product.astype(np.int32), rounds=rounds, rng=rng)


_REQUEST_TAG = b"gpumarket.challenge.v1"


def request_digest(domain: Domain, lease_id: bytes, seed: bytes, n: int) -> bytes:
    """What the lab signs to ask a provider for a challenge on a lease: bound to the market's
    domain, the lease, the seed and the size, so it cannot be replayed elsewhere."""
    if len(lease_id) != 32 or len(seed) != 32 or not 1 <= n <= MAX_N:
        raise InvalidArgument(
            "lease_id, seed, n",
            (lease_id, seed, n),
            "a challenge request names a 32-byte lease id and seed and n in range",
        )
    return keccak(_REQUEST_TAG + domain.separator + lease_id + seed + n.to_bytes(4, "big"))


def row_bytes(product: npt.NDArray[Any], index: int) -> bytes:
    """Row ``index`` of a product as int32 little-endian: exact, since every entry is an
    integer of at most ``n * ENTRY_BOUND**2``."""
    data: bytes = np.rint(product[index]).astype("<i4").tobytes()
    return data


def commit_rows(product: npt.NDArray[Any]) -> MerkleTree:
    """The provider's commitment: a Merkle tree over the product's rows (:func:`row_bytes`),
    index-bound leaves as for output chunks."""
    return MerkleTree([chunk_hash(row_bytes(product, i)) for i in range(product.shape[0])])


def pick_rows(secret: bytes, root: bytes, n: int, count: int) -> tuple[int, ...]:
    """``min(count, n)`` distinct rows to open, drawn from the lab's secret and the committed
    root: fixed only once the provider has committed."""
    rng = np.random.default_rng(np.frombuffer(keccak(secret + root), dtype="<u4"))
    return tuple(int(i) for i in rng.choice(n, size=min(count, n), replace=False))


def check_rows(
    challenge: Challenge,
    root: bytes,
    rows: dict[int, tuple[bytes, list[bytes]]],
    *,
    rounds: int = DEFAULT_ROUNDS,
    rng: np.random.Generator | None = None,
) -> bool:
    """Whether every opened row (index -> its int32 bytes and Merkle proof) is under ``root``
    and equal to that row of ``A @ B`` (Freivalds on ``A[rows] @ B``; exact)."""
    n = challenge.n
    if not rows:
        return False
    opened: list[npt.NDArray[np.int32]] = []
    for index, (data, proof) in sorted(rows.items()):
        if not 0 <= index < n or len(data) != 4 * n or not verify_chunk(root, index, data, proof):
            return False
        row = np.frombuffer(data, dtype="<i4").astype(np.int32)
        if not np.all(np.abs(row) <= n * ENTRY_BOUND**2):
            return False
        opened.append(row)
    a, b = challenge.matrices()
    picked = a[sorted(rows)]
    return freivalds_exact(picked, b, np.stack(opened), rounds=rounds, rng=rng)


def _matmul_numpy(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[Any]:
    return a @ b


def _gpu_module(name: str) -> Any:
    """torch or cupy, imported lazily, when it is installed and sees a GPU; else None."""
    try:
        module = importlib.import_module(name)
    except ImportError:
        return None
    available = module.cuda.is_available() if name == "torch" else module.is_available()
    return module if available else None


def _solve_on_gpu(name: str, module: Any, a: npt.NDArray[Any], b: npt.NDArray[Any]) -> Answer:
    if name == "torch":
        ta, tb = (module.from_numpy(x).to("cuda") for x in (a, b))
        sync = module.cuda.synchronize
    else:
        ta, tb = module.asarray(a), module.asarray(b)
        sync = module.cuda.Device().synchronize
    sync()
    ta @ tb  # warm-up: library handles, kernel selection
    sync()
    start = time.perf_counter()
    tc = ta @ tb
    sync()
    elapsed = time.perf_counter() - start
    c = tc.cpu().numpy() if name == "torch" else module.asnumpy(tc)
    return Answer(np.asarray(c, dtype=np.float32), elapsed, f"{name}-cuda")


__all__ = [
    "ENTRY_BOUND",
    "GPU_CLASSES",
    "MAX_N",
    "SLACK",
    "SUSTAINED_FRACTION",
    "Answer",
    "Backend",
    "Challenge",
    "GpuClass",
    "check_answer",
    "check_rows",
    "commit_rows",
    "deadline_s",
    "pick_rows",
    "request_digest",
    "row_bytes",
    "solve",
]
