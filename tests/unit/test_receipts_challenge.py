"""The hardware challenge: a correct, timely product passes; a wrong, partial or late one fails.

GPU backends are exercised through a stand-in module (no GPU is needed); the real torch and cupy
paths run where they are installed with a GPU.
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np
import pytest

from market.errors import BackendUnavailable, ChallengeFailed, InvalidArgument
from market.receipts import challenge as challenge_module
from market.receipts.challenge import (
    ENTRY_BOUND,
    GPU_CLASSES,
    MAX_N,
    SLACK,
    SUSTAINED_FRACTION,
    Challenge,
    GpuClass,
    check_answer,
    deadline_s,
    solve,
)

pytestmark = pytest.mark.unit

SEED = bytes(range(32))
CHALLENGE = Challenge(SEED, 96, "cpu-test")


def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def test_matrices_are_a_function_of_the_seed() -> None:
    a, b = CHALLENGE.matrices()
    again_a, again_b = Challenge(SEED, 96, "H100").matrices()
    assert np.array_equal(a, again_a)
    assert np.array_equal(b, again_b)
    assert not np.array_equal(a, b)
    other, _ = Challenge(bytes(32), 96, "cpu-test").matrices()
    assert not np.array_equal(a, other)
    assert a.shape == (96, 96)
    assert a.dtype == np.int8
    assert int(np.abs(a).max()) == ENTRY_BOUND
    assert len(np.unique(a)) == 2 * ENTRY_BOUND + 1


def test_matrices_are_pinned_across_machines_and_numpy_releases() -> None:
    a, b = CHALLENGE.matrices()
    assert a.ravel()[:12].tolist() == [1, 0, -2, -2, 1, -2, -2, 1, -2, 1, -1, 1]
    assert b.ravel()[:12].tolist() == [0, -2, 0, -2, -1, -1, 0, 1, 1, 2, 1, 0]


def test_honest_answer_passes() -> None:
    answer = solve(CHALLENGE, backend="numpy")
    assert answer.backend == "numpy"
    assert answer.product.dtype == np.float32
    assert answer.elapsed_s < CHALLENGE.deadline_s
    check_answer(CHALLENGE, answer.product, answer.elapsed_s, rng=rng())  # does not raise


def test_product_is_exact_in_float32() -> None:
    a, b = CHALLENGE.matrices()
    answer = solve(CHALLENGE, backend="numpy")
    assert np.array_equal(answer.product.astype(np.int64), a.astype(np.int64) @ b)


def test_product_in_an_integer_dtype_passes_too() -> None:
    a, b = CHALLENGE.matrices()
    check_answer(CHALLENGE, a.astype(np.int64) @ b, 0.01, rng=rng())  # does not raise


def _failure(product: Any, elapsed_s: float = 0.01, **kwargs: Any) -> ChallengeFailed:
    with pytest.raises(ChallengeFailed) as info:
        check_answer(CHALLENGE, product, elapsed_s, rng=rng(), **kwargs)
    assert info.value.seed == SEED
    assert info.value.gpu_class == "cpu-test"
    return info.value


def _product() -> np.ndarray:
    return solve(CHALLENGE, backend="numpy").product.copy()


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda c: c.__setitem__((5, 7), c[5, 7] + 1), id="one-entry-off"),
        pytest.param(lambda c: c.__setitem__((slice(48, None),), 0), id="half-skipped"),
        pytest.param(lambda c: c.__setitem__((5, 7), c[5, 7] + 0.5), id="fractional"),
        pytest.param(lambda c: c.__setitem__((5, 7), np.nan), id="nan"),
        pytest.param(lambda c: c.__setitem__((5, 7), 1e9), id="out-of-range"),
    ],
)
def test_wrong_product_fails(damage: Any) -> None:
    c = _product()
    damage(c)
    err = _failure(c)
    assert err.correct is False
    assert "wrong" in str(err)


@pytest.mark.parametrize(
    "product",
    [
        np.zeros((96, 95), dtype=np.float32),
        np.zeros(96 * 96),
        np.array([["x"] * 96] * 96),
        np.zeros((96, 96), dtype=np.complex64),
    ],
    ids=["wrong-shape", "flat", "strings", "complex"],
)
def test_product_of_another_shape_or_kind_fails(product: np.ndarray) -> None:
    assert _failure(product).correct is False


def test_random_matrix_fails() -> None:
    c = np.random.default_rng(1).integers(-384, 385, size=(96, 96)).astype(np.float32)
    assert _failure(c).correct is False


def test_late_answer_fails_with_its_time_and_deadline() -> None:
    late = CHALLENGE.deadline_s + 0.001
    err = _failure(_product(), elapsed_s=late)
    assert err.correct is True
    assert (err.elapsed_s, err.deadline_s) == (late, CHALLENGE.deadline_s)
    assert "over the" in str(err)


def test_allowance_extends_the_deadline_for_transfer_time() -> None:
    late = CHALLENGE.deadline_s + 0.5
    check_answer(CHALLENGE, _product(), late, allowance_s=1.0, rng=rng())  # does not raise


def test_deadline_is_slack_times_expected_time_plus_overhead() -> None:
    h100 = GPU_CLASSES["H100"]
    n = 8192
    expected = SLACK * 2 * n**3 / (h100.peak_tflops * 1e12 * SUSTAINED_FRACTION) + h100.overhead_s
    assert deadline_s(n, "H100") == pytest.approx(expected)
    assert deadline_s(n, h100) == deadline_s(n, "H100")
    assert deadline_s(n, "T4") > deadline_s(n, "A100") > deadline_s(n, "H100")
    assert deadline_s(2 * n, "H100") > 7 * (deadline_s(n, "H100") - h100.overhead_s)
    assert GpuClass("x", 1.0).expected_flops == 1e12 * SUSTAINED_FRACTION


@pytest.mark.parametrize(
    ("seed", "n", "cls", "match"),
    [
        (bytes(31), 8, "cpu-test", "32 bytes"),
        (SEED, 0, "cpu-test", "n must be"),
        (SEED, MAX_N + 1, "cpu-test", "n must be"),
        (SEED, 8, "Z80", "unknown GPU class"),
    ],
)
def test_challenge_refuses_bad_parameters(seed: bytes, n: int, cls: str, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        Challenge(seed, n, cls)


def test_largest_n_keeps_every_partial_sum_exact_in_float32() -> None:
    assert MAX_N * ENTRY_BOUND**2 <= 2**24


# --- backends ------------------------------------------------------------------------------------


class _FakeTensor:
    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def to(self, device: str) -> _FakeTensor:
        assert device == "cuda"
        return self

    def __matmul__(self, other: _FakeTensor) -> _FakeTensor:
        return _FakeTensor(self.array @ other.array)

    def cpu(self) -> _FakeTensor:
        return self

    def numpy(self) -> np.ndarray:
        return self.array


def _fake_torch(available: bool) -> types.SimpleNamespace:
    cuda = types.SimpleNamespace(is_available=lambda: available, synchronize=lambda: None)
    return types.SimpleNamespace(cuda=cuda, from_numpy=_FakeTensor)


def _fake_cupy() -> types.SimpleNamespace:
    device = types.SimpleNamespace(synchronize=lambda: None)
    cuda = types.SimpleNamespace(Device=lambda: device)
    return types.SimpleNamespace(
        is_available=lambda: True, cuda=cuda, asarray=np.asarray, asnumpy=np.asarray
    )


def _modules(monkeypatch: pytest.MonkeyPatch, **present: Any) -> None:
    def import_module(name: str) -> Any:
        if name in present:
            return present[name]
        raise ImportError(name)

    monkeypatch.setattr(
        challenge_module, "importlib", types.SimpleNamespace(import_module=import_module)
    )


def test_auto_uses_torch_when_it_sees_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    _modules(monkeypatch, torch=_fake_torch(True), cupy=_fake_cupy())
    answer = solve(CHALLENGE)
    assert answer.backend == "torch-cuda"
    check_answer(CHALLENGE, answer.product, answer.elapsed_s, rng=rng())


def test_auto_falls_back_to_cupy_then_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    _modules(monkeypatch, torch=_fake_torch(False), cupy=_fake_cupy())
    assert solve(CHALLENGE).backend == "cupy-cuda"
    _modules(monkeypatch, torch=_fake_torch(False))
    assert solve(CHALLENGE).backend == "numpy"


def test_asking_for_a_missing_backend_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _modules(monkeypatch)
    with pytest.raises(BackendUnavailable, match="torch with a GPU is not available") as caught:
        solve(CHALLENGE, backend="torch")
    assert caught.value.backend == "torch"
