"""The matrix-product workload: run by the provider, checked by the lab.

    python -m nodes.jobs.matmul N SEED ROUNDS     # writes ROUNDS products to stdout

Product ``k`` is ``A_k @ B_k`` for the ``N x N`` int64 matrices :func:`matrices` draws from
``SEED + k``, written as int64 little-endian, row-major, one after the other. The lab checks any
product it received with :func:`check_product` (Freivalds, O(n^2)), never recomputing it.
"""

from __future__ import annotations

import sys

import numpy as np
import numpy.typing as npt

from market.receipts import freivalds_exact

_LOW, _HIGH = -50, 50  # entries; products of n <= 1024 stay far inside int64


def matrices(seed: int, k: int, n: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    rng = np.random.default_rng(seed + k)
    return rng.integers(_LOW, _HIGH, (n, n)), rng.integers(_LOW, _HIGH, (n, n))


def product(seed: int, k: int, n: int) -> bytes:
    a, b = matrices(seed, k, n)
    return (a @ b).astype("<i8").tobytes()


def check_product(seed: int, k: int, n: int, output: bytes) -> bool:
    """Whether ``output`` is product ``k``: Freivalds' check, error probability <= 2**-20."""
    if len(output) != 8 * n * n:
        return False
    a, b = matrices(seed, k, n)
    c = np.frombuffer(output, dtype="<i8").reshape(n, n)
    return freivalds_exact(a, b, c)


def main(argv: list[str]) -> int:
    n, seed, rounds = (int(x) for x in argv)
    out = sys.stdout.buffer
    for k in range(rounds):
        out.write(product(seed, k, n))
        out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
