"""Run every benchmark: ``python -m bench``."""

from __future__ import annotations

from bench import devnet

BENCHMARKS = [devnet.main]

for run in BENCHMARKS:
    run()
