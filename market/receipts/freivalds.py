"""Freivalds' check that ``C = A x B``, in O(n^2) work per round instead of the product's O(n^3).

For a random vector ``r``, ``C = AB`` implies ``A(Br) = Cr``. If ``C != AB``, take an entry
``D_ij != 0`` of ``D = AB - C``: whatever the other entries of ``r``, at most one of the two values
``r_j`` may take gives ``(Dr)_i = 0``, so one round misses a wrong ``C`` with probability at most
1/2, and ``rounds`` independent rounds with probability at most ``2**-rounds``. The rounds run as
one batch: ``r`` is an ``n x rounds`` matrix.

**Exact mode** (:func:`freivalds_exact`) takes integer matrices (numpy integer dtypes, or object
arrays of Python ints beyond 64 bits) and compares exactly, with ``r`` in {0, 1}: in float64 BLAS
when every partial sum stays below 2**53 (float64 is exact there), in int64 below 2**63, else in
Python integers; or modulo ``modulus`` (any modulus >= 2: the argument only needs
``D_ij != 0 mod modulus``).

**Float mode** (:func:`freivalds_float`) takes float matrices, computes the check in float64 with
``r`` in {-1, +1}, and accepts row ``i`` when ``|A(Br) - Cr|_i <= rtol * (|A| |B| 1)_i``. The
default ``rtol`` is ``4 * n * eps`` of the inputs' dtype (``n`` the largest dimension): several
times the worst-case rounding error ``n * eps / 2`` of any correct float product and of the check
itself, so a correct ``C`` never fails. An entry off by more than that row's tolerance is caught
with probability >= 1/2 per round (the two signs of ``r_j`` move the row's sum by ``2 |D_ij|``).
The worst-case bound is loose for float32, where only gross errors are caught; for a check with
no tolerance to hide in, use integer-valued matrices and exact mode, as the hardware challenge does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from market.errors import InvalidArgument, WrongArgumentType

DEFAULT_ROUNDS = 20
"""Rounds per check: a wrong product passes with probability at most 2**-20 (about 1e-6)."""

_FLOAT64_EXACT = 2**53
_INT64_EXACT = 2**63
_BLOCK_ELEMENTS = 2**17  # 1 MiB of float64: a block of rows stays in cache


def freivalds_exact(
    a: npt.NDArray[np.integer[Any]],
    b: npt.NDArray[np.integer[Any]],
    c: npt.NDArray[np.integer[Any]],
    *,
    rounds: int = DEFAULT_ROUNDS,
    modulus: int | None = None,
    rng: np.random.Generator | None = None,
) -> bool:
    """Whether ``c == a @ b`` (mod ``modulus`` when given); wrong with probability <= 2**-rounds.

    ``rng`` must be unpredictable to whoever computed ``c``: the default draws from the OS.
    """
    _check_shapes(a, b, c, rounds)
    for x in (a, b, c):
        if not _holds_integers(x):
            raise WrongArgumentType(
                "a, b, c",
                str(x.dtype),
                f"exact mode takes integers, not {x.dtype}; see freivalds_float",
            )
    inner, cols = a.shape[1], b.shape[1]
    r = _rng(rng).integers(0, 2, size=(cols, rounds), dtype=np.int64)
    if modulus is not None:
        if modulus < 2:
            raise InvalidArgument("modulus", modulus, f"modulus must be at least 2, got {modulus}")
        dtype = _dtype_for(max(inner, cols) * (modulus - 1) ** 2)
        ma, mb, mc = (_reduce(x, modulus).astype(dtype) for x in (a, b, c))
        rr = r.astype(dtype)
        lhs = np.mod(ma @ np.mod(mb @ rr, modulus), modulus)
        return bool(np.array_equal(lhs, np.mod(mc @ rr, modulus)))
    bound = max(inner * _max_abs(a) * cols * _max_abs(b), cols * _max_abs(c))
    dtype = _dtype_for(bound)
    rr = r.astype(dtype)
    return bool(np.array_equal(_times(a, _times(b, rr, dtype), dtype), _times(c, rr, dtype)))


def freivalds_float(
    a: npt.NDArray[np.floating[Any]],
    b: npt.NDArray[np.floating[Any]],
    c: npt.NDArray[np.floating[Any]],
    *,
    rounds: int = DEFAULT_ROUNDS,
    rtol: float | None = None,
    rng: np.random.Generator | None = None,
) -> bool:
    """Whether ``c`` equals ``a @ b`` up to rounding (see the module doc for ``rtol``).

    Any NaN or infinity in ``c`` fails. ``rng`` must be unpredictable to whoever computed ``c``.
    """
    _check_shapes(a, b, c, rounds)
    dtype = np.result_type(a, b, c)
    if not np.issubdtype(dtype, np.floating):
        raise WrongArgumentType(
            "a, b, c",
            str(dtype),
            f"float mode takes real float matrices, got {dtype}; see freivalds_exact",
        )
    if rtol is None:
        rtol = default_rtol(dtype, max(*a.shape, b.shape[1]))
    f64 = np.float64
    r = _rng(rng).integers(0, 2, size=(b.shape[1], rounds)).astype(f64) * 2.0 - 1.0
    residual = _times(a, _times(b, r, f64), f64) - _times(c, r, f64)
    return bool(np.all(np.abs(residual) <= rtol * _abs_scale(a, b)[:, None]))


def default_rtol(dtype: npt.DTypeLike, n: int) -> float:
    """Float mode's default relative tolerance for ``n x n``-sized products of ``dtype``."""
    return 4.0 * max(n, 1) * float(np.finfo(dtype).eps)


