"""Run every benchmark: ``python -m bench``."""

from __future__ import annotations

from bench import devnet, gas, matching, verify

BENCHMARKS = [devnet.main, gas.main, verify.main, matching.main]

for run in BENCHMARKS:
    run()
