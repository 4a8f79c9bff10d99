"""A deterministic training workload, run in segments: the provider trains, the lab audits by
re-executing segments it samples.

    python -m nodes.jobs.train SEED SEGMENTS STEPS WIDTH   # writes SEGMENTS checkpoints to stdout

The model is a two-layer perceptron (16 inputs, ``WIDTH`` ReLU units, one output) fitted by
minibatch gradient descent to a teacher network drawn from ``SEED``. Every number is fixed-point
(int64, ``FRAC`` fractional bits) and every operation is integer arithmetic (numpy's integer
``@`` is exact and does not use BLAS), so the same segment gives the same bytes on any machine,
CPU or BLAS: re-execution compares bytes, with no tolerance to hide in.

Segment ``k`` runs ``STEPS`` steps on batches drawn from ``(SEED, k)`` alone, starting from
checkpoint ``k - 1`` (the initial weights, drawn from ``SEED``, for ``k = 0``), and writes
checkpoint ``k``: one record of ``TrainParams.record_bytes`` (its index, its mean loss and
the weights, int64 little-endian). The records are the job's output stream, so each receipt's
``outputRoot`` commits to the checkpoints of the segments it covers, and the lab re-executes any
one of them from the checkpoint before it (:func:`run_segment`), never the whole job.

``--skip F`` makes the job fake a fraction ``F`` of its segments (:func:`fake_segments`: it
writes the previous weights again instead of training): what a provider that skips work would
send. Only the benchmark of the lab's audit (``bench.cheating_provider``) passes it; the agent
never does.
"""

from __future__ import annotations

import random
import struct
import sys

import numpy as np
import numpy.typing as npt

from nodes.jobs.spec import INPUTS, TrainParams

BATCH_SHIFT = 5  # 32 examples a step
FRAC = 10  # fixed point: 1.0 is 1 << FRAC
LR_SHIFT = 3  # learning rate 1/8
CLIP = 1 << 20  # no weight leaves [-CLIP, CLIP]: every product and sum stays far inside int64
_HEADER = struct.Struct("<qq")  # segment index, loss (TrainParams.record_bytes counts it)

Weights = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]


def _teacher(seed: int, width: int) -> Weights:
    rng = np.random.default_rng([seed, 0xFEED])
    scale = 1 << (FRAC - 2)
    return (
        rng.integers(-scale, scale, (INPUTS, width), dtype=np.int64),
        rng.integers(-scale, scale, (width, 1), dtype=np.int64),
    )


def initial_weights(seed: int, width: int) -> Weights:
    rng = np.random.default_rng([seed, 0x1A17])
    scale = 1 << (FRAC - 2)
    return (
        rng.integers(-scale, scale, (INPUTS, width), dtype=np.int64),
        rng.integers(-scale, scale, (width, 1), dtype=np.int64),
    )


def _shift(v: npt.NDArray[np.int64], bits: int) -> npt.NDArray[np.int64]:
    """``v / 2**bits`` rounded to nearest: a plain ``>>`` floors, and a bias of -1 every step
    drifts the weights until training diverges."""
    return (v + (1 << (bits - 1))) >> bits


def _forward(
    x: npt.NDArray[np.int64], w1: npt.NDArray[np.int64], w2: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    z1 = _shift(x @ w1, FRAC)
    return z1, _shift(np.maximum(z1, 0) @ w2, FRAC)


def _step(
    weights: Weights, x: npt.NDArray[np.int64], t: npt.NDArray[np.int64]
) -> tuple[Weights, int]:
    w1, w2 = weights
    z1, y = _forward(x, w1, w2)
    a1 = np.maximum(z1, 0)
    err = y - t
    g2 = _shift(a1.T @ err, FRAC + BATCH_SHIFT + LR_SHIFT)
    dz1 = _shift(err @ w2.T, FRAC) * (z1 > 0)
    g1 = _shift(x.T @ dz1, FRAC + BATCH_SHIFT + LR_SHIFT)
    loss = int(_shift(err * err, FRAC).sum()) >> BATCH_SHIFT
    w1 = np.clip(w1 - g1, -CLIP, CLIP)
    w2 = np.clip(w2 - g2, -CLIP, CLIP)
    return (w1, w2), loss


def train_segment(params: TrainParams, k: int, weights: Weights) -> tuple[Weights, int]:
    """Segment ``k``'s ``steps`` steps from ``weights``: the new weights and the segment's mean
    loss (squared error, fixed-point)."""
    teacher = _teacher(params.seed, params.width)
    rng = np.random.default_rng([params.seed, k])
    total = 0
    for _ in range(params.steps):
        x = rng.integers(-(1 << FRAC), 1 << FRAC, (1 << BATCH_SHIFT, INPUTS), dtype=np.int64)
        _, t = _forward(x, *teacher)
        weights, loss = _step(weights, x, t)
        total += loss
    return weights, total // params.steps


def encode_record(k: int, loss: int, weights: Weights) -> bytes:
    w1, w2 = weights
    return _HEADER.pack(k, loss) + w1.astype("<i8").tobytes() + w2.astype("<i8").tobytes()


def decode_record(params: TrainParams, record: bytes) -> tuple[int, int, Weights]:
    """A checkpoint record's segment index, loss and weights; ValueError if malformed."""
    if len(record) != params.record_bytes:
        raise ValueError(f"a checkpoint is {params.record_bytes} bytes, got {len(record)}")
    k, loss = _HEADER.unpack_from(record)
    body = np.frombuffer(record, dtype="<i8", offset=_HEADER.size).astype(np.int64)
    split = INPUTS * params.width
    return k, loss, (body[:split].reshape(INPUTS, params.width), body[split:].reshape(-1, 1))


def run_segment(params: TrainParams, k: int, previous: bytes | None) -> bytes:
    """Checkpoint ``k`` re-executed from checkpoint ``k - 1`` (``previous``; None for ``k = 0``,
    which starts from the initial weights). Raises ValueError on a malformed ``previous``."""
    if previous is None:
        weights = initial_weights(params.seed, params.width)
    else:
        _, _, weights = decode_record(params, previous)
    weights, loss = train_segment(params, k, weights)
    return encode_record(k, loss, weights)


def fake_segments(params: TrainParams, fraction: float) -> frozenset[int]:
    """The segments ``--skip fraction`` fakes: ``round(fraction * segments)`` of them (at least
    one for any ``fraction > 0``), drawn from the seed."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"--skip is a fraction in [0, 1], got {fraction}")
    if fraction == 0:
        return frozenset()
    count = max(1, round(fraction * params.segments))
    return frozenset(random.Random(params.seed ^ 0x5EED).sample(range(params.segments), count))


def main(argv: list[str]) -> int:
    skip = 0.0
    if argv[:1] == ["--skip"]:
        skip, argv = float(argv[1]), argv[2:]
    seed, segments, steps, width = (int(a) for a in argv)
    params = TrainParams(seed, segments, steps, width)
    faked = fake_segments(params, skip)
    weights = initial_weights(seed, width)
    out = sys.stdout.buffer
    loss = 0
    for k in range(segments):
        if k not in faked:
            weights, loss = train_segment(params, k, weights)
        out.write(encode_record(k, loss, weights))
        out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