def _times(x: npt.NDArray[Any], y: npt.NDArray[Any], dtype: Any) -> npt.NDArray[Any]:
    """``x @ y`` in ``dtype``, converting ``x`` a block of rows at a time: a matrix-vector-sized
    product never needs a matrix-sized copy of ``x`` (whose page faults would dominate it)."""
    out = np.empty((x.shape[0], y.shape[1]), dtype=dtype)
    rows = max(1, _BLOCK_ELEMENTS // max(x.shape[1], 1))
    for i in range(0, x.shape[0], rows):
        out[i : i + rows] = x[i : i + rows].astype(dtype, copy=False) @ y
    return out


def _abs_scale(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """``|A| (|B| 1)`` in float64, a block of rows at a time."""
    row_sums = np.empty(b.shape[0])
    rows = max(1, _BLOCK_ELEMENTS // max(b.shape[1], 1))
    for i in range(0, b.shape[0], rows):
        row_sums[i : i + rows] = np.abs(b[i : i + rows]).sum(axis=1, dtype=np.float64)
    scale = np.empty(a.shape[0])
    rows = max(1, _BLOCK_ELEMENTS // max(a.shape[1], 1))
    for i in range(0, a.shape[0], rows):
        scale[i : i + rows] = np.abs(a[i : i + rows]).astype(np.float64, copy=False) @ row_sums
    return scale


def _check_shapes(a: npt.NDArray[Any], b: npt.NDArray[Any], c: npt.NDArray[Any], k: int) -> None:
    if a.ndim != 2 or b.ndim != 2 or c.ndim != 2:
        raise InvalidArgument("a, b, c", (a.ndim, b.ndim, c.ndim), "A, B and C must be matrices")
    if a.shape[1] != b.shape[0] or c.shape != (a.shape[0], b.shape[1]):
        raise InvalidArgument(
            "a, b, c",
            (a.shape, b.shape, c.shape),
            f"shapes do not fit C = A x B: {a.shape} x {b.shape} -> {c.shape}",
        )
    if k < 1:
        raise InvalidArgument("rounds", k, f"at least one round is needed, got {k}")


def _holds_integers(x: npt.NDArray[Any]) -> bool:
    """An integer dtype, or an object array of Python ints (for values beyond 64 bits)."""
    if x.dtype == object:
        return all(type(v) is int for v in x.flat)
    return bool(np.issubdtype(x.dtype, np.integer))


def _max_abs(x: npt.NDArray[np.integer[Any]]) -> int:
    if x.size == 0:
        return 0
    return max(abs(int(x.max())), abs(int(x.min())))


def _reduce(x: npt.NDArray[np.integer[Any]], modulus: int) -> npt.NDArray[Any]:
    """``x`` mod ``modulus``, each entry in [0, modulus), without overflow."""
    if modulus < 2**62 and x.dtype != object and x.dtype != np.uint64:
        return np.mod(x.astype(np.int64), modulus)
    reduced: npt.NDArray[Any] = np.mod(x.astype(object), modulus)
    return reduced


def _dtype_for(bound: int) -> type[Any]:
    """The fastest dtype whose arithmetic is exact for sums up to ``bound`` in magnitude."""
    if bound < _FLOAT64_EXACT:
        return np.float64
    if bound < _INT64_EXACT:
        return np.int64
    return object


def _rng(rng: np.random.Generator | None) -> np.random.Generator:
    return np.random.default_rng() if rng is None else rng


__all__ = ["DEFAULT_ROUNDS", "default_rtol", "freivalds_exact", "freivalds_float"]
