"""A provider agent that skips work, for measuring the lab's audit through the real daemons.

    GPUMARKET_SKIP=0.1 python -m bench.cheating_provider provider --config provider1.toml
    GPUMARKET_CHALLENGE_DELAY_S=3 python -m bench.cheating_provider provider --config ...

It is ``gpumarket provider`` in every way (registration, offers, receipts, vouchers, claims)
except that its training jobs fake ``GPUMARKET_SKIP`` of their segments (``nodes.jobs.train
--skip``: the previous checkpoint sent again instead of a trained one) and sign receipts over
that output like an honest agent's, and that it answers hardware challenges
``GPUMARKET_CHALLENGE_DELAY_S`` late (a slower GPU than the one it offers). Nothing in
``nodes`` can make an agent do this; only the end-to-end audit benchmark
(:mod:`bench.audit_e2e`) and the daemons' audit tests start this module, through
:meth:`nodes.localnet.LocalMarket.start_provider` ``(module=...)``.
"""

from __future__ import annotations

import os
import time

from market.receipts.challenge import Answer
from nodes import cli
from nodes.jobs.spec import JobSpec, TrainParams
from nodes.provider import challenges, work

SKIP_ENV = "GPUMARKET_SKIP"
DELAY_ENV = "GPUMARKET_CHALLENGE_DELAY_S"
MODULE = "bench.cheating_provider"
_honest = work.job_argv
_honest_compute = challenges.compute


def cheating_argv(spec: JobSpec) -> tuple[str, ...]:
    """The honest command, with ``--skip`` added to a training job's."""
    argv = _honest(spec)
    if not isinstance(spec.params, TrainParams):
        return argv
    at = argv.index("nodes.jobs.train") + 1
    return (*argv[:at], "--skip", os.environ.get(SKIP_ENV, "0.1"), *argv[at:])


def slow_compute(seed: bytes, n: int) -> Answer:
    """The honest answer, ``GPUMARKET_CHALLENGE_DELAY_S`` late."""
    time.sleep(float(os.environ.get(DELAY_ENV, "0")))
    return _honest_compute(seed, n)


if __name__ == "__main__":
    work.job_argv = cheating_argv  # looked up when each job starts
    challenges.compute = slow_compute  # looked up at each challenge
    raise SystemExit(cli.main())
